"""Many cells' searches in one Tuner, so that its trial processes stay warm from one cell to the next.

`CellsSearch` runs each cell's own search algorithm (seeded from the cell's id, with the cell's own limit on
trials at once), at most `parallel` cells at a time, in order; `CellsScheduler` hands each trial to its own
cell's scheduler (ASHA per cell). A trial's config names its cell (CELL_KEY).
"""

from __future__ import annotations

import copy
import secrets
from pathlib import Path
from typing import Any

from ray.tune.experiment import _convert_to_experiment_list
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.search_algorithm import SearchAlgorithm
from ray.tune.utils.util import _atomic_save, _load_newest_checkpoint

from harness.study.trial import CELL_KEY


class CellsSearch(SearchAlgorithm):
    """One search algorithm per cell behind one Tuner: a cell starts when one of the `parallel` running cells has
    no trial left to start or running; the Tuner ends when every cell has."""

    STATE_FILE = "cells-search-state-{}.pkl"

    def __init__(self, cells: dict[str, tuple[BasicVariantGenerator, dict[str, Any], int]], parallel: int) -> None:
        """`cells`: cell id -> (its search algorithm, its param space, its number of samples)."""
        taken: set[str] = set()
        for generator, _, _ in cells.values():  # trial ids are unique per Tuner: one prefix per cell
            while (prefix := secrets.token_hex(3)[:5] + "_") in taken:
                pass
            generator._uuid_prefix = prefix
            taken.add(prefix)
        self.generators = {cell_id: generator for cell_id, (generator, _, _) in cells.items()}
        self.specs = {cell_id: (space, samples) for cell_id, (_, space, samples) in cells.items()}
        self.parallel = max(1, parallel)
        self.waiting, self.active = list(cells), []
        self.live: dict[str, str] = {}  # trial id -> its cell
        self._finished = False

    @property
    def total_samples(self) -> int:
        return sum(g.total_samples for g in self.generators.values())

    def add_configurations(self, experiments: Any) -> None:
        """Each cell's algorithm gets the Tuner's experiment with the cell's own param space and samples."""
        (experiment,) = _convert_to_experiment_list(experiments)
        for cell_id, generator in self.generators.items():
            space, samples = self.specs[cell_id]
            mine = copy.copy(experiment)
            mine.spec = {**experiment.spec, "config": space, "num_samples": samples}
            generator.add_configurations([mine])

    def _ended(self, cell_id: str) -> bool:
        return self.generators[cell_id].is_finished() and cell_id not in self.live.values()

    def next_trial(self) -> Any:
        while not self.is_finished():
            self.active = [c for c in self.active if not self._ended(c)]
            while self.waiting and len(self.active) < self.parallel:
                self.active.append(self.waiting.pop(0))
            if not self.active:
                self.set_finished()
                return None
            for cell_id in self.active:
                trial = self.generators[cell_id].next_trial()
                if trial is not None:
                    self.live[trial.trial_id] = cell_id
                    return trial
            if not any(self._ended(c) for c in self.active):
                return None
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.live:
            self.generators[self.live[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        cell_id = self.live.pop(trial_id, None)
        if cell_id is not None:
            self.generators[cell_id].on_trial_complete(trial_id, result, error)

    def save_to_dir(self, dirpath: str, session_str: str) -> None:
        state = {k: v for k, v in self.__dict__.items() if k != "generators"}
        state["generators"] = {c: g.get_state() for c, g in self.generators.items()}
        name = self.STATE_FILE.format(session_str)
        _atomic_save(state=state, checkpoint_dir=dirpath, file_name=name, tmp_file_name=f"tmp-{name}")

    def has_checkpoint(self, dirpath: str) -> bool:
        return any(Path(dirpath).glob(self.STATE_FILE.format("*")))

    def restore_from_dir(self, dirpath: str) -> None:
        state = _load_newest_checkpoint(dirpath, self.STATE_FILE.format("*"))
        for cell_id, generator_state in state.pop("generators").items():
            self.generators[cell_id].set_state(generator_state)
        self.__dict__.update(state)


class CellsScheduler(FIFOScheduler):
    """Each trial goes to its own cell's scheduler (ASHA compares a trial with its own cell's trials only); the
    next trial to run is the first that is ready, as FIFO and ASHA both pick."""

    def __init__(self, schedulers: dict[str, TrialScheduler]) -> None:
        super().__init__()
        self.schedulers = schedulers

    def _of(self, trial: Any) -> TrialScheduler:
        return self.schedulers[trial.config[CELL_KEY]]

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
