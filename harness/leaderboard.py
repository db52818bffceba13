"""The public pandas entry point: `harness.leaderboard.load(run_dirs, level="cell"|"trial"|"final")`.

`cell` is the leaderboard (one row per cell, the columns of leaderboard.csv); `trial` one row per search trial and
`final` one row per seeded final run, with the fields of records.jsonl (nested objects as `config.lr`,
`test.accuracy`). The implementation lives in harness/results/leaderboard.py."""

from harness.results.leaderboard import (
    LEVELS,
    Records,
    frame,
    load,
    load_records,
    render,
    select,
    summary_matrix,
    write,
)

__all__ = ["LEVELS", "Records", "frame", "load", "load_records", "render", "select", "summary_matrix", "write"]
