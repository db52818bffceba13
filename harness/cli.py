"""Command line: `harness run | train | pretrain | leaderboard | list | fetch`. Parses, calls, prints."""

from __future__ import annotations

import argparse
import inspect
import sys
from dataclasses import fields
from typing import Callable, Sequence

from harness.errors import ConfigError
from harness.spec import TrialConfig

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def add(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn

    return add


def eprint(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def add_trial_flags(p: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per TrialConfig field (`--freeze-depth` for freeze_depth), parsed and checked by TrialConfig."""
    for f in fields(TrialConfig):
        if f.name in skip or f.name == "evaluate_test":
            continue
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, metavar=f.name.upper(),
                       help=f"(default: {f.default})")


def trial_values(args: argparse.Namespace) -> dict[str, object]:
    return {f.name: getattr(args, f.name) for f in fields(TrialConfig) if getattr(args, f.name, None) is not None}


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from harness.engine import train_loop
    from harness.jsonio import dumps

    config = TrialConfig.from_dict({**trial_values(args), "evaluate_test": args.evaluate_test})
    summary = train_loop(config, log=eprint)
    summary.pop("history")
    print(dumps(summary, indent=2))
    if summary["status"] == "diverged":
        eprint(f"harness: the run diverged (non-finite loss) at lr={config.lr}")
        return 1
    return 0


@command("pretrain")
def cmd_pretrain(args: argparse.Namespace) -> int:
    from harness.jsonio import dumps
    from harness.sources import pretrain, source_config

    values = {"epochs": 15, "augment": "basic", **trial_values(args)}
    config = source_config(**values)
    path, reused = pretrain(config, out_dir=args.out_dir, log=eprint)
    eprint(f"{'reused' if reused else 'wrote'} {path}")
    print(dumps({"checkpoint": str(path), "weights": f"checkpoint:{path}", "reused": reused}))
    return 0


@command("list")
def cmd_list(args: argparse.Namespace) -> int:
    from harness.backbones import BACKBONES
    from harness.datasets import DATASETS
    from harness.methods import METHODS

    print("datasets (spec: name[:classes][?option=value&...], e.g. digits:5-9, shapes?per_class=100):")
    for name in DATASETS:
        params = inspect.signature(DATASETS.get(name)).parameters
        opts = [f"{k}={v.default}" for k, v in params.items() if k not in ("split_seed", "path")]
        shown = f"{name}:PATH" if "path" in params else name
        extra = f"  [{', '.join(opts)}]" if opts else ""
        print(f"  {shown:<22} {DATASETS.describe(name)}{extra}")
    print("backbones:")
    for name in BACKBONES:
        print(f"  {name:<22} {BACKBONES.get(name).description}")
    print("methods:")
    for name in METHODS:
        uses = METHODS.get(name).uses
        print(f"  {name:<22} {METHODS.describe(name)}" + (f"  [searches: {', '.join(uses)}]" if uses else ""))
    return 0


@command("fetch")
def cmd_fetch(args: argparse.Namespace) -> int:
    from harness.backbones import BACKBONES, fetch_imagenet_weights

    for name in args.names:
        if name in BACKBONES:
            print(fetch_imagenet_weights(name))
        else:
            raise ConfigError(f"fetch: '{name}' is not a backbone; choose from: {', '.join(BACKBONES)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train and evaluate one configuration; prints epochs and a JSON summary")
    add_trial_flags(p)
    p.add_argument("--evaluate-test", action=argparse.BooleanOptionalAction, default=True,
                   help="score the final model on the test split (default: on)")

    p = sub.add_parser("pretrain", help="train a source network from scratch and cache its checkpoint")
    add_trial_flags(p, skip=("method", "weights", "freeze_depth", "evaluate_test"))
    p.add_argument("--out-dir", default="results/sources", help="where checkpoints go (default: results/sources)")

    sub.add_parser("list", help="list datasets, backbones and methods")

    p = sub.add_parser("fetch", help="download ImageNet weights of backbones into the torch cache (needs internet)")
    p.add_argument("names", nargs="+")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
