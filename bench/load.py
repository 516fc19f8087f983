"""The running service under load: latency, throughput and worker memory.

Run it with ``.venv/bin/python -m bench.load``. It starts ``ipex-screen serve`` (gunicorn,
2 workers by default) on a free loopback port as a separate process, with
``IPEX_CDS_AUTH=off`` and a temporary ``IPEX_STATE_DB``, waits for ``/readyz``, and
drives it from this process with a bounded number of requests (and a hard time cap)
at each concurrency level, one thread and one ``http.client`` connection per
simultaneous caller:

* ``POST /fhir/$ipex-screen`` with a typical Synthea child's whole-record bundle;
* ``POST /cds-services/ipex-foxp3-screen``, a ``patient-view`` call for the same child
  with full prefetch (the Patient, and its Conditions, Observations and
  ServiceRequests as searchset Bundles), when the service offers CDS Hooks;
* a few ``POST /fhir/$ipex-screen`` of the generated 20 MB bundle, for memory.

After each part it reads the peak resident memory (``VmHWM``) of every gunicorn
worker (the server's child processes). The server is always stopped on exit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .screening import SYNTHEA, _rewrite, large_case, synthea_cases

HOST = "127.0.0.1"
FHIR_PATH = "/fhir/$ipex-screen"
CDS_PATH = "/cds-services/ipex-foxp3-screen"
FHIR_BASE = "https://ehr.example.org/fhir"
_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Call:
    """One kind of request the load test repeats: where it goes and the exact body."""

    name: str
    path: str
    body: bytes
    content_type: str
    fresh_id: bytes | None = None  # replaced by a new UUID in every request (hookInstance)

    def request_body(self) -> bytes:
        if self.fresh_id is None:
            return self.body
        return self.body.replace(self.fresh_id, str(uuid.uuid4()).encode())


@dataclass(frozen=True, slots=True)
class LevelResult:
    """Latency (ms) and throughput of one call at one concurrency level."""

    call: str
    concurrency: int
    requests: int
    errors: int
    statuses: dict[int, int]
    wall_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    throughput_rps: float
    load_average: float  # the machine's 1-minute load average when the level ended
    server_cpu_ms: float  # CPU time of the gunicorn workers per request
    client_cpu_ms: float  # CPU time of this load generator per request


@dataclass(frozen=True, slots=True)
class WorkerMemory:
    """Memory of one gunicorn worker after a part of the test (MB)."""

    after: str
    pid: int
    peak_mb: float
    rss_mb: float


@dataclass(slots=True)
class Report:
    levels: list[LevelResult] = field(default_factory=list)
    memory: list[WorkerMemory] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def typical_child(directory: Path = SYNTHEA, *, as_of: dt.date | None = None) -> Path:
    """The Synthea child (under 18) whose bundle is the median size of the children's."""
    day = as_of or dt.date.today()
    children = []
    for path in sorted(directory.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        patient = next(e["resource"] for e in bundle["entry"]
                       if e["resource"]["resourceType"] == "Patient")
        born = dt.date.fromisoformat(patient["birthDate"])
        if (day - born).days < 18 * 365.25:
            children.append((path.stat().st_size, path.name, path))
    if not children:
        raise SystemExit(f"no child's bundle under {directory}")
    children.sort()
    return children[len(children) // 2][2]


def _searchset(resources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"{FHIR_BASE}/{r['resourceType']}/{r['id']}", "resource": r,
             "search": {"mode": "match"}}
            for r in resources
        ],
    }


