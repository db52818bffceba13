"""Suites: which (dataset, method, backbone) cells to benchmark, with what budget and resources.

A suite YAML (search_spaces/suites/NAME.yaml) is read into a SuiteSpec; CLI flags override it; `cells()`
expands it into Cells, each with its merged, validated search space and a configuration hash.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.config import TrialConfig, check_value, coerce, config_hash, param, scalar_type, validate_fields
from harness.core.errors import ConfigError
from harness.core.yamlio import read_yaml
from harness.data.registry import DATASETS, dataset_task, headline_metric, parse_spec
from harness.methods import METHODS
from harness.models.backbones import BACKBONES, stage_count
from harness.models.checkpoints import checkpoint_identity
from harness.results.records import target_label
from harness.core.federation import SETTING_KEYS, setting
from harness.methods.federated import FederatedArgs
from harness.study.spaces import Dist, method_space, parse_space, resolve_stages, space_to_data, spaces_dir, trial_count

ALGORITHMS = ("random", "grid", "optuna")
SCHEDULERS = ("asha", "fifo")
HEADLINE = "headline"  # the search metric that means `val_` + each dataset's headline metric
FINAL_VARY = ("init", "subset", "split")
CLIENT_PARALLELISM = ("sequential", "ray")  # where a federated run's clients train (harness.study.clients)


@dataclass
class SearchBudget:
    """How each cell is searched: Ray Tune's num_samples, search algorithm, scheduler and concurrency
    (trials at once within a cell; cells searching at once, each with its own Tuner)."""

    num_samples: int = param(4, "trials per cell (Ray Tune num_samples; multiplied by grid values)", low=1)
    algorithm: str = param("random", "search algorithm", choices=ALGORITHMS)
    scheduler: str = param("asha", "trial scheduler", choices=SCHEDULERS)
    max_concurrent_trials: int = param(0, "trials at once per cell", low=0,
                                       note="0: as many as the cluster fits")
    max_concurrent_cells: int = param(2, "cells searching at once (those with one-worker trials in one shared Tuner)", low=1)
    metric: str = param(HEADLINE, "validation metric to select on",
                        note="headline: val_ + each dataset's headline metric, the one its leaderboard ranks by")
    mode: str = param("max", "whether the metric is maximised or minimised", choices=("max", "min"))
    grace_period: int = param(1, "ASHA: epochs before a trial may be stopped", low=1)
    reduction_factor: int = param(2, "ASHA: 1/reduction_factor of the trials go on at each rung", low=2)


@dataclass
class Resources:
    """What one trial gets: CPUs and GPUs per worker (fractions allowed) and Ray Train workers."""

    cpus_per_trial: float = param(1.0, "CPUs per worker", low=0, low_open=True)
    gpus_per_trial: float = param(0.0, "GPUs per worker (a worker trains on one device); fractions pack "
                                  "several trials on one GPU", low=0, high=1,
                                  note="more GPUs per trial: workers_per_trial")
    workers_per_trial: int = param(1, "Ray Train workers (DDP) per trial", low=1)
    client_parallelism: str = param("sequential", "where a federated run's clients train: one after another in "
                                    "the trial, or as Ray tasks with the trial's CPUs and GPUs each",
                                    choices=CLIENT_PARALLELISM)


@dataclass
class SeedPolicy:
    """The seeds of a cell's runs. Every search trial uses `search` (initialisation and data order), `subset`
    (the few-shot draw) and `split`. Final run i = 1..final_seeds uses initialisation and data order `search + i`,
    so no final run replays a search trial; its subset and split seeds are the search's unless `final_vary`
    names them (then `subset + i`, `split + i`: the interval then covers that variance too)."""

    search: int = param(0, "seed of initialisation and data order of every search trial", low=0)
    subset: int = param(0, "seed of the few-shot draw", low=0)
    split: int = param(0, "seed of the train/validation/test split", low=0)


@dataclass
class DatasetEntry:  # noqa: D101
    """A target dataset, its few-shot size (and validation images per class, 0: as many as training) and
    search-space overrides for it alone; `methods` and `backbones`, when given, replace the suite's for this
    dataset (so one suite can hold several experiments); `federation`, the setting of its federated methods'
    cells (clients, alpha, client_fraction; the knobs' defaults where left out)."""

    name: str
    samples_per_class: int = 0
    val_per_class: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    methods: list[str] = field(default_factory=list)
    backbones: list[BackboneEntry] = field(default_factory=list)
    federation: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return target_label(self.name, self.samples_per_class)

    @property
    def setting(self) -> dict[str, Any]:
        """The federated setting of this target: every setting knob, defaults filled in."""
        defaults = {f.name: f.default for f in dataclasses.fields(FederatedArgs) if f.name in SETTING_KEYS}
        return {**defaults, **self.federation}


@dataclass
class BackboneEntry:
    name: str
    weights: str = "none"


@dataclass
class SourceSpec:
    """A source network to pretrain (or reuse) before the cells run; referenced as weights `source:KEY`."""

    dataset: str
    backbone: str
    epochs: int = 15
    lr: float = 0.05
    batch_size: int = 64
    augment: str = "basic"
    seed: int = 0


@dataclass
class SuiteSpec:
    name: str
    description: str = ""
    datasets: list[DatasetEntry] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    backbones: list[BackboneEntry] = field(default_factory=list)
    sources: dict[str, SourceSpec] = field(default_factory=dict)
    search: SearchBudget = field(default_factory=SearchBudget)
    resources: Resources = field(default_factory=Resources)
    final_seeds: int = 3
    final_vary: list[str] = field(default_factory=lambda: ["init"])
    seeds: SeedPolicy = field(default_factory=SeedPolicy)
    overrides: dict[str, Any] = field(default_factory=dict)
    estimate: bool = False  # transferability estimates of every (target, weights) before the cells train

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def all_backbones(self) -> list[BackboneEntry]:
        """The suite's backbones and those of its dataset entries."""
        return self.backbones + [b for d in self.datasets for b in d.backbones]

    def source_keys(self) -> list[str]:
        """The sources the suite uses: named by its backbones' weights, and by `source:KEY` values of its
        overrides (a method knob such as distill's `teacher_weights`)."""
        named = [b.weights for b in self.all_backbones()]
        for overrides in [self.overrides, *(d.overrides for d in self.datasets)]:
            named += [v for value in overrides.values() for v in _values(value)]
        return sorted({v[len(SOURCE):] for v in named if isinstance(v, str) and v.startswith(SOURCE)})


SOURCE = "source:"


def _values(value: Any) -> list[Any]:
    """The values an override names: a fixed value, or those of a distribution."""
    if isinstance(value, dict):
        return [v for args in value.values() if isinstance(args, list) for v in args]
    return [value]


def _resolve_sources(space: dict[str, Any], source_weights: dict[str, str]) -> dict[str, Any]:
    """A merged space with every `source:KEY` value (fixed, or of a choice or grid) replaced by its network file."""
    def resolve(v: Any) -> Any:
        return source_weights.get(v[len(SOURCE):], v) if isinstance(v, str) and v.startswith(SOURCE) else v

    return {k: Dist(v.kind, tuple(resolve(a) for a in v.args)) if isinstance(v, Dist) else resolve(v)
            for k, v in space.items()}


def _outcome_fields(search: SearchBudget) -> dict[str, Any]:
    """The search budget minus what only changes how fast it runs (so a cell keeps its id)."""
    fields = dataclasses.asdict(search)
    fields.pop("max_concurrent_cells")
    return fields


def _outcome_resources(resources: Resources) -> dict[str, Any]:
    """The resources minus where federated clients run (the same model either way, so a cell keeps its id)."""
    fields = dataclasses.asdict(resources)
    fields.pop("client_parallelism")
    return fields


@dataclass(frozen=True)
class Cell:
    """One (dataset, method, backbone) benchmark cell, ready to search."""

    dataset: DatasetEntry
    method: str
    backbone: BackboneEntry
    weights: str
    space: dict[str, Any]
    search: SearchBudget
    resources: Resources
    final_seeds: int
    seeds: SeedPolicy = field(default_factory=SeedPolicy)
    final_vary: tuple[str, ...] = ("init",)

    @property
    def federated(self) -> bool:
        return METHODS.get(self.method).server is not None

    @property
    def label(self) -> str:
        where = f" [{setting(self.dataset.setting)}]" if self.federated else ""
        return f"{self.dataset.label}{where} · {self.method} · {self.backbone.name}"

    @property
    def constants(self) -> dict[str, Any]:
        """What every search trial of the cell has in common: the cell, the search's seeds and, for a federated
        method, the federated setting."""
        return {"dataset": self.dataset.name, "samples_per_class": self.dataset.samples_per_class,
                "method": self.method, "backbone": self.backbone.name, "weights": self.weights,
                "seed": self.seeds.search, "subset_seed": self.seeds.subset, "split_seed": self.seeds.split,
                "val_per_class": self.dataset.val_per_class, **(self.dataset.setting if self.federated else {})}

    @property
    def final_seed_list(self) -> list[int]:
        """The initialisation seeds of the final runs: `search + 1 .. search + final_seeds`, none the search's."""
        return [self.seeds.search + i for i in range(1, self.final_seeds + 1)]

    def final_run_seeds(self, seed: int) -> dict[str, int]:
        """Every seed of the final run with initialisation seed `seed` (see SeedPolicy)."""
        i = seed - self.seeds.search
        return {"seed": seed, "subset_seed": self.seeds.subset + (i if "subset" in self.final_vary else 0),
                "split_seed": self.seeds.split + (i if "split" in self.final_vary else 0)}

    @property
    def cell_id(self) -> str:
        """Hash of everything that decides the cell's outcome: the same id never needs to run twice."""
        weights = self.weights  # a checkpoint by content, not by folder: runs on machines with other paths merge
        if weights.startswith("checkpoint:"):
            weights = "checkpoint:" + checkpoint_identity(weights[len("checkpoint:"):])
        return config_hash({**self.constants, "weights": weights, "space": space_to_data(self.space),
                            "search": _outcome_fields(self.search), "resources": _outcome_resources(self.resources),
                            "final_seeds": self.final_seeds, "final_vary": sorted(self.final_vary)})

    @property
    def num_trials(self) -> int:
        return trial_count(self.space, self.search.num_samples, self.search.algorithm)

    @property
    def max_epochs(self) -> int:
        e = self.space.get("epochs", TrialConfig().epochs)
        return int(max(e.args) if isinstance(e, Dist) and e.kind in ("choice", "grid") else
                   e.args[1] if isinstance(e, Dist) else e)


def suites_dir() -> Path:
    return spaces_dir() / "suites"


def _build(cls: type, data: Any, where: str) -> Any:
    """A suite dataclass from a YAML mapping: unknown keys refused, scalars cast to the field types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping, got {data!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}'; choose from: {', '.join(known)}")
    values = {}
    for key, value in data.items():
        kind = scalar_type(known[key])
        if kind is None and str(known[key].type).startswith("dict") and not isinstance(value, dict):
            raise ConfigError(f"{where}: key '{key}' must be a mapping, got {value!r}")
        try:
            values[key] = coerce(key, kind, value)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _entries(cls: type, items: Any, where: str, key: str) -> list[Any]:
    if not isinstance(items, list):
        raise ConfigError(f"{where}: key '{key}' must be a list")
    return [_build(cls, {"name": i} if isinstance(i, str) else i, f"{where}: {key}[{n}]") for n, i in enumerate(items)]


def load_suite(name_or_path: str) -> SuiteSpec:
    """A suite by name (search_spaces/suites/NAME.yaml) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = suites_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in suites_dir().glob("*.yaml"))
        raise ConfigError(f"suite '{name_or_path}': no such file {path}; choose from: {', '.join(known)}")
    return suite_from_dict(read_yaml(path) or {}, str(path), default_name=path.stem)


