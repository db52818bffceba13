"""Class subsets and few-shot sizes, checked from class names and class sizes alone, so that loading a dataset
(harness.data.registry, harness.data.splits) and the pre-flight on its facts (harness.data.facts) refuse the
same specs in the same words."""

from __future__ import annotations

from typing import Sequence

from harness.core.errors import ConfigError


def parse_classes(arg: str, class_names: tuple[str, ...]) -> list[int]:
    """Class indices from `0-4`, `1,3,5`, `2-4,7` or class names such as `circle,star`."""
    chosen: list[int] = []
    for part in filter(None, arg.split(",")):
        if part in class_names:
            chosen.append(class_names.index(part))
            continue
        lo, dash, hi = part.partition("-")
        try:
            rng = range(int(lo), int(hi) + 1) if dash else [int(part)]
        except ValueError:
            raise ConfigError(f"class subset '{arg}': '{part}' is neither a class name nor an index range; "
                              f"classes: {', '.join(class_names)}") from None
        for i in rng:
            if not 0 <= i < len(class_names):
                raise ConfigError(f"class subset '{arg}': index {i} out of range 0-{len(class_names) - 1}")
            chosen.append(i)
    if len(set(chosen)) < 2:
        raise ConfigError(f"class subset '{arg}': needs at least 2 distinct classes")
    return list(dict.fromkeys(chosen))


def subset_classes(spec: str, arg: str, task: str, class_names: tuple[str, ...]) -> list[int]:
    """The classes a spec's subset (`digits:0-4`) keeps, in the order given; only a classification dataset has one."""
    if task != "classification":
        raise ConfigError(f"dataset '{spec}': class subsets (':{arg}') are for classification datasets")
    try:
        return parse_classes(arg, class_names)
    except ConfigError as e:
        raise ConfigError(f"dataset '{spec}': {e}") from None


def check_few_shot_task(name: str, task: str, samples_per_class: int) -> None:
    """Only a classification dataset has few-shot subsets (a detection image holds several classes)."""
    if task != "classification":
        raise ConfigError(f"dataset '{name}': samples_per_class={samples_per_class}: few-shot subsets are "
                          f"for classification datasets (a {task} image holds several classes)")


def check_few_shot_size(name: str, class_names: Sequence[str], train_counts: Sequence[int],
                        samples_per_class: int) -> None:
    """A few-shot draw takes at most as many images per class as the smallest class of the training split has."""
    fewest = int(min(train_counts))
    smallest = list(train_counts).index(fewest)
    if samples_per_class > fewest:
        raise ConfigError(f"samples_per_class={samples_per_class}: dataset '{name}' has {fewest} training "
                          f"images in its smallest class ('{class_names[smallest]}'); allowed 0-"
                          f"{fewest} (0: all)")
