"""Many cells' searches in one Tuner, so that its trial processes stay warm from one cell to the next.

`CellsSearch` runs each cell's own search algorithm (seeded from the cell's id, with the cell's own limit on
trials at once), at most `parallel` cells at a time, in order; when a cell's search ends it can queue the cell's
seeded final runs in the same Tuner (`Finals`), which then run on warm processes beside the other cells'
searches. `CellsScheduler` hands each search trial to its own cell's scheduler (ASHA per cell) and final runs to
a FIFO one. A search trial's config names its cell (CELL_KEY); a final run's carries its whole config (JOB_KEY).
"""

from __future__ import annotations

import copy
import secrets
from pathlib import Path
from typing import Any, Protocol

from ray.tune import grid_search
from ray.tune.experiment import _convert_to_experiment_list
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.search_algorithm import SearchAlgorithm
from ray.tune.utils.util import _atomic_save, _load_newest_checkpoint

from harness.results.records import FinalRecord
from harness.study.trial import CELL_KEY, JOB_KEY, best_of, trial_status

FINAL_PREFIX = "final:"  # a final run's cell, where the searcher and callbacks key things by cell


class Finals(Protocol):
    """What a shared Tuner runs after a cell's search: its final runs, and their records."""

    def __call__(self, cell_id: str, config: dict[str, Any], trial_id: str) -> list[dict[str, Any]] | None:
        """The configs of the final runs of `cell_id` whose winner is trial `trial_id` with `config` (each
        {JOB_KEY: ...}), or None where they cannot run in this Tuner (e.g. a teacher they need is not trained)."""

    def record(self, result: Any, trial: Any) -> FinalRecord:
        """The record of one of those final runs from its Tune result and trial."""