def _dataset_entries(items: Any, where: str) -> list[DatasetEntry]:
    entries = _entries(DatasetEntry, items, where, "datasets")
    for n, d in enumerate(entries):
        if not isinstance(d.methods, list):
            raise ConfigError(f"{where}: datasets[{n}]: key 'methods' must be a list")
        d.methods = [str(m) for m in d.methods]
        d.backbones = _entries(BackboneEntry, d.backbones, f"{where}: datasets[{n}]", "backbones")
    return entries


def suite_from_dict(data: dict[str, Any], where: str, default_name: str = "suite") -> SuiteSpec:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping")
    known = {f.name for f in dataclasses.fields(SuiteSpec)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}'; choose from: {', '.join(sorted(known))}")
    suite = SuiteSpec(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        datasets=_dataset_entries(data.get("datasets", []), where),
        methods=[str(m) for m in data.get("methods", [])],
        backbones=_entries(BackboneEntry, data.get("backbones", []), where, "backbones"),
        sources={k: _build(SourceSpec, v, f"{where}: sources.{k}") for k, v in (data.get("sources") or {}).items()},
        search=_build(SearchBudget, data.get("search") or {}, f"{where}: search"),
        resources=_build(Resources, data.get("resources") or {}, f"{where}: resources"),
        final_seeds=_coerced("final_seeds", int, data.get("final_seeds", 3), where),
        final_vary=_final_vary(data.get("final_vary", ["init"]), where),
        seeds=_build(SeedPolicy, data.get("seeds") or {}, f"{where}: seeds"),
        overrides=dict(data.get("overrides") or {}),
        estimate=_coerced("estimate", bool, data.get("estimate", False), where),
    )
    validate_suite(suite, where)
    return suite


