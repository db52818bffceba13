"""Transferability estimates in a study: `harness rank` (score candidate source networks for one target, before
training any; no Ray) and the estimate jobs of a run whose suite says `estimate: true` (in the driver, after the
source networks and before the cells, each recorded as an EstimateRecord so a resumed run skips it)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.core.errors import ConfigError
from harness.models.backbones import BACKBONES
from harness.models.weights import read_checkpoint
from harness.ranking import ESTIMATORS
from harness.results.records import EstimateRecord
from harness.results.store import RunStore
from harness.study.plan import EstimateJob

if TYPE_CHECKING:
    from harness.train.estimates import CandidateScores

Log = Callable[[str], None]


@dataclass(frozen=True)
class Candidate:
    """One weights entry of `harness rank`: how it was given, its backbone and weights."""

    label: str
    backbone: str
    weights: str


def parse_candidate(entry: str, backbone: str | None) -> Candidate:
    """`[BACKBONE=]WEIGHTS`: the entry's own backbone, else `--backbone`, else (for checkpoint:PATH) the network
    the file holds."""
    name, eq, rest = entry.partition("=")
    own, weights = (name, rest) if eq and name in BACKBONES else (None, entry)
    if weights.startswith("source:"):
        raise ConfigError(f"--weights {entry}: source:KEY names a network of a suite; give checkpoint:PATH "
                          f"(results/sources/ holds the suite's files)")
    chosen = own or backbone
    if chosen is None:
        if not weights.startswith("checkpoint:"):
            raise ConfigError(f"--weights {entry}: no backbone; write BACKBONE={weights} (e.g. resnet50={weights}) "
                              f"or give --backbone")
        chosen = read_checkpoint(weights.partition(":")[2]).network or ""
    BACKBONES.get(chosen)
    return Candidate(entry, chosen, weights)


def score(candidate: Candidate, dataset: str, samples_per_class: int = 0, split_seed: int = 0,
          estimators: list[str] | None = None, job: str = "", subset_seed: int = 0, precision: str = "auto"
          ) -> EstimateRecord:
    """Every estimator's score of one candidate for the target's training split (the test split stays sealed)."""
    from harness.train.estimates import feature_config, score_candidate

    config = feature_config(dataset, candidate.backbone, candidate.weights, samples_per_class, split_seed=split_seed,
                            subset_seed=subset_seed)
    return _record(candidate, dataset, samples_per_class, score_candidate(config, estimators, precision), job)


def _record(candidate: Candidate, dataset: str, samples_per_class: int, s: CandidateScores, job: str = ""
            ) -> EstimateRecord:
    return EstimateRecord(job=job, label=candidate.label, dataset=dataset, samples_per_class=samples_per_class,
                          backbone=candidate.backbone, weights=candidate.weights, status="ok", scores=s.scores,
                          seconds=s.seconds, refused=s.refused, feature_seconds=s.feature_seconds, images=s.images,
                          feature_dim=s.feature_dim, precision=s.precision)


def rank(dataset: str, entries: list[str], backbone: str | None = None, samples_per_class: int = 0,
         split_seed: int = 0, estimators: list[str] | None = None, log: Log | None = None, precision: str = "auto",
         workers: int = 0) -> list[EstimateRecord]:
    """`harness rank`: every entry checked first, then each candidate's training features extracted once (in
    `precision`: auto, bf16 or fp32) and scored by every estimator. On the CPU `workers` threads (0: one per torch
    thread) each run one thread's forward passes over slices of the candidates' splits: a small network's
    convolutions gain little from a second thread, so side by side they nearly halve the wall time. On a GPU one
    pass runs at a time."""
    import torch

    from harness.train.estimates import (feature_config, feature_dtype, feature_slices, finish_features,
                                         forward_slice, prepare_features, score_features)
    from harness.train.loop import pick_device

    for name in estimators or ():
        ESTIMATORS.get(name)
    feature_dtype(precision, torch.device("cpu"))
    if workers < 0:
        raise ConfigError(f"--workers {workers}: give 0 (one per CPU thread) or a positive number")
    if len(set(entries)) != len(entries):
        raise ConfigError(f"--weights: {', '.join(sorted({e for e in entries if entries.count(e) > 1}))} given twice")
    candidates = [parse_candidate(e, backbone) for e in entries]
    device = pick_device()
    threads = torch.get_num_threads()
    workers = 1 if device.type == "cuda" else max(1, workers or threads)
    try:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads,
                                initargs=(max(1, threads // workers),)) as pool:
            passes = []
            for c in candidates:
                fp = prepare_features(feature_config(dataset, c.backbone, c.weights, samples_per_class,
                                                     split_seed=split_seed), device, precision)
                passes.append((fp, [pool.submit(forward_slice, fp, part) for part in feature_slices(fp, workers)]))
            done = [[f.result() for f in parts] for _, parts in passes]
    finally:
        torch.set_num_threads(threads)
    records = []
    for c, (fp, _), parts in zip(candidates, passes, done, strict=True):
        features = finish_features(fp, torch.cat([f for f, _ in parts]), sum(t for _, t in parts))
        records.append(_record(c, dataset, samples_per_class, score_features(features, estimators)))
        if log:
            log(f"{c.label}: {c.backbone}, {records[-1].images} training images -> {records[-1].feature_dim}"
                f" {records[-1].precision} features in {records[-1].feature_seconds:.2f}s")
    return records


def run_estimates(jobs: list[EstimateJob], store: RunStore, log: Log) -> list[EstimateRecord]:
    """The estimate jobs not yet recorded in `store`, one after another in this process; a job that fails is
    recorded with its error and the run goes on (its candidate is then left out of the agreement table)."""
    have = {r.job for r in store.records(EstimateRecord)}
    records = []
    for job in jobs:
        if job.job_id in have:
            continue
        t0 = time.time()
        candidate = Candidate(job.candidate, job.backbone, job.weights)
        try:
            record = score(candidate, job.dataset, job.samples_per_class, job.split_seed, job=job.job_id,
                           subset_seed=job.subset_seed)
        except Exception as e:  # noqa: BLE001 - a failed estimate must not stop the benchmark
            line = traceback.format_exception_only(e)[-1].strip()
            record = EstimateRecord(job=job.job_id, label=job.candidate, dataset=job.dataset,
                                    samples_per_class=job.samples_per_class, backbone=job.backbone,
                                    weights=job.weights, status="error", error=line[:300])
        shown = ", ".join(f"{k} {v:.3f}" for k, v in record.scores.items() if v is not None)
        log(f"[{job.label}] {record.status}: {shown or record.error} ({time.time() - t0:.1f}s)")
        records.append(record)
    return records
