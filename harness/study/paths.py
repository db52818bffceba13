"""Paths in a suite made absolute when it is loaded: trials run in working directories of their own, so a
`checkpoint:` weights file or a `folder:` dataset given relative to where `harness run` started must not stay
relative."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.data.registry import PATH_DATASETS, parse_spec
from harness.study.suite import BackboneEntry, SuiteSpec


def absolute_weights(weights: str, base: Path) -> str:
    """`checkpoint:PATH` with PATH absolute (relative to `base`); other weights as they are."""
    if not weights.startswith("checkpoint:"):
        return weights
    path = Path(weights[len("checkpoint:"):]).expanduser()
    return f"checkpoint:{path if path.is_absolute() else (base / path).absolute()}"


def absolute_dataset(spec: str, base: Path) -> str:
    """A `folder:PATH[?options]` dataset with PATH absolute (relative to `base`); other datasets as they are."""
    name, arg, _ = parse_spec(spec)
    if name not in PATH_DATASETS or not arg:
        return spec
    path = Path(arg).expanduser()
    if path.is_absolute():
        return spec
    _, sep, query = spec.partition("?")
    return f"{name}:{(base / path).absolute()}{sep}{query}"


def absolute_paths(suite: SuiteSpec, base: Path | None = None) -> SuiteSpec:
    """The suite with every checkpoint and dataset folder absolute, relative ones taken from `base` (default:
    the current directory, as for `harness train`)."""
    base = base or Path.cwd()

    def backbones(entries: list[BackboneEntry]) -> list[BackboneEntry]:
        return [dataclasses.replace(b, weights=absolute_weights(b.weights, base)) for b in entries]

    return dataclasses.replace(
        suite, backbones=backbones(suite.backbones),
        datasets=[dataclasses.replace(d, name=absolute_dataset(d.name, base), backbones=backbones(d.backbones))
                  for d in suite.datasets],
        sources={k: dataclasses.replace(s, dataset=absolute_dataset(s.dataset, base))
                 for k, s in suite.sources.items()})
