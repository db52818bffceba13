"""Command line: `harness run | status | train | pretrain | rank | leaderboard | list | fetch`. Parses, calls, prints."""

from __future__ import annotations

import argparse
import sys
import warnings
import dataclasses
from pathlib import Path
from typing import Callable, Sequence

from harness.core.config import (TrialConfig, common_fields, hyperparameters, knob_fields, knob_users, param_of,
                                 scalar_type)
from harness.core.errors import ConfigError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def add(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn

    return add


def eprint(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _allowed(f: dataclasses.Field) -> str:
    """`int = 0; must be >= 0`: a field's type, default and allowed values, from its metadata."""
    kind = scalar_type(f)
    allowed = param_of(f).describe()
    return f"{kind.__name__ if kind else f.type} = {f.default!r}" + (f"; {allowed}" if allowed else "")


def add_trial_flags(p: argparse.ArgumentParser, skip: Sequence[str] = (), knobs: bool = True) -> None:
    """One flag per common field and (with `knobs`) per knob of every method, generated from their metadata;
    the values are parsed and checked by TrialConfig.from_dict."""
    import harness.methods  # noqa: F401  (registers every method and its knobs)

    group = p.add_argument_group("hyperparameters of every run")
    for f in common_fields():
        if f.name not in skip and f.name != "evaluate_test":
            group.add_argument(_flag(f.name), dest=f.name, default=None, metavar=f.name.upper(),
                               help=f"{param_of(f).help} ({_allowed(f)})".replace("%", "%%"))
    if not knobs:
        return
    group = p.add_argument_group("method knobs (each for the methods named)")
    for name, f in knob_fields().items():
        group.add_argument(_flag(name), dest=name, default=None, metavar=name.upper(),
                           help=f"[{', '.join(knob_users(name))}] {param_of(f).help} "
                                f"({_allowed(f)})".replace("%", "%%"))


def add_data_flags(p: argparse.ArgumentParser, download: bool = True) -> None:
    """--data-root (and --download): where torchvision datasets live, and whether to fetch missing ones."""
    p.add_argument("--data-root", help="folder holding the datasets (default: $HARNESS_DATA, else "
                   "~/.cache/harness/data)")
    if download:
        p.add_argument("--download", action="store_true", help="download missing catalogue datasets first "
                       "(needs internet)")


def trial_values(args: argparse.Namespace) -> dict[str, object]:
    """The hyperparameter flags given on the command line, by name."""
    return {name: getattr(args, name) for name in hyperparameters() if getattr(args, name, None) is not None}


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from harness.data.catalog import prepare_data
    from harness.data.root import use_data_root
    from harness.train.artifacts import prepare
    from harness.train.loop import train_loop
    from harness.core.jsonio import dumps

    config = TrialConfig.from_dict({**trial_values(args), "evaluate_test": args.evaluate_test})
    use_data_root(args.data_root)
    prepare_data([config.dataset], download=args.download)
    prepare(config, log=eprint)
    summary = train_loop(config, log=eprint)
    summary.pop("history")
    print(dumps(summary, indent=2))
    if summary["status"] == "diverged":
        eprint(f"harness: the run diverged (non-finite loss) at lr={config.lr}")
        return 1
    return 0


@command("pretrain")
def cmd_pretrain(args: argparse.Namespace) -> int:
    from harness.data.catalog import prepare_data
    from harness.data.root import use_data_root
    from harness.core.jsonio import dumps
    from harness.train.artifacts import pretrain, source_config

    values = {"dataset": TrialConfig.dataset, "backbone": TrialConfig.backbone, "epochs": 15, "augment": "basic",
              **trial_values(args)}
    config = source_config(**values)
    use_data_root(args.data_root)
    prepare_data([config.dataset], download=args.download)
    path, reused = pretrain(config, out_dir=args.out_dir, log=eprint)
    eprint(f"{'reused' if reused else 'wrote'} {path}")
    print(dumps({"checkpoint": str(path), "weights": f"checkpoint:{path}", "reused": reused}))
    return 0


def methods_markdown() -> str:
    """The methods table of the README: each method, what it does and its knobs (type, default, allowed, help)."""
    from harness.methods import METHODS

    cell = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| method | what it does | knobs: what each does (type = default; allowed values) |", "|---|---|---|"]
    for name in METHODS:
        knobs = "<br>".join(f"`{f.name}`: {cell(param_of(f).help)} ({cell(_allowed(f))})"
                            for f in dataclasses.fields(METHODS.get(name).args))
        lines.append(f"| `{name}` | {cell(METHODS.describe(name))} | {knobs} |")
    return "\n".join(lines) + "\n"


@command("list")
def cmd_list(args: argparse.Namespace) -> int:
    from harness.models.backbones import BACKBONES
    from harness.data.registry import DATASETS, PATH_DATASETS, dataset_options
    from harness.methods import METHODS
    from harness.ranking import ESTIMATORS
    from harness.tasks import TASKS

    if args.format == "md":
        sys.stdout.write(methods_markdown())
        return 0
    print("datasets (spec: name[:classes][?option=value&...], e.g. digits:5-9, shapes?per_class=100):")
    for name in DATASETS:
        opts = [f"{k}={v}" for k, v in dataset_options(name).items()]
        shown = f"{name}:PATH" if name in PATH_DATASETS else name
        extra = f"  [{', '.join(opts)}]" if opts else ""
        print(f"  {shown:<22} {DATASETS.describe(name)}{extra}")
    print("backbones:")
    for name in BACKBONES:
        print(f"  {name:<22} {BACKBONES.get(name).description}")
    print("methods (and their knobs: type = default; allowed values):")
    for name in METHODS:
        print(f"  {name:<22} {METHODS.describe(name)}")
        for f in dataclasses.fields(METHODS.get(name).args):
            print(f"    {f.name:<20} {param_of(f).help} ({_allowed(f)})")
    print("tasks (named by each dataset):")
    for name in TASKS:
        print(f"  {name:<22} {TASKS.describe(name)}")
    print("transferability estimators (harness rank; suites with estimate: true):")
    for name in ESTIMATORS:
        print(f"  {name:<22} {ESTIMATORS.describe(name)}")
    return 0


@command("fetch")
def cmd_fetch(args: argparse.Namespace) -> int:
    from harness.models.backbones import BACKBONES, TORCHVISION
    from harness.models.detectors import DETECTORS, fetch_detector_weights
    from harness.models.weights import fetch_imagenet_weights
    from harness.data.catalog import CATALOG, fetch_dataset
    from harness.data.root import use_data_root
    from harness.data.registry import DATASETS, parse_spec

    root = use_data_root(args.data_root)
    for spec in args.names:
        name = parse_spec(spec)[0]
        if name in DETECTORS:
            print(*fetch_detector_weights(name), sep="\n")
        elif name in BACKBONES:
            print(fetch_imagenet_weights(name))
        elif name in CATALOG:
            fetch_dataset(name, root)
            print(f"{name}: {root}")
        elif callable(getattr(DATASETS.get(name) if name in DATASETS else None, "fetch", None)):
            DATASETS.get(name).fetch(root)  # a dataset with a download of its own (voc)
            print(f"{name}: {root}")
        elif name in DATASETS:
            print(f"{name}: built in or read from a folder; nothing to fetch")
        else:
            raise ConfigError(f"fetch: '{name}' is neither a dataset nor a backbone; datasets: {', '.join(CATALOG)}; "
                              f"backbones with ImageNet weights: {', '.join(TORCHVISION)}")
    return 0


def integer(text: str) -> int:
    """A flag's whole-number value; otherwise a one-line error (argparse prefixes the flag)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: must be an int") from None


def number(text: str) -> float:
    """A flag's numeric value; otherwise a one-line error (argparse prefixes the flag)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number") from None


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (`harness run: error: ...`, exit 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _csv(text: str) -> list[str]:
    return [t for t in (x.strip() for x in text.split(",")) if t]


@command("run")
def cmd_run(args: argparse.Namespace) -> int:
    from harness.study import runner
    from harness.data.catalog import data_status, prepare_data
    from harness.data.registry import spec_options
    from harness.data.root import use_data_root
    from harness.study.jobdir import leave_job_working_dir

    copy = leave_job_working_dir()
    if copy is not None and not Path(args.results_dir).is_absolute():
        eprint(f"harness: warning: --results-dir={args.results_dir} is relative inside a Ray Job: run folders go to "
               f"{copy / args.results_dir} on this node; give a folder on shared storage to keep them")
    use_data_root(args.data_root)
    if args.mlflow:  # a missing package is named before anything runs
        from harness.results.tracking import client

        client(args.mlflow)
    resolved = runner.resolve(args)
    suite = resolved[0]
    specs = [d.name for d in suite.datasets] + [s.dataset for s in suite.sources.values()]
    if args.dry_run:
        code = runner.run(args, resolved)
        for line in data_status(specs):
            print(line)
        return code
    for spec in specs:  # a bad option is named before a missing dataset is
        spec_options(spec)
    prepare_data(specs, download=args.download)  # a missing dataset stops the run before Ray starts
    return runner.run(args, resolved)


@command("leaderboard")
def cmd_leaderboard(args: argparse.Namespace) -> int:
    from harness.results import leaderboard as lb

    fmt = args.format or (lb.format_for(Path(args.out)) if args.out else "text")
    if fmt not in lb.FORMATS:
        raise ConfigError(f"--format={fmt}: choose from: {', '.join(lb.FORMATS)}")
    if fmt in lb.BINARY_FORMATS and not args.out:
        raise ConfigError(f"--format={fmt}: binary; give --out FILE")
    records = lb.load_records(args.run_dirs)
    df = lb.select(lb.frame(records), args.dataset, args.method, args.sort, args.ascending)
    if df.empty:
        raise ConfigError("no cells left after the --dataset/--method filters")
    if args.out:
        lb.write(df, fmt, Path(args.out), records)
        eprint(f"wrote {args.out} ({fmt}, {len(df)} cells from {len(records.runs)} run(s))")
    else:
        sys.stdout.write(lb.render(df, fmt, records).decode())
    if args.mlflow:
        from harness.results.tracking import export_run

        for run_dir in records.runs:
            added = export_run(args.mlflow, run_dir)
            eprint(f"mlflow: {run_dir} -> {args.mlflow} ({added['cell']} cells, {added['trial']} trials and "
                   f"{added['final']} finals added)")
    return 0


@command("status")
def cmd_status(args: argparse.Namespace) -> int:
    import time

    from harness.study.status import render, run_status

    while True:
        status = run_status(args.run_dir)
        text = render(status)
        if not args.watch:
            print(text)
            return 0
        print("\033[H\033[J" + text, flush=True)  # clear the terminal, then the status
        if status.ended is not None:
            return 0
        time.sleep(args.watch)


@command("rank")
def cmd_rank(args: argparse.Namespace) -> int:
    from harness.data.catalog import prepare_data
    from harness.data.root import use_data_root
    from harness.results import transferability as tr
    from harness.study.estimates import rank

    if args.out:
        tr.out_format(args.out)
    use_data_root(args.data_root)
    prepare_data([args.dataset], download=args.download)
    records = rank(args.dataset, args.weights, args.backbone, args.samples_per_class, args.split_seed,
                   args.estimators, log=eprint, precision=args.precision, workers=args.workers)
    table = tr.rank_table(records)
    print(f"{args.dataset}: {records[0].images} training images (the test split is not read); "
          f"{len(records)} candidates; features {sum(r.feature_seconds for r in records):.2f}s, estimators "
          f"{sum(sum(r.seconds.values()) for r in records):.2f}s in all ({records[0].precision} features)")
    print(tr.rank_text(table))
    for r in records:
        for name, why in r.refused.items():
            eprint(f"harness: {r.label}: {why}")
    if args.out:
        tr.write_table(table, Path(args.out))
        eprint(f"wrote {args.out} ({len(table)} rows)")
    return 0


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    from harness.study import SUITE_FLAGS

    p = sub.add_parser("run", help="benchmark a suite: Ray Tune search per cell, final seeded runs, leaderboard")
    p.add_argument("--suite", default="quick", help="suite name in search_spaces/suites/ or a YAML path "
                   "(default: quick)")
    group = p.add_argument_group("suite overrides", "each replaces the suite's value (not with --resume)")
    overrides = [
        group.add_argument("--datasets", type=_csv, help="comma-separated datasets, replacing the suite's"),
        group.add_argument("--methods", type=_csv, help="comma-separated methods, replacing the suite's"),
        group.add_argument("--backbones", type=_csv, help="comma-separated backbones, replacing the suite's"),
        group.add_argument("--weights", help="weights of every backbone (none, imagenet, checkpoint:PATH, "
                           "source:KEY)"),
        group.add_argument("--samples-per-class", type=integer, help="few-shot training subset for every dataset"),
        group.add_argument("--num-samples", type=integer, help="trials per cell (Ray Tune num_samples)"),
        group.add_argument("--algorithm", help="search algorithm: random, grid, optuna"),
        group.add_argument("--scheduler", help="trial scheduler: asha, fifo"),
        group.add_argument("--metric", help="validation metric to select on (default val_accuracy)"),
        group.add_argument("--max-concurrent-trials", type=integer, help="trials at once per cell (0: as many as fit)"),
        group.add_argument("--max-concurrent-cells", type=integer, help="cells searching at once (default 2); "
                           "cells with one-worker trials share one Tuner"),
        group.add_argument("--epochs", type=integer, help="fix the number of epochs in every search space"),
        group.add_argument("--final-seeds", type=integer, help="seeds of the final runs of each cell's best "
                           "configuration"),
        group.add_argument("--cpus-per-trial", type=number),
        group.add_argument("--gpus-per-trial", type=number, help="GPUs per worker; fractions below 1 allowed"),
        group.add_argument("--workers-per-trial", type=integer, help="Ray Train workers (DDP) per trial"),
    ]
    p.set_defaults(**{SUITE_FLAGS: tuple(a.dest for a in overrides)})
    p.add_argument("--address", help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    p.add_argument("--storage-path", help="where Tune keeps trial artefacts (local folder, NFS, s3://...)")
    p.add_argument("--results-dir", default="results", help="where run folders go (default: results)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run in RUN_DIR")
    p.add_argument("--dry-run", action="store_true", help="print the cells, trial counts and resources; train nothing")
    p.add_argument("--mlflow", metavar="URI", help="also log every trial, final run and cell to MLflow at this "
                   "tracking URI (file:PATH, http://HOST:PORT, ...; needs pip install -e '.[mlflow]')")
    add_data_flags(p)
    p.add_argument("--verbose", action="store_true", help="show Ray's own logs and trial tables")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; given the `command` about to run, the trial flags of `train` and `pretrain` (made
    from every method plugin, which imports torch) are added only where that command is one of them."""
    parser = Parser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train and evaluate one configuration; prints epochs and a JSON summary")
    if command in (None, "train"):
        add_trial_flags(p)
    p.add_argument("--evaluate-test", action=argparse.BooleanOptionalAction, default=True,
                   help="score the final model on the test split (default: on)")
    add_data_flags(p)

    p = sub.add_parser("pretrain", help="train a source network from scratch and cache its checkpoint")
    if command in (None, "pretrain"):
        add_trial_flags(p, skip=("method", "weights", "evaluate_test"), knobs=False)
    p.add_argument("--out-dir", default="results/sources", help="where checkpoints go (default: results/sources)")
    add_data_flags(p)

    p = sub.add_parser("list", help="list datasets, backbones, methods (with their knobs) and tasks")
    p.add_argument("--format", choices=("text", "md"), default="text",
                   help="text (default), or md: the methods table of the README in Markdown")

    p = sub.add_parser("fetch", help="download datasets into the data root and ImageNet weights of backbones "
                       "into the torch cache (needs internet)")
    p.add_argument("names", nargs="+", metavar="DATASET|BACKBONE")
    add_data_flags(p, download=False)

    add_run_parser(sub)

    p = sub.add_parser("rank", help="score candidate source networks for a target before training any (LogME, LEEP, "
                       "NCE, H-score, GBC on the training split)")
    p.add_argument("--dataset", required=True, help="the target dataset spec (its training split is scored)")
    p.add_argument("--weights", nargs="+", required=True, metavar="[BACKBONE=]WEIGHTS",
                   help="candidates: none, imagenet, checkpoint:PATH, each optionally naming its backbone "
                   "(resnet50=imagenet); a checkpoint alone is read with the network it holds")
    p.add_argument("--backbone", help="backbone of the entries that name none")
    p.add_argument("--samples-per-class", type=integer, default=0, help="score a few-shot training subset (0: all)")
    p.add_argument("--split-seed", type=integer, default=0, help="seed of the train/validation/test split")
    p.add_argument("--estimators", type=_csv, help="comma-separated estimators (default: all)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="the feature pass: auto (bfloat16 where the hardware runs it natively), bf16 or fp32")
    p.add_argument("--workers", type=integer, default=0, help="candidates whose features are extracted at once on "
                   "the CPU, one thread each (default 0: one per CPU thread; on a GPU one at a time)")
    p.add_argument("--out", help="write the ranking as .csv or .json")
    add_data_flags(p)

    p = sub.add_parser("status", help="where a run stands, from its folder alone (no Ray): cells finished, searching "
                       "or waiting, trials done, best so far, time spent and left")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--watch", type=number, nargs="?", const=10.0, default=None, metavar="SECONDS",
                   help="refresh every SECONDS (default 10) until the run ends")

    p = sub.add_parser("leaderboard", help="merge run folders and print or write the leaderboard")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--format", help="text (default on the terminal), md, csv, json, parquet, html; "
                   "with --out, taken from the file name when not given")
    p.add_argument("--out", help="write to this file (atomically) instead of printing")
    p.add_argument("--sort", metavar="COLUMN", help="sort by a column (best first where higher is better)")
    p.add_argument("--ascending", action=argparse.BooleanOptionalAction, default=None,
                   help="force the sort direction")
    p.add_argument("--dataset", type=_csv, help="only these datasets (comma-separated)")
    p.add_argument("--method", type=_csv, help="only these methods (comma-separated)")
    p.add_argument("--mlflow", metavar="URI", help="log each run folder (run, cells with their leaderboard rows, "
                   "trials, finals, leaderboard files) to MLflow at this tracking URI")
    return parser


def _warn(message: Warning | str, category: type, filename: str, lineno: int, file: object = None,
          line: str | None = None) -> None:
    eprint(f"harness: warning: {message}")


def main(argv: Sequence[str] | None = None) -> int:
    warnings.showwarning = _warn
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        eprint(f"harness: error: {e}")
        return 2
    except KeyboardInterrupt:
        eprint("harness: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
