"""Start-up: `harness list`, `harness leaderboard`, a suite's plan and `harness run --dry-run` load none of the
heavy libraries (torch, torchvision, scikit-learn, torchmetrics, SciPy, matplotlib, Ray); what they print is checked
too. Each runs in a fresh interpreter, since this one has them all loaded. The registries declare what those commands
read without building a network, and these tests check each declaration against the network it describes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.core.config import TrialConfig
from harness.results.records import CellRecord, FinalRecord
from harness.results.store import RunStore

HEAVY = ("torch", "torchvision", "sklearn", "torchmetrics", "scipy", "scipy.stats", "matplotlib", "ray")
STATISTICS = ("scipy",)  # the leaderboard's intervals and tests (harness.results.stats) use scipy.special only


def fresh(code: str) -> tuple[str, set[str]]:
    """Run `code` in a new interpreter: what it printed, and which heavy libraries it imported."""
    probe = (f"{code}\nimport sys\n"
             f"print('LOADED=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out, _, loaded = r.stdout.rpartition("LOADED=")
    return out, set(filter(None, loaded.strip().split(",")))


def cli(*argv: str) -> str:
    return f"from harness.cli import main\nassert main({list(argv)!r}) == 0"


def test_list_loads_no_heavy_library():
    out, loaded = fresh(cli("list"))
    assert not loaded
    lines = out.splitlines()
    assert lines[0].startswith("datasets") and any(line.startswith("  digits ") for line in lines)
    assert any(line.startswith("  vit_b_16 ") for line in lines)  # torchvision's backbones, declared
    assert any(line.startswith("  fcos_resnet8 ") for line in lines)  # and the detectors
    assert any(line.startswith("    freeze_depth ") for line in lines)  # methods with their knobs
    assert any(line.startswith("  detection ") for line in lines) and any(line.startswith("  logme ") for line in lines)


def test_list_md_loads_no_heavy_library():
    out, loaded = fresh(cli("list", "--format", "md"))
    assert not loaded
    assert out.startswith("| method | what it does |") and "| `distill` |" in out


def small_run(root):
    """A run folder with two methods on digits, three seeds each, as a run writes it."""
    store = RunStore(root / "quick-1")
    store.dir.mkdir(parents=True)
    for method, accs in (("finetune", [0.90, 0.92, 0.94]), ("scratch", [0.80, 0.82, 0.84])):
        fields = {"cell_id": f"digits-{method}", "dataset": "digits", "samples_per_class": 0, "method": method,
                  "backbone": "resnet8", "weights": "none"}
        store.append([FinalRecord(**fields, seed=seed, status="ok", test={"accuracy": acc},
                                  cost={"params_total": 78000, "params_trainable": 78000, "train_seconds": 10.0,
                                        "train_images_per_s": 1000.0, "peak_memory_mb": 500.0})
                      for seed, acc in enumerate(accs, 1)])
        store.append([CellRecord(**fields, status="ok", trials=2, trials_completed=2, best_value=0.8,
                                 best_trial_id="t1", best_config={"lr": 0.1})])
    return store.dir


def test_leaderboard_loads_no_library_but_scipy_for_its_statistics(tmp_path):
    run = small_run(tmp_path)
    out, loaded = fresh(cli("leaderboard", str(run)))
    assert loaded <= set(STATISTICS)
    rows = [line.split()[:3] for line in out.splitlines() if line.split()[:2] == ["digits", "0"]]
    assert rows == [["digits", "0", "finetune"], ["digits", "0", "scratch"]]
    assert "0.9200 ± 0.0497" in out  # the t-interval over three seeds (t.ppf(0.975, 2) = 4.303)


@pytest.mark.parametrize("fmt", ["csv", "md", "json"])
def test_leaderboard_files_load_no_library_but_scipy_for_their_statistics(fmt, tmp_path):
    run, path = small_run(tmp_path), tmp_path / f"board.{fmt}"
    _, loaded = fresh(cli("leaderboard", str(run), "--out", str(path)))
    assert loaded <= set(STATISTICS)
    text = path.read_text()
    assert "finetune" in text and "scratch" in text
    if fmt == "json":
        json.loads(text)


def test_a_suite_is_read_checked_and_planned_without_heavy_libraries(tmp_path):
    out, loaded = fresh("from harness.study.suite import load_suite\n"
                        "from harness.study.plan import build_plan, describe, done_jobs\n"
                        f"plan = build_plan(load_suite('quick'), {str(tmp_path)!r})\n"
                        "print(*describe(plan, done_jobs(plan, [])), sep='\\n')")
    assert not loaded
    assert "source digits0-4: resnet8 on digits:0-4" in out and out.count("[todo] search") == 8


def test_dry_run_loads_no_heavy_library_and_prints_the_plan(tmp_path):
    from harness.study.plan import build_plan, describe, done_jobs
    from harness.study.suite import load_suite

    out, loaded = fresh(cli("run", "--dry-run", "--results-dir", str(tmp_path)))
    assert not loaded
    plan = build_plan(load_suite("quick"), str(tmp_path / "sources"))
    lines = out.splitlines()
    assert lines[0].startswith("suite quick: 8 cells; resources per trial: 1 worker(s) x 1 CPU, 0 GPU")
    assert lines[1:-1] == describe(plan, done_jobs(plan, []))  # every job, its id and its file; no "not here"
    assert f"-> {tmp_path}/sources/digits_0-4-resnet8-" in lines[2] and lines[-1] == "total: 56 trials"


def test_declared_stage_counts_and_input_sizes_are_the_networks():
    import torch
    from torchvision.models import get_model_weights

    from harness.models.backbones import BACKBONES, stage_count
    import harness.models.detectors  # noqa: F401  (registers the detectors)

    for name in BACKBONES:
        with torch.device("meta"):
            assert stage_count(name) == BACKBONES.get(name).build(None).num_stages, name
        info = BACKBONES.get(name)
        if info.torchvision_name:
            meta = get_model_weights(info.torchvision_name).DEFAULT.meta
            assert info.min_size == max(int(meta.get("min_size", (1, 1))[0]), 8), name


def test_a_trial_config_still_checks_its_names_without_heavy_libraries():
    out, loaded = fresh("from harness.core.config import TrialConfig\n"
                        "from harness.train.checks import check_names\n"
                        "check_names(TrialConfig.from_dict({'dataset': 'digits:5-9', 'backbone': 'resnet8', "
                        "'method': 'partial', 'freeze_depth': 2}))\nprint('checked')")
    assert not loaded and out.strip() == "checked"
    assert TrialConfig.from_dict({"method": "partial", "freeze_depth": 2}).method_args.freeze_depth == 2
