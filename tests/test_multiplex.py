"""Cells sharing one Tuner: each draws what its own Tuner would draw, at most `parallel` cells run at once, and
each trial goes to its own cell's scheduler."""

import pytest

ray = pytest.importorskip("ray")

from ray import tune

from harness.study.multiplex import CellsScheduler, CellsSearch
from harness.study.plan import build_plan
from harness.study.search import search_parts
from harness.study.suite import suite_from_dict
from harness.study.trial import CELL_KEY


def cells(tmp_path, n=3):
    suite = suite_from_dict({"name": "m", "datasets": ["digits:0-4"], "methods": ["scratch", "finetune", "partial"][:n],
                             "backbones": [{"name": "resnet8", "weights": "none"}],
                             "search": {"num_samples": 3, "max_concurrent_trials": 1}}, "test")
    return build_plan(suite, tmp_path / "sources").cells


def experiment():
    return tune.Experiment("m", run=lambda config: None, config={})


def drawn(generator):
    """Every configuration a search algorithm hands out, each trial completed before the next is asked for."""
    out = []
    while (trial := generator.next_trial()) is not None:
        out.append({k: v for k, v in trial.config.items() if k != CELL_KEY})
        generator.on_trial_complete(trial.trial_id)
    return out


def test_a_cell_sharing_a_tuner_draws_what_its_own_tuner_draws_two_cells_at_a_time(tmp_path):
    plan_cells = cells(tmp_path)
    alone = []
    for cell in plan_cells:
        space, _, generator = search_parts(cell, 1)
        generator.add_configurations([tune.Experiment("m", run=lambda config: None, config=space, num_samples=3)])
        alone.append(drawn(generator))
    parts = {}
    for cell in plan_cells:
        space, _, generator = search_parts(cell, 1)
        parts[cell.cell_id] = (generator, {**space, CELL_KEY: cell.cell_id}, 3)
    shared = CellsSearch(parts, parallel=2)
    shared.add_configurations([experiment()])
    assert shared.total_samples == 9
    running, order, seen = {}, [], {c.cell_id: [] for c in plan_cells}
    while not shared.is_finished():
        trial = shared.next_trial()
        if trial is None and shared.is_finished():
            break
        if trial is None:  # every running cell waits for its trial: end the oldest
            trial_id = next(iter(running))
            running.pop(trial_id)
            shared.on_trial_complete(trial_id)
            continue
        running[trial.trial_id] = trial.config[CELL_KEY]
        assert len(set(running.values())) == len(running) <= 2  # one trial per cell at once, two cells at once
        order.append(trial.config[CELL_KEY])
        seen[trial.config[CELL_KEY]].append({k: v for k, v in trial.config.items() if k != CELL_KEY})
    assert [seen[c.cell_id] for c in plan_cells] == alone
    assert order.index(plan_cells[2].cell_id) > max(i for i, c in enumerate(order) if c == plan_cells[0].cell_id)
    assert not running and len(set(order)) == 3


def test_each_trial_goes_to_its_own_cells_scheduler(tmp_path):
    plan_cells = cells(tmp_path, 2)
    added = {c.cell_id: [] for c in plan_cells}

    class Recording(tune.schedulers.FIFOScheduler):
        def __init__(self, cell_id):
            super().__init__()
            self.cell_id = cell_id

        def on_trial_add(self, tune_controller, trial):
            added[self.cell_id].append(trial.config[CELL_KEY])

    scheduler = CellsScheduler({c.cell_id: Recording(c.cell_id) for c in plan_cells})
    for cell in plan_cells * 2:
        scheduler.on_trial_add(None, type("T", (), {"config": {CELL_KEY: cell.cell_id}})())
    assert added == {c.cell_id: [c.cell_id, c.cell_id] for c in plan_cells}
