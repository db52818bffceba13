"""What keeps the harness flat at scale: start-up of the reporting commands without torch or Ray, a records store
whose append costs the same however many records it holds, figures that draw a bounded number of panels."""

import json
import subprocess
import sys
import textwrap

from harness.results import leaderboard as lb
from harness.results import plots
from tests.test_leaderboard import ACCS, records_for


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return out.stdout


def test_reporting_commands_start_without_torch_or_ray(tmp_path):
    from tests.test_leaderboard import make_run

    run = make_run(tmp_path, "quick-1", list(ACCS))
    out = run_python(f"""
        import sys
        from harness.cli import main
        for argv in (["leaderboard", {str(run)!r}, "--out", {str(tmp_path / "board.csv")!r}],
                     ["leaderboard", {str(run)!r}, "--format", "md"], ["status", "--help"]):
            try:
                main(argv)
            except SystemExit:
                pass
        print("\\nLOADED", sorted(m for m in ("torch", "torchvision", "torchmetrics", "ray", "sklearn")
                                 if m in sys.modules))
        """)
    assert out.splitlines()[-1] == "LOADED []"
    assert (tmp_path / "board.csv").read_text().count("\n") == len(ACCS) + 1


def test_an_append_reads_the_same_whatever_the_store_holds(tmp_path):
    out = run_python(f"""
        import json, sys
        from pathlib import Path
        from harness.results.store import RunStore
        from tests.test_leaderboard import ACCS, records_for

        store = RunStore(Path({str(tmp_path)!r}) / "run")
        store.dir.mkdir()
        reads = []
        sys.addaudithook(lambda event, args: reads.append(args) if event == "open" and str(args[0]).endswith(
            "records.jsonl") and "r" in str(args[1]) else None)
        batch = records_for(next(iter(ACCS)), [0.9, 0.91, 0.92])
        per_append = []
        for n in range(40):
            before = len(reads)
            store.append(batch)
            per_append.append(len(reads) - before)
        print(json.dumps(per_append))
        """)
    per_append = json.loads(out)
    assert max(per_append) <= 1  # at most the last byte, to close a torn line: never the records read back
    assert per_append[1:] == per_append[1:2] * len(per_append[1:])


def many_datasets() -> lb.Records:
    """The hand-made records of tests/test_leaderboard.py on more datasets than a figure draws."""
    records = lb.Records()
    for copy in range(plots.PANELS_MAX + 3):
        for key in ACCS:
            more = [r.__class__(**{**r.__dict__, "cell_id": f"{r.cell_id}-{copy}", "dataset": f"{key[0]}?c={copy}"})
                    for r in records_for(key, ACCS[key])]
            records.finals += [r for r in more if r.kind == "final"]
            records.cells += [r for r in more if r.kind == "cell"]
            records.trials += [r for r in more if r.kind == "trial"]
    return records


def test_per_dataset_figures_draw_a_bounded_number_of_panels_and_say_so():
    records = many_datasets()
    df = lb.frame(records)
    total = df.assign(t=[f"{d}{s}" for d, s in zip(df.dataset, df.samples_per_class)]).t.nunique()
    assert total > plots.PANELS_MAX
    for fig in (plots.figure_accuracy(df), plots.figure_cost(df), plots.figure_lr(df, records.trials),
                plots.figure_curves(df, records.trials)):
        drawn = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
        assert len(drawn) == plots.PANELS_MAX
        assert fig.get_suptitle() == f"The first {plots.PANELS_MAX} of {total} datasets (the tables cover all)"
        plots.plt.close(fig)
    fig = plots.figure_parallel(records.cells, records.trials, df)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == plots.PARALLEL_MAX
    assert fig.get_suptitle().startswith(f"{plots.PARALLEL_MAX} of {len(records.cells)} cells")
    plots.plt.close(fig)


def test_entry_names_are_written_once_per_row_of_panels_and_legends_name_methods_and_networks():
    """What keeps a figure's text flat: the score bars of 12 datasets name their entries on the first panel of each
    row of panels only; 50 entries of 10 methods on 5 networks take a legend of 15 lines, every entry still its own
    colour and marker."""
    df = lb.frame(many_datasets())
    fig = plots.figure_accuracy(df)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    named = [ax for ax in panels if ax.get_yticklabels()]
    assert len(panels) == plots.PANELS_MAX and len(named) == 2  # two rows of six
    assert all(sorted(t.get_text() for t in ax.get_yticklabels()) == sorted(set(df.entry)) for ax in named)
    plots.plt.close(fig)
    styles, handles = plots.entry_styles([f"m{i}/resnet{j}/imagenet" for i in range(10) for j in range(5)])
    assert len(handles) == 15 and len({(s["color"], s["marker"]) for s in styles.values()}) == 50
    styles, handles = plots.entry_styles(["finetune/resnet8/src", "scratch/resnet8/none", "finetune/resnet20/src"])
    assert [h.get_label() for h in handles] == list(styles)  # fewer entries than methods and networks: one line each
