"""`harness status`: a run in progress read from its folder alone: cells waiting, searching, in finals and
finished, trials done and errored, the best so far, time spent and left."""

from __future__ import annotations

import dataclasses

import yaml

from harness.cli import main
from harness.results.records import CellRecord, FinalRecord, TrialRecord
from harness.results.store import RunStore
from harness.study.runner import RESOLVED_SUITE, SESSIONS
from harness.study.search import cell_fields
from harness.study.status import render, run_status
from harness.study.suite import cells, suite_from_dict

SUITE = {"name": "st", "datasets": ["digits:0-4"], "methods": ["scratch", "finetune", "partial"],
         "backbones": [{"name": "resnet8", "weights": "none"}], "search": {"num_samples": 2}, "final_seeds": 2}


def trial(cell, n, value, status="ok"):
    return TrialRecord(**cell_fields(cell), trial_id=f"t{n}", status=status, metric="val_accuracy", value=value)


def test_a_run_in_progress_reads_from_its_folder(tmp_path, capsys):
    suite = suite_from_dict(SUITE, "test")
    scratch, finetune, partial = cells(suite)
    store = RunStore.create(tmp_path, "st")
    store.write_text(RESOLVED_SUITE, yaml.safe_dump(dataclasses.asdict(suite), sort_keys=False))
    store.append_json(SESSIONS, {"started": 1000.0, "pid": 1})
    store.append([trial(scratch, 1, 0.8), trial(scratch, 2, 0.9),
                  FinalRecord(**cell_fields(scratch), seed=1, status="ok"),
                  FinalRecord(**cell_fields(scratch), seed=2, status="ok"),
                  CellRecord(**cell_fields(scratch), status="ok", best_value=0.9, final_seeds=2, finals=2),
                  trial(finetune, 3, 0.7), trial(finetune, 4, None, status="error")])
    status = run_status(store.dir, now=1100.0)
    by_method = {c.label.split(" · ")[1]: c for c in status.cells}
    assert by_method["scratch"].state == "finished" and by_method["scratch"].best == 0.9
    assert by_method["finetune"].state == "finals" and by_method["finetune"].errored == 1
    assert by_method["finetune"].best == 0.7 and by_method["finetune"].trials_done == 2
    assert by_method["partial"].state == "waiting" and by_method["partial"].best is None
    assert (status.done, status.total) == (6, 12) and status.elapsed == 100.0 and status.left == 100.0
    text = render(status)
    assert "running for 1m40s, about 1m40s left" in text and "1 finished, 1 finals, 1 waiting" in text
    assert main(["status", str(store.dir)]) == 0
    assert "partial · resnet8" in capsys.readouterr().out


def test_an_ended_run_says_how_it_ended(tmp_path):
    suite = suite_from_dict(SUITE, "test")
    store = RunStore.create(tmp_path, "st")
    store.write_text(RESOLVED_SUITE, yaml.safe_dump(dataclasses.asdict(suite), sort_keys=False))
    store.append_json(SESSIONS, {"started": 1000.0, "pid": 1})
    store.append_json(SESSIONS, {"ended": 1130.0, "pid": 1, "exit_code": 130})
    status = run_status(store.dir, now=5000.0)
    assert status.left is None and status.elapsed == 130.0
    assert "ended with exit code 130 after 2m10s" in render(status)