def _coerced(name: str, kind: type, value: Any, where: str) -> Any:
    """A top-level suite scalar as `kind`, the error prefixed with where it came from."""
    try:
        return coerce(name, kind, value)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _final_vary(value: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{where}: final_vary={value!r}: must be a list; choose from: {', '.join(FINAL_VARY)}")
    return [str(v) for v in items]


def validate_suite(suite: SuiteSpec, where: str) -> None:
    """Names, budgets and resources checked before anything starts."""
    def check(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(f"{where}: {msg}")

    for d in suite.datasets:
        try:
            DATASETS.get(parse_spec(d.name)[0])
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        check(d.samples_per_class >= 0, f"samples_per_class={d.samples_per_class}: must be >= 0")
        check(d.val_per_class >= -1, f"val_per_class={d.val_per_class}: must be -1 (the whole validation split), "
                                     f"0 (as many as samples_per_class) or a positive count")
        parse_space(d.overrides, f"{where}: datasets {d.name} overrides")
        _check_setting(d, where)
    for m in suite.methods + [m for d in suite.datasets for m in d.methods]:
        if m not in METHODS:
            raise ConfigError(f"{where}: {METHODS.unknown_message(m)}")
    for d in suite.datasets:
        task = dataset_task(d.name)
        for m in d.methods or suite.methods:
            check(task in METHODS.get(m).tasks, f"method '{m}' on dataset '{d.name}': not for {task}; it is for "
                                                f"{', '.join(METHODS.get(m).tasks)}")
        for b in d.backbones or suite.backbones:
            made_for = BACKBONES.get(b.name).task if b.name in BACKBONES else task
            check(made_for == task, f"backbone '{b.name}' on dataset '{d.name}': a {made_for} network for a "
                                    f"{task} dataset")
    for b in suite.all_backbones():
        if b.name not in BACKBONES:
            raise ConfigError(f"{where}: {BACKBONES.unknown_message(b.name)}")
        if b.weights.startswith("source:"):
            check(b.weights[7:] in suite.sources,
                  f"weights='{b.weights}': no source '{b.weights[7:]}'; sources: {', '.join(suite.sources) or 'none'}")
    for key in suite.source_keys():
        check(key in suite.sources, f"overrides: 'source:{key}': no source '{key}'; sources: "
                                    f"{', '.join(suite.sources) or 'none'}")
    for key, s in suite.sources.items():
        for name, reg in ((parse_spec(s.dataset)[0], DATASETS), (s.backbone, BACKBONES)):
            if name not in reg:
                raise ConfigError(f"{where}: sources.{key}: {reg.unknown_message(name)}")
    check(bool(suite.datasets) and all((d.methods or suite.methods) and (d.backbones or suite.backbones)
                                       for d in suite.datasets), "needs datasets, methods and backbones")
    try:
        validate_fields(suite.search, "search.")
        validate_fields(suite.resources, "resources.")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    federated = [m for m in suite.methods + [m for d in suite.datasets for m in d.methods] if METHODS.get(m).server]
    check(not federated or suite.resources.workers_per_trial == 1,
          f"resources.workers_per_trial={suite.resources.workers_per_trial}: federated methods ({', '.join(federated)}) "
          f"run in one process; spread their clients with resources.client_parallelism: ray")
    check(suite.final_seeds >= 1, f"final_seeds={suite.final_seeds}: must be >= 1")
    for v in suite.final_vary:
        check(v in FINAL_VARY, f"final_vary: '{v}' is not a seed; choose from: {', '.join(FINAL_VARY)}")
    check("init" in suite.final_vary, f"final_vary={suite.final_vary}: must include init (final runs never "
                                      f"replay the search's initialisation)")
    try:
        validate_fields(suite.seeds, "seeds.")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    parse_space(suite.overrides, f"{where}: overrides")


def _check_setting(d: DatasetEntry, where: str) -> None:
    """A dataset entry's federated setting: known keys, values the knobs allow."""
    if not isinstance(d.federation, dict):
        raise ConfigError(f"{where}: datasets {d.name}: federation must be a mapping of {', '.join(SETTING_KEYS)}")
    known = {f.name: f for f in dataclasses.fields(FederatedArgs) if f.name in SETTING_KEYS}
    for key, value in d.federation.items():
        if key not in known:
            raise ConfigError(f"{where}: datasets {d.name}: federation: unknown key '{key}'; choose from: "
                              f"{', '.join(SETTING_KEYS)}")
        try:
            d.federation[key] = check_value(known[key], value)
        except ConfigError as e:
            raise ConfigError(f"{where}: datasets {d.name}: federation: {e}") from None


def apply_overrides(suite: SuiteSpec, **flags: Any) -> SuiteSpec:
    """CLI flags over a suite: --datasets, --methods, --backbones, --num-samples, --final-seeds, ..."""
    s = dataclasses.replace(suite, search=dataclasses.replace(suite.search), seeds=dataclasses.replace(suite.seeds),
                            resources=dataclasses.replace(suite.resources), overrides=dict(suite.overrides),
                            final_vary=list(suite.final_vary))
    if flags.get("datasets"):
        known = {d.name: d for d in suite.datasets}
        s.datasets = [dataclasses.replace(known.get(d, DatasetEntry(d)),
                                          samples_per_class=flags.get("samples_per_class") or
                                          (known[d].samples_per_class if d in known else 0))
                      for d in flags["datasets"]]
    elif flags.get("samples_per_class") is not None:
        s.datasets = [dataclasses.replace(d, samples_per_class=flags["samples_per_class"]) for d in s.datasets]
    if flags.get("methods"):
        s.methods = list(flags["methods"])
        s.datasets = [dataclasses.replace(d, methods=[]) for d in s.datasets]
    if flags.get("backbones"):
        weights = {b.name: b.weights for b in suite.all_backbones()}
        s.backbones = [BackboneEntry(b, flags.get("weights") or weights.get(b, "none")) for b in flags["backbones"]]
        s.datasets = [dataclasses.replace(d, backbones=[]) for d in s.datasets]
    elif flags.get("weights"):
        s.backbones = [BackboneEntry(b.name, flags["weights"]) for b in s.backbones]
        s.datasets = [dataclasses.replace(d, backbones=[BackboneEntry(b.name, flags["weights"]) for b in d.backbones])
                      for d in s.datasets]
    for part in (s.search, s.resources):
        for f in dataclasses.fields(part):
            if flags.get(f.name) is not None:
                setattr(part, f.name, coerce(f.name, scalar_type(f), flags[f.name]))
    if flags.get("final_seeds") is not None:
        s.final_seeds = flags["final_seeds"]
    if flags.get("epochs") is not None:  # a flag beats every file, per-dataset overrides included
        s.overrides["epochs"] = flags["epochs"]
        s.datasets = [dataclasses.replace(d, overrides={**d.overrides, "epochs": flags["epochs"]}) for d in s.datasets]
    validate_suite(s, "command line")
    return s


def cells(suite: SuiteSpec, source_weights: dict[str, str] | None = None) -> list[Cell]:
    """Every (dataset, method, backbone) cell with its merged space; `source:KEY` weights resolved."""
    out = []
    overrides = parse_space(suite.overrides, "overrides")
    for d in suite.datasets:
        search = dataclasses.replace(suite.search, metric=selection_metric(suite.search.metric, d.name))
        for m in d.methods or suite.methods:
            method = METHODS.get(m)
            for b in d.backbones or suite.backbones:
                weights = b.weights
                if method.pretrained == "forbidden":
                    weights = "none"
                elif weights.startswith("source:"):
                    weights = (source_weights or {}).get(weights[7:], weights)
                elif method.pretrained == "required" and weights == "none":
                    raise ConfigError(f"method '{m}' on backbone '{b.name}': needs pretrained weights; give the "
                                      f"backbone weights (imagenet, checkpoint:PATH or source:KEY)")
                num_stages = stage_count(b.name)
                space = resolve_stages(method_space(m, d.name, {**overrides, **parse_space(d.overrides, d.name)}),
                                       num_stages,
                                       f"search space of {m} on {b.name}")
                space = _resolve_sources(space, source_weights or {})
                out.append(Cell(d, m, b, weights, space, search, suite.resources, suite.final_seeds,
                                dataclasses.replace(suite.seeds), tuple(suite.final_vary)))
    return out


def selection_metric(metric: str, dataset: str) -> str:
    """The validation metric a cell's search selects on: `val_` + the dataset's headline metric by default."""
    return f"val_{headline_metric(dataset)}" if metric == HEADLINE else metric
