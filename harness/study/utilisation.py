"""How busy a run kept the cluster's cores: the CPU-seconds its trainings held over cores x wall time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from harness.results.records import FinalRecord, Record, SourceRecord, TrialRecord


def busy_seconds(records: Iterable[Record], cpus: Mapping[str, float], source_threads: int,
                 teacher_cpus: float) -> dict[str, float]:
    """CPU-seconds held by trainings, by kind: search trials and final runs (their seconds x the CPUs a trial
    of their cell holds, `cpus` by cell id), source networks (x `source_threads`) and teachers."""
    busy = {"search": 0.0, "finals": 0.0, "sources": 0.0}
    for r in records:
        if isinstance(r, TrialRecord):
            busy["search"] += (r.trial_seconds or 0.0) * cpus.get(r.cell_id, 1.0)
        elif isinstance(r, FinalRecord):
            busy["finals"] += (r.trial_seconds or 0.0) * cpus.get(r.cell_id, 1.0)
        elif isinstance(r, SourceRecord):
            busy["sources"] += r.seconds * (source_threads if r.role == "source" else teacher_cpus)
    return busy


def efficiency(busy: Mapping[str, float], cores: float, wall: float) -> str:
    """`310 trial-seconds (search 120, finals 150, sources 40) on 2 cores in 175s: 89% of the cores busy`."""
    total = sum(busy.values())
    parts = ", ".join(f"{k} {v:.0f}" for k, v in busy.items())
    share = total / (cores * wall) if cores and wall else 0.0
    return f"{total:.0f} trial-seconds ({parts}) on {cores:g} cores in {wall:.0f}s: {share:.0%} of the cores busy"