def cds_request(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """A patient-view call with full prefetch, as an EHR's FHIR server would return it.

    References to the patient are rewritten from the bundle's ``urn:uuid:`` form to
    ``Patient/{id}``, the form a FHIR server's search results carry.
    """
    resources = [e["resource"] for e in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    pid = patient["id"]
    local = {f"urn:uuid:{pid}": f"Patient/{pid}"}

    def of(kind: str) -> list[dict[str, Any]]:
        return [_rewrite(r, local) for r in resources if r["resourceType"] == kind]

    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{pid}")),
        "context": {"userId": "Practitioner/bench", "patientId": pid},
        "prefetch": {
            "patient": patient,
            "conditions": _searchset(of("Condition")),
            "observations": _searchset(of("Observation")),
            "orders": _searchset(of("ServiceRequest")),
        },
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


_OTHER_HTTP = """
import sys
from service.observability.multiproc import prepare_multiproc_dir
prepare_multiproc_dir()
from service.server import serve
host, port, workers, http = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sys.exit(serve(host=host, port=port, workers=workers, http=http))
"""


class Server:
    """``ipex-screen serve`` in its own process group; :meth:`stop` always ends it.

    ``http="sync"`` runs the app under gunicorn's sync worker instead (what ``serve``
    used before issue 17), and ``tree`` an earlier checkout's ``serve``, for comparisons
    measured in the same run.
    """

    def __init__(self, *, workers: int, state_dir: str, http: str = "buffered",
                 env: Mapping[str, str] | None = None, tree: Path | None = None) -> None:
        self.port = _free_port()
        self.expected_workers = workers
        script = Path(sys.executable).with_name("ipex-screen")
        if tree is not None:  # another checkout's own ``serve``, with this virtualenv
            command = [sys.executable, "-m", "service.cli", "serve", "--host", HOST,
                       "--port", str(self.port), "--workers", str(workers)]
            env = {**(env or {}), "PYTHONPATH": str(tree)}
        elif http != "buffered":  # gunicorn's own worker class, for comparison only
            command = [sys.executable, "-c", _OTHER_HTTP, HOST, str(self.port), str(workers),
                       http]
        else:
            command = [*([str(script)] if script.exists()
                         else [sys.executable, "-m", "service.cli"]),
                       "serve", "--host", HOST, "--port", str(self.port),
                       "--workers", str(workers)]
        self.log = Path(state_dir) / "server.log"
        self._log_file = self.log.open("wb")
        environ = dict(os.environ, IPEX_CDS_AUTH="off", IPEX_LOG_LEVEL="WARNING",
                       IPEX_STATE_DB=str(Path(state_dir) / "state.sqlite3"))
        environ.update(env or {})
        self.process = subprocess.Popen(
            command, env=environ, cwd=state_dir, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=self._log_file,
        )

    def wait_ready(self, *, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            try:
                status, _ = request(self.port, "GET", "/readyz", timeout_s=2.0)
                if status == 200 and len(self.workers()) >= self.expected_workers:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready within {timeout_s:.0f} s: "
                           f"{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def workers(self) -> list[int]:
        pid = self.process.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
                return [int(p) for p in handle.read().split()]
        except OSError:
            return []

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # gunicorn stops its workers
            try:
                self.process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log_file.close()


def request(port: int, method: str, path: str, body: bytes | None = None,
            content_type: str | None = None, *, timeout_s: float = 60.0
            ) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _status_mb(pid: int) -> tuple[float, float]:
    peak = rss = 0.0
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return peak, rss


def worker_memory(server: Server, after: str) -> list[WorkerMemory]:
    found = []
    for pid in server.workers():
        try:
            peak, rss = _status_mb(pid)
        except OSError:
            continue  # a worker that just exited
        found.append(WorkerMemory(after, pid, peak, rss))
    return found


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time used so far by these processes."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def run_level(port: int, call: Call, *, concurrency: int, requests: int, time_cap_s: float,
              server_pids: Sequence[int] = ()) -> LevelResult:
    """Send ``requests`` calls from ``concurrency`` threads (stopping at the time cap)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    issued = 0
    deadline = time.monotonic() + time_cap_s

    def take() -> bool:
        nonlocal issued
        with lock:
            if issued >= requests or time.monotonic() >= deadline:
                return False
            issued += 1
            return True

    def caller() -> None:
        headers = {"Content-Type": call.content_type}
        connection = http.client.HTTPConnection(HOST, port, timeout=120)
        try:
            while take():
                start = time.perf_counter()
                try:
                    connection.request("POST", call.path, body=call.request_body(),
                                       headers=headers)
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                    if response.will_close:
                        connection.close()  # gunicorn sync workers close after each response
                except (OSError, http.client.HTTPException):
                    connection.close()
                    status = 0
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            connection.close()

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(concurrency)]
    server_cpu, client_cpu = cpu_seconds(server_pids), _own_cpu_seconds()
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    server_cpu = cpu_seconds(server_pids) - server_cpu
    client_cpu = _own_cpu_seconds() - client_cpu
    ordered = sorted(latencies)
    errors = sum(n for status, n in statuses.items() if status != 200)
    return LevelResult(
        call=call.name, concurrency=concurrency, requests=len(ordered), errors=errors,
        statuses=dict(sorted(statuses.items())), wall_s=wall,
        p50_ms=statistics.median(ordered) * 1000, p95_ms=_percentile(ordered, 95) * 1000,
        p99_ms=_percentile(ordered, 99) * 1000, max_ms=ordered[-1] * 1000,
        throughput_rps=len(ordered) / wall, load_average=os.getloadavg()[0],
        server_cpu_ms=server_cpu * 1000 / len(ordered),
        client_cpu_ms=client_cpu * 1000 / len(ordered),
    )


def _check(port: int, call: Call) -> str | None:
    """Send one call and say why it cannot be load-tested, or None when it answers 200."""
    status, body = request(port, "POST", call.path, call.request_body(), call.content_type)
    if status == 404:
        return f"{call.name}: {call.path} answered 404 (not offered by this build)"
    if status != 200:
        return f"{call.name}: {call.path} answered {status}: {body[:300]!r}"
    return None


def levels_table(levels: Sequence[LevelResult]) -> str:
    lines = ["| call | concurrency | requests | errors | p50 ms | p95 ms | p99 ms | max ms "
             "| throughput req/s | CPU ms/req server | CPU ms/req client | load avg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in levels:
        lines.append(f"| {r.call} | {r.concurrency} | {r.requests} | {r.errors} "
                     f"| {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.p99_ms:.1f} | {r.max_ms:.1f} "
                     f"| {r.throughput_rps:.1f} | {r.server_cpu_ms:.1f} | {r.client_cpu_ms:.1f} "
                     f"| {r.load_average:.1f} |")
    return "\n".join(lines)


def memory_table(memory: Sequence[WorkerMemory]) -> str:
    lines = ["| after | worker pid | peak RSS (VmHWM) MB | RSS now MB |", "|---|---:|---:|---:|"]
    for m in memory:
        lines.append(f"| {m.after} | {m.pid} | {m.peak_mb:.0f} | {m.rss_mb:.0f} |")
    return "\n".join(lines)


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--http", choices=("buffered", "sync"), default="buffered",
                        help="serve with the service's worker (default) or gunicorn's sync "
                             "worker, its model before issue 17, to compare")
    parser.add_argument("--tree", type=Path, default=None,
                        help="serve an earlier checkout (its own `serve`) instead, to compare")
    parser.add_argument("--levels", default="1,8,32", help="concurrency levels, comma-separated")
    parser.add_argument("--requests", type=int, default=400, help="requests per level")
    parser.add_argument("--time-cap", type=float, default=90.0, help="seconds per level, at most")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="the child's bundle (default: the median-size Synthea child)")
    parser.add_argument("--large-requests", type=int, default=8,
                        help="POSTs of the generated 20 MB bundle (0 to skip)")
    parser.add_argument("--only", choices=("fhir", "cds"), default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    levels = [int(n) for n in args.levels.split(",") if n.strip()]
    child = args.bundle or typical_child()
    data = child.read_bytes()
    bundle = orjson.loads(data)
    hook = cds_request(bundle)
    calls = [
        Call("FHIR $ipex-screen", FHIR_PATH, data, "application/fhir+json"),
        Call("CDS patient-view", CDS_PATH, orjson.dumps(hook), "application/json",
             fresh_id=hook["hookInstance"].encode()),
    ]
    if args.only:
        calls = [c for c in calls if c.path == (FHIR_PATH if args.only == "fhir" else CDS_PATH)]
    print(f"child bundle: {child.name} ({len(data) / 1024:.0f} KB, {len(bundle['entry'])} "
          f"entries); CDS request {len(calls[-1].body) / 1024:.0f} KB", file=sys.stderr)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="ipex-bench-") as state_dir:
        server = Server(workers=args.workers, state_dir=state_dir, http=args.http,
                        tree=args.tree.resolve() if args.tree else None)
        try:
            server.wait_ready()
            report.memory += worker_memory(server, "start")
            for call in calls:
                problem = _check(server.port, call)
                if problem:
                    report.skipped.append(problem)
                    print(f"  skipped {problem}", file=sys.stderr)
                    continue
                for _ in range(10):  # warm both workers' caches; not measured
                    request(server.port, "POST", call.path, call.request_body(),
                            call.content_type)
                for concurrency in levels:
                    result = run_level(server.port, call, concurrency=concurrency,
                                       requests=args.requests, time_cap_s=args.time_cap,
                                       server_pids=server.workers())
                    report.levels.append(result)
                    print(f"  {call.name} x{concurrency}: p99 {result.p99_ms:.1f} ms",
                          file=sys.stderr, flush=True)
                report.memory += worker_memory(server, call.name)
            if args.large_requests > 0 and args.only != "cds":
                big = large_case(synthea_cases())
                large = Call(f"FHIR $ipex-screen, {big.name}", FHIR_PATH, big.data,
                             "application/fhir+json")
                report.levels.append(run_level(
                    server.port, large, concurrency=args.workers,
                    requests=args.large_requests, time_cap_s=args.time_cap * 2,
                    server_pids=server.workers()))
                report.memory += worker_memory(server, large.name)
        finally:
            server.stop()
    print(levels_table(report.levels))
    print()
    print(memory_table(report.memory))
    for note in report.skipped:
        print(f"\nskipped: {note}")
    cds = [r for r in report.levels if r.call.startswith("CDS") and r.concurrency == 8]
    if cds:
        print(f"\nCDS patient-view p99 at concurrency 8: {cds[0].p99_ms:.1f} ms "
              f"(issue 16's target < 25 ms, quiet machine: "
              f"{'met' if cds[0].p99_ms < 25 else 'MISSED'})")
    peak = max((m.peak_mb for m in report.memory), default=0.0)
    print(f"largest worker peak RSS: {peak:.0f} MB (target < 300 MB: "
          f"{'met' if peak < 300 else 'MISSED'})")
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    failed = any(r.errors for r in report.levels)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
