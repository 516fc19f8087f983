"""CPU per CDS Hooks call in process, this tree against an earlier one, in the same run.

Issue 16's yardstick: the typical child's patient-view call with full prefetch (the
Synthea child and the prefetch ``bench/load.py`` builds), through the Flask test client,
at most half of the CPU per call the tree had before. Both trees run
``bench/cds_cost_worker.py`` in fresh processes, in turn (before, after, before, ...),
so a drift of the shared machine's speed falls on both; the ratio is of the medians::

    git worktree add /tmp/before e2ed787      # the tree issue 16 was filed against
    .venv/bin/python -m bench.cds_cost --before /tmp/before [--rounds 7] [--calls 300]
    .venv/bin/python -m bench.cds_cost --profile 25     # where this tree's time goes

The older tree runs with this tree's virtualenv (its dependencies are a subset).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().with_name("cds_cost_worker.py")


def measure(tree: Path, calls: int, profile: int = 0) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "IPEX_LOG_LEVEL": "ERROR"}
    argv = [sys.executable, str(WORKER), str(calls)]
    if profile:
        argv += ["--profile", str(profile)]
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: the worker failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cds_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="an earlier checkout to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300, help="measured calls per process")
    parser.add_argument("--profile", type=int, default=0, metavar="LINES",
                        help="print this tree's cProfile (cumulative) and stop")
    args = parser.parse_args(argv)
    if args.profile:
        print(measure(HERE, args.calls, args.profile)["profile"])
        return 0
    trees = {"after": HERE} | ({"before": args.before.resolve()} if args.before else {})
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for round_ in range(args.rounds):
        for name in sorted(trees):  # "after" then "before": alternating within each round
            runs[name].append(measure(trees[name], args.calls))
            print(f"round {round_ + 1}: {name} {runs[name][-1]['cpu_ms']:.2f} ms CPU a call",
                  file=sys.stderr)
    print("| tree | rounds x calls | CPU ms a call (median of rounds) | min | max "
          "| wall ms a call (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    medians = {}
    for name in sorted(trees, reverse=True):
        cpu = [r["cpu_ms"] for r in runs[name]]
        wall = [r["wall_ms"] for r in runs[name]]
        medians[name] = statistics.median(cpu)
        print(f"| {name} ({trees[name]}) | {args.rounds} x {args.calls} | {medians[name]:.2f} "
              f"| {min(cpu):.2f} | {max(cpu):.2f} | {statistics.median(wall):.2f} |")
    if "before" in medians:
        ratios = sorted(a["cpu_ms"] / b["cpu_ms"] for a, b in zip(runs["after"], runs["before"],
                                                                    strict=True))
        print(f"\nafter / before: {medians['after'] / medians['before']:.2f} "
              f"(round by round {ratios[0]:.2f} to {ratios[-1]:.2f}; target at most 0.50)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