class CellsSearch(SearchAlgorithm):
    """One search algorithm per cell behind one Tuner: a cell starts when one of the `parallel` running cells has
    no trial left to start or running; the Tuner ends when every cell has."""

    STATE_FILE = "cells-search-state-{}.pkl"

    def __init__(self, cells: dict[str, tuple[BasicVariantGenerator, dict[str, Any], int]], parallel: int,
                 modes: dict[str, tuple[str, str]] | None = None, finals: Finals | None = None,
                 finals_at_once: int = 0) -> None:
        """`cells`: cell id -> (its search algorithm, its param space, its number of samples); with `finals`,
        `modes` (cell id -> metric and mode) picks each cell's winner as the records do (`best_of`) and its
        final runs follow in this Tuner, `finals_at_once` (0: no limit) of them at a time."""
        self.generators = {cell_id: generator for cell_id, (generator, _, _) in cells.items()}
        self.taken: set[str] = set()
        for generator in self.generators.values():  # trial ids are unique per Tuner: one prefix per cell
            self._prefix(generator)
        self.specs = {cell_id: (space, samples) for cell_id, (_, space, samples) in cells.items()}
        self.parallel = max(1, parallel)
        self.waiting, self.active = list(cells), []
        self.live: dict[str, str] = {}  # trial id -> its cell (FINAL_PREFIX + cell id for a final run)
        self.ended: dict[str, list[tuple[str, str, float | None]]] = {c: [] for c in cells}
        self.configs: dict[str, dict[str, Any]] = {}  # search trials' configs by id, until their cell's finals
        self.modes, self.finals, self.finals_at_once = modes or {}, finals, finals_at_once
        self.final_generators: dict[str, BasicVariantGenerator] = {}
        self.experiment: Any = None
        self._finished = False

    def _prefix(self, generator: BasicVariantGenerator) -> None:
        while (prefix := secrets.token_hex(3)[:5] + "_") in self.taken:
            pass
        generator._uuid_prefix = prefix
        self.taken.add(prefix)

    @property
    def total_samples(self) -> int:
        return sum(g.total_samples for g in self.generators.values())

    def add_configurations(self, experiments: Any) -> None:
        """Each cell's algorithm gets the Tuner's experiment with the cell's own param space and samples."""
        (experiment,) = _convert_to_experiment_list(experiments)
        self.experiment = experiment
        for cell_id, generator in self.generators.items():
            space, samples = self.specs[cell_id]
            generator.add_configurations([self._spec(space, samples)])

    def _spec(self, space: dict[str, Any], samples: int) -> Any:
        mine = copy.copy(self.experiment)
        mine.spec = {**self.experiment.spec, "config": space, "num_samples": samples}
        return mine

    def _ended(self, cell_id: str) -> bool:
        return self.generators[cell_id].is_finished() and cell_id not in self.live.values()

    def _queue_finals(self, cell_id: str) -> None:
        """The final runs of a cell whose search ended, with its winner, where `finals` gives them (never after a
        restore: the Tuner's experiment is not saved, and the run then starts them itself)."""
        if self.finals is None or self.experiment is None or cell_id in self.final_generators:
            return
        _, mode = self.modes[cell_id]
        winner = best_of(self.ended[cell_id], mode)
        configs = self.finals(cell_id, self.configs[winner], winner) if winner in self.configs else None
        for trial_id, _, _ in self.ended[cell_id]:
            self.configs.pop(trial_id, None)
        if not configs:
            self.final_generators[cell_id] = BasicVariantGenerator()
            self.final_generators[cell_id].set_finished()
            return
        generator = BasicVariantGenerator(max_concurrent=self.finals_at_once)
        self._prefix(generator)
        generator.add_configurations([self._spec({JOB_KEY: grid_search(configs)}, 1)])
        self.final_generators[cell_id] = generator

    def _next_final(self) -> Any:
        for cell_id, generator in self.final_generators.items():
            if not generator.is_finished():
                trial = generator.next_trial()
                if trial is not None:
                    self.live[trial.trial_id] = FINAL_PREFIX + cell_id
                    return trial
        return None

    def _finals_running(self) -> bool:
        return any(not g.is_finished() for g in self.final_generators.values()) or any(
            c.startswith(FINAL_PREFIX) for c in self.live.values())

    def next_trial(self) -> Any:
        while not self.is_finished():
            for cell_id in self.active:
                if self._ended(cell_id):
                    self._queue_finals(cell_id)
            self.active = [c for c in self.active if not self._ended(c)]
            while self.waiting and len(self.active) < self.parallel:
                self.active.append(self.waiting.pop(0))
            trial = self._next_final()
            if trial is not None:
                return trial
            if not self.active:
                if not self._finals_running():
                    self.set_finished()
                return None
            for cell_id in self.active:
                trial = self.generators[cell_id].next_trial()
                if trial is not None:
                    self.live[trial.trial_id] = cell_id
                    if self.finals is not None:
                        self.configs[trial.trial_id] = trial.config
                    return trial
            if not any(self._ended(c) for c in self.active):
                return None
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        cell_id = self.live.get(trial_id, "")
        if cell_id in self.generators:
            self.generators[cell_id].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        cell_id = self.live.pop(trial_id, None)
        if cell_id is None:
            return
        if cell_id.startswith(FINAL_PREFIX):
            self.final_generators[cell_id.removeprefix(FINAL_PREFIX)].on_trial_complete(trial_id, result, error)
            return
        self.generators[cell_id].on_trial_complete(trial_id, result, error)
        if self.finals is not None:
            metric = self.modes[cell_id][0]
            self.ended[cell_id].append((trial_id, trial_status(result, error), (result or {}).get(metric)))

    def save_to_dir(self, dirpath: str, session_str: str) -> None:
        skip = ("generators", "final_generators", "finals", "experiment")
        state = {k: v for k, v in self.__dict__.items() if k not in skip}
        state["generators"] = {c: g.get_state() for c, g in self.generators.items()}
        state["final_generators"] = {c: g.get_state() for c, g in self.final_generators.items()}
        name = self.STATE_FILE.format(session_str)
        _atomic_save(state=state, checkpoint_dir=dirpath, file_name=name, tmp_file_name=f"tmp-{name}")

    def has_checkpoint(self, dirpath: str) -> bool:
        return any(Path(dirpath).glob(self.STATE_FILE.format("*")))

    def restore_from_dir(self, dirpath: str) -> None:
        state = _load_newest_checkpoint(dirpath, self.STATE_FILE.format("*"))
        for cell_id, generator_state in state.pop("generators").items():
            self.generators[cell_id].set_state(generator_state)
        for cell_id, generator_state in state.pop("final_generators", {}).items():
            self.final_generators[cell_id] = BasicVariantGenerator()
            self.final_generators[cell_id].set_state(generator_state)
        self.__dict__.update(state)


class CellsScheduler(FIFOScheduler):
    """Each search trial goes to its own cell's scheduler (ASHA compares a trial with its own cell's trials only),
    final runs to a FIFO one; the next trial to run is the first that is ready, as FIFO and ASHA both pick."""

    def __init__(self, schedulers: dict[str, TrialScheduler]) -> None:
        super().__init__()
        self.schedulers = schedulers
        self.finals = FIFOScheduler()  # nothing stops a final run early

    def _of(self, trial: Any) -> TrialScheduler:
        cell_id = trial.config.get(CELL_KEY)
        return self.finals if cell_id is None else self.schedulers[cell_id]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # each cell's scheduler has its own metric and mode

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(s.debug_string() for s in self.schedulers.values())
