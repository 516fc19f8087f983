"""What the production server adds to one large FHIR call, against ``orjson.loads``.

Run it with ``.venv/bin/python -m bench.serve_cost``. It starts ``ipex-screen serve``
(2 workers) with the service's worker and, in the same run, with gunicorn's sync worker
(the model before issue 17), posts the largest Synthea record (3.9 MB) to
``/fhir/$ipex-screen`` ``--repeats`` times one after another on each, and prints the
median round trip next to the median ``orjson.loads`` of the same bytes in this process
(the issue-16 yardstick: the whole call should cost at most 2x the parse). Servers are
measured in turn (buffered, sync, buffered, ...) so a drift of the machine's speed
falls on both. ``--before DIR`` adds an earlier checkout's own ``serve`` to the turn
(issue 16's "before": ``git worktree add /tmp/before e2ed787``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from .load import FHIR_PATH, Server, request
from .screening import SYNTHEA

MODELS = ("buffered", "sync")


def largest_record() -> Path:
    return max(SYNTHEA.glob("*.json"), key=lambda p: p.stat().st_size)


def loads_ms(data: bytes, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        orjson.loads(data)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def post_ms(port: int, data: bytes) -> float:
    started = time.perf_counter()
    status, _ = request(port, "POST", FHIR_PATH, data, "application/fhir+json")
    elapsed = (time.perf_counter() - started) * 1000
    if status != 200:
        raise RuntimeError(f"the server answered {status}")
    return elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="posts per server")
    parser.add_argument("--before", type=Path, default=None,
                        help="also serve an earlier checkout (its own `serve`), in turn")
    parser.add_argument("--record", type=Path, default=None,
                        help="the FHIR Bundle to post (default: the largest Synthea record)")
    args = parser.parse_args(argv)
    record = args.record or largest_record()
    data = record.read_bytes()
    models = [*MODELS, *(["before"] if args.before else [])]
    timings: dict[str, list[float]] = {model: [] for model in models}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ipex-cost-") as state_dir:
        servers = {}
        try:
            for model in models:
                directory = Path(state_dir) / model
                directory.mkdir()
                servers[model] = Server(
                    workers=2, state_dir=str(directory), http="buffered"
                    if model == "before" else model,
                    tree=args.before.resolve() if model == "before" else None)
            for server in servers.values():
                server.wait_ready()
                for _ in range(3):  # warm both workers
                    post_ms(server.port, data)
            for _ in range(args.repeats):
                for model, server in servers.items():
                    timings[model].append(post_ms(server.port, data))
                loads.append(loads_ms(data, 3))
        finally:
            for server in servers.values():
                server.stop()
    yardstick = statistics.median(loads)
    print(f"record: {record.name} ({len(data) / 1e6:.2f} MB); orjson.loads median "
          f"{yardstick:.1f} ms")
    print("| server | posts | median ms | min ms | max ms | median / orjson.loads |")
    print("|---|---:|---:|---:|---:|---:|")
    for model, values in timings.items():
        median = statistics.median(values)
        print(f"| {model} | {len(values)} | {median:.1f} | {min(values):.1f} "
              f"| {max(values):.1f} | {median / yardstick:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
