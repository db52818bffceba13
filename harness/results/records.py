"""Typed records of a run: one per search trial, final run, finished cell, prepared source network and
transferability estimate.

Each record kind is a frozen dataclass with one JSON encoding (`to_json` / `from_json`): a flat object whose
`schema`, `run_id` and `kind` keys come first. Lines of schema version 1 (written before these types existed)
carry the same keys, except that a failed final run or a cell with a winner leave out the keys they had no
value for; `from_json` reads them into the same types, the missing keys taking their defaults.

Schema 3 adds the statuses `interrupted` (running when the run was stopped) and `lost` (its process or node
died more often than retries allowed), and lets a later record of the same trial, final seed or cell replace
an earlier one (a resumed run re-runs what did not finish): `standing()` keeps the records that stand.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from harness.core.config import TrialConfig
from harness.core.jsonio import clean

SCHEMA_VERSION = 3
READABLE_SCHEMAS = (1, 2, 3)

TRIAL_STATUSES = ("ok", "stopped_early", "diverged", "error", "interrupted", "lost")
# a search trial that will not run again: it ended (an error or a lost process after Tune's retries never wins)
TRIAL_DONE = ("ok", "stopped_early", "diverged", "error", "lost")
# a final seed that will not run again: it finished, or diverges whenever it runs; the others run on --resume
FINAL_DONE = ("ok", "diverged")
CELL_STATUSES = ("ok", "no_winner")
SOURCE_ROLES = ("source", "teacher")
ESTIMATE_STATUSES = ("ok", "error")


def target_label(dataset: str, samples_per_class: int) -> str:
    """How a cell's target is named everywhere a person reads it: `digits`, `digits:5-9@10/class` (few-shot)."""
    return f"{dataset}@{samples_per_class}/class" if samples_per_class else dataset


def seeds_of(config: Mapping[str, Any] | None, seed: int = 0) -> dict[str, int]:
    """A run's seeds (initialisation and data order, few-shot subset, split) from its config (`seed` where the
    config has none). Records written before the subset had its own seed drew it with `seed`."""
    config = config or {}
    seed = config.get("seed", seed)
    return {"seed": seed, "subset_seed": config.get("subset_seed", seed), "split_seed": config.get("split_seed", 0)}


def weights_label(weights: str) -> str:
    """How a cell's weights are named where a person reads them: `none`, `imagenet`, a checkpoint's file stem
    (`checkpoint:/r/sources/digits_0-4-resnet8-3f2a.pt` -> `digits_0-4-resnet8-3f2a`)."""
    kind, _, path = weights.partition(":")
    return Path(path).stem if kind == "checkpoint" and path else weights


def entry_label(method: str, backbone: str, weights: str) -> str:
    """How an entry (method, backbone, weights) is named where a person reads it: `finetune/resnet8/imagenet`."""
    return f"{method}/{backbone}/{weights_label(weights)}"


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what}={value!r}: expected one of {', '.join(allowed)}")


@dataclass(frozen=True, kw_only=True)
class Record:
    """What every record carries: the run that wrote it and the schema version of the line it was read from
    (`to_json` always writes the current one)."""

    kind: ClassVar[str] = ""
    run_id: str = ""
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        """The record as one strict-JSON object (non-finite floats become null): the line `RunStore` writes."""
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("run_id", "schema")}
        return clean({"schema": SCHEMA_VERSION, "run_id": self.run_id, "kind": self.kind, **body})


@dataclass(frozen=True, kw_only=True)
class CellFields(Record):
    """The identity every record of a (dataset, few-shot size, method, backbone, weights) cell carries."""

    cell_id: str
    dataset: str
    samples_per_class: int
    method: str
    backbone: str
    weights: str

    @property
    def target(self) -> str:
        return target_label(self.dataset, self.samples_per_class)


class _Run:
    """What a search trial and a final run share beyond their fields: a checked status and their seeds."""

    config: dict[str, Any] | None
    status: str

    @property
    def seeds(self) -> dict[str, int]:
        return seeds_of(self.config, getattr(self, "seed", 0))

    def __post_init__(self) -> None:
        _check(self.status, TRIAL_STATUSES, "status")


@dataclass(frozen=True, kw_only=True)
class TrialRecord(_Run, CellFields):
    """One search trial: its sampled config, how it ended, its validation score and curve, its cost;
    `failures`: how often its process was lost and the trial retried; `node`: where it ran (node IP, hostname,
    Ray node id, accelerator and how many devices)."""

    kind: ClassVar[str] = "trial"
    trial_id: str
    status: str
    config: dict[str, Any] = field(default_factory=dict)
    epochs_completed: int = 0
    metric: str = ""
    value: float | None = None
    val: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    trial_seconds: float = 0.0
    cost: dict[str, Any] | None = None
    error: str | None = None
    search_seconds: float | None = None
    finished_at: float | None = None
    failures: int = 0
    node: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class FinalRecord(_Run, CellFields):
    """One seeded final run of a cell's winning config, scored once on test. The fields after `trial_seconds`
    are the training loop's summary; a run that failed has none of them. `node`: where it ran (as a trial's)."""

    kind: ClassVar[str] = "final"
    seed: int
    status: str
    error: str | None = None
    trial_seconds: float = 0.0
    config: dict[str, Any] | None = None
    config_hash: str | None = None
    val: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    epochs_completed: int = 0
    failures: int = 0
    node: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class CellRecord(CellFields):
    """A finished cell: what its search spent, its winner (or why there is none) and how many finals ran.
    `gpus_per_trial` counts every worker's GPUs; `space`, `search` and `resources` are the cell as searched."""

    kind: ClassVar[str] = "cell"
    status: str
    metric: str = ""
    mode: str = "max"
    trials: int = 0
    trials_completed: int = 0
    trials_stopped_early: int = 0
    trials_errored: int = 0
    trials_diverged: int = 0
    trials_lost: int = 0
    trial_seconds: float = 0.0
    gpus_per_trial: float = 0.0
    search_seconds: float | None = None
    space: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    final_seeds: int = 0
    best_value: float | None = None
    best_config: dict[str, Any] | None = None
    best_trial_id: str | None = None
    finals: int = 0
    reason: str | None = None

    def __post_init__(self) -> None:
        _check(self.status, CELL_STATUSES, "status")


