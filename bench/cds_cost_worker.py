"""One tree's CPU per CDS call, in process: run by path, with PYTHONPATH at the tree.

Started by ``bench/cds_cost.py`` (never imported): it must run against an older tree
too, so it uses only what every version has (``bench.load.typical_child`` and
``cds_request``, ``service.app.create_app``). Prints one JSON line.

    python bench/cds_cost_worker.py CALLS [--profile N]
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.load import cds_request, typical_child  # the tree's own, via PYTHONPATH
from service.app import create_app

WARM_UP = 20


def main() -> int:
    calls = int(sys.argv[1])
    profile_lines = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--profile" else 0
    bundle = json.loads(typical_child().read_text(encoding="utf-8"))
    body = json.dumps(cds_request(bundle)).encode()
    with tempfile.TemporaryDirectory() as state:
        app = create_app({"state_db": str(Path(state) / "s.sqlite3"), "cds_auth": "off"})
        client = app.test_client()

        def call() -> None:
            answer = client.post("/cds-services/ipex-foxp3-screen", data=body,
                                 content_type="application/json")
            assert answer.status_code == 200, answer.status_code

        for _ in range(WARM_UP):
            call()
        walls = []
        cpu_started = time.process_time()
        for _ in range(calls):
            started = time.perf_counter()
            call()
            walls.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu_started
        out: dict[str, object] = {"cpu_ms": 1000 * cpu / calls,
                                  "wall_ms": 1000 * statistics.median(walls),
                                  "bytes": len(body)}
        if profile_lines:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(calls):
                call()
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(
                profile_lines)
            out["profile"] = text.getvalue()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