@dataclass(frozen=True, kw_only=True)
class SourceRecord(Record):
    """A network the study trains before the cells that start from it: a source network pretrained on a
    source dataset, or a method's teacher (`role`). `job` is the hash of the job that made `path`; `reused`:
    the file was already there."""

    kind: ClassVar[str] = "source"
    key: str
    role: str
    dataset: str
    backbone: str
    config: dict[str, Any] = field(default_factory=dict)
    path: str
    job: str
    status: str
    seconds: float = 0.0
    reused: bool = False
    val_accuracy: float | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        _check(self.role, SOURCE_ROLES, "role")

    @classmethod
    def of(cls, key: str, role: str, config: TrialConfig, path: Path | str, job: str, status: str = "ok",
           seconds: float = 0.0, reused: bool = False, val_accuracy: float | None = None,
           error: str | None = None) -> "SourceRecord":
        """The record of the network trained with `config` into `path` (dataset and backbone from the config)."""
        return cls(key=key, role=role, dataset=config.dataset, backbone=config.backbone, config=config.to_dict(),
                   path=str(path), job=job, status=status, seconds=seconds, reused=reused,
                   val_accuracy=val_accuracy, error=error)


@dataclass(frozen=True, kw_only=True)
class EstimateRecord(Record):
    """Transferability estimates of one candidate (backbone, weights) for one target, from its training split
    alone, made before the cells train: each estimator's score (higher: better transfer expected), the seconds
    it took, or why it refused. `label` names the candidate for people (the suite's source key, the entry given
    to `harness rank`); `job` is the hash of the estimate job."""

    kind: ClassVar[str] = "estimate"
    job: str
    label: str
    dataset: str
    samples_per_class: int
    backbone: str
    weights: str
    status: str
    scores: dict[str, float | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    feature_seconds: float = 0.0
    images: int = 0
    feature_dim: int = 0
    precision: str = "fp32"
    error: str | None = None

    def __post_init__(self) -> None:
        _check(self.status, ESTIMATE_STATUSES, "status")

    @property
    def target(self) -> str:
        return target_label(self.dataset, self.samples_per_class)


KINDS: dict[str, type[Record]] = {c.kind: c for c in (TrialRecord, FinalRecord, CellRecord, SourceRecord,
                                                       EstimateRecord)}


def record_key(r: Record) -> tuple[Any, ...]:
    """What a record is the record of: a later record with the same key replaces it (schema 3)."""
    if isinstance(r, TrialRecord):
        return ("trial", r.cell_id, r.trial_id)
    if isinstance(r, FinalRecord):
        return ("final", r.cell_id, r.seed)
    if isinstance(r, CellRecord):
        return ("cell", r.cell_id)
    if isinstance(r, SourceRecord):
        return ("source", r.job)
    return (r.kind, id(r))


C = TypeVar("C", bound=CellFields)


def by_cell(records: Iterable[C]) -> dict[str, list[C]]:
    """Records grouped by their cell, in the order given: one pass, so that what is drawn or computed per cell
    stays linear in the number of records."""
    out: dict[str, list[C]] = {}
    for r in records:
        out.setdefault(r.cell_id, []).append(r)
    return out


def standing(records: list[Record]) -> list[Record]:
    """The records that stand: of each trial, final seed, cell and source the last one written, in the order
    their first record was written."""
    last: dict[tuple[Any, ...], Record] = {}
    for r in records:
        last[record_key(r)] = r
    return list(last.values())


def versions_text(schemas: tuple[int, ...]) -> str:
    return ", ".join(map(str, schemas[:-1])) + f" and {schemas[-1]}"


def from_json(data: Mapping[str, Any]) -> Record:
    """The typed record of one JSON line of schema version 1 or 2, by its `kind`. Keys the type does not know
    are dropped; a missing key takes its default; a missing required key or a bad value raises ValueError."""
    schema = data.get("schema")
    if schema not in READABLE_SCHEMAS:
        raise ValueError(f"schema version {schema!r}; readable: {versions_text(READABLE_SCHEMAS)}")
    cls = KINDS.get(data.get("kind"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown record kind {data.get('kind')!r}; known: {', '.join(KINDS)}")
    names, required = _init_fields(cls)
    missing = [name for name in required if name not in data]
    if missing:
        raise ValueError(f"a {cls.kind} record without {', '.join(missing)}")
    return cls(**{name: data[name] for name in names if name in data})


@functools.lru_cache(maxsize=None)
def _init_fields(cls: type[Record]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A record type's constructor fields and those without a default, looked up once per type, not per line."""
    fields = [f for f in dataclasses.fields(cls) if f.init]
    return (tuple(f.name for f in fields), tuple(f.name for f in fields if f.default is dataclasses.MISSING
                                                and f.default_factory is dataclasses.MISSING))
