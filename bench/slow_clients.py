"""Slow and lying clients against the running service: are normal calls still answered?

Run it with ``.venv/bin/python -m bench.slow_clients``. It starts ``ipex-screen serve``
(2 workers) on a free loopback port, then, for ``--duration`` seconds each:

1. **baseline**: normal calls only, ``POST /fhir/$ipex-screen`` with the typical Synthea
   child's record and ``POST /cds-services/ipex-foxp3-screen`` with full prefetch, from
   ``--concurrency`` threads per call kind;
2. **under attack**: the same calls while ``--slowloris`` connections send a request's
   headers a byte at a time (one byte every ``--trickle-s`` seconds on each) and
   ``--lying`` connections POST a ``Content-Length`` of 1,000,000 and send 100 bytes of
   it. Each attacking connection is opened again as soon as the server answers or
   closes it, so the pressure stays the same for the whole part.

It prints the normal calls' latency in both parts (p99 ratio against the baseline
measured in the same run) and how the attackers were answered (status, JSON or not,
seconds from opening to the answer). Loopback only; every loop is bounded by the
duration and every socket by a timeout; the server is always stopped.
``--http sync`` runs the same against gunicorn's sync worker (the model before
issue 17), whose normal calls time out after ``--call-timeout``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .load import CDS_PATH, FHIR_PATH, HOST, Call, Server, _percentile, cds_request, typical_child

SLOWLORIS_HEAD = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nUser-Agent: slowloris\r\nX-Pad: "
LYING_HEAD = (b"POST /fhir/$ipex-screen HTTP/1.1\r\nHost: bench\r\n"
              b"Content-Type: application/fhir+json\r\nContent-Length: 1000000\r\n\r\n")
LYING_SENT = b'{"resourceType": "Bundle", "type": "collection", "entry": [' + b" " * 41


@dataclass(slots=True)
class Latencies:
    """Normal calls of one kind in one part."""

    call: str
    ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def row(self, part: str, baseline_p99: float | None) -> str:
        ordered = sorted(self.ms) or [float("nan")]
        p99 = _percentile(ordered, 99)
        ratio = f"{p99 / baseline_p99:.1f}x" if baseline_p99 else "-"
        errors = sum(n for status, n in self.statuses.items() if status != 200)
        return (f"| {part} | {self.call} | {len(self.ms)} | {errors} "
                f"| {statistics.median(ordered):.1f} | {_percentile(ordered, 95):.1f} "
                f"| {p99:.1f} | {ordered[-1]:.1f} | {ratio} |")

    @property
    def p99(self) -> float:
        return _percentile(sorted(self.ms), 99) if self.ms else float("inf")

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)


@dataclass(slots=True)
class AttackReport:
    """How the server answered the attacking connections of one part."""

    opened: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "408 json", "closed", ...
    seconds_to_answer: list[float] = field(default_factory=list)

    def line(self, kind: str) -> str:
        waits = sorted(self.seconds_to_answer)
        span = (f"{waits[0]:.1f} to {waits[-1]:.1f} s after opening (median "
                f"{statistics.median(waits):.1f} s)") if waits else "none answered"
        shown = ", ".join(f"{n} {what}" for what, n in sorted(self.answers.items()))
        return f"{kind}: {self.opened} connections opened; answers: {shown or 'none'}; {span}"


class Attackers:
    """Slowloris and lying-Content-Length connections, reopened whenever answered."""

    def __init__(self, port: int, *, slowloris: int, lying: int, trickle_s: float) -> None:
        self.port = port
        self.trickle_s = trickle_s
        self.wanted = {"slowloris": slowloris, "lying": lying}
        self.reports = {"slowloris": AttackReport(), "lying": AttackReport()}
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Attackers:
        for kind, count in self.wanted.items():
            for _ in range(count):
                self._open(kind)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def _open(self, kind: str) -> None:
        sock = socket.create_connection((HOST, self.port), timeout=5)
        sock.sendall(SLOWLORIS_HEAD if kind == "slowloris" else LYING_HEAD + LYING_SENT)
        sock.setblocking(False)
        self.reports[kind].opened += 1
        self._selector.register(sock, selectors.EVENT_READ,
                                {"kind": kind, "opened": time.monotonic(), "got": b""})

    def _run(self) -> None:
        next_trickle = time.monotonic() + self.trickle_s
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                self._readable(key)
            if time.monotonic() >= next_trickle:
                next_trickle += self.trickle_s
                for key in list(self._selector.get_map().values()):
                    if key.data["kind"] == "slowloris":
                        try:
                            key.fileobj.send(b"a")  # type: ignore[union-attr]
                        except OSError:
                            self._done(key, "reset while sending")

    def _readable(self, key: selectors.SelectorKey) -> None:
        sock: socket.socket = key.fileobj  # type: ignore[assignment]
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
            if not key.data["got"]:
                self._done(key, "reset")
                return
        if data:
            key.data["got"] += data
            return
        got: bytes = key.data["got"]
        if not got:
            self._done(key, "closed without an answer")
            return
        status = got.split(b" ", 2)[1].decode(errors="replace") if b" " in got else "?"
        body = got.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in got else b""
        try:
            orjson.loads(body)
            form = "json"
        except orjson.JSONDecodeError:
            form = "not json"
        self._done(key, f"{status} {form}")

    def _done(self, key: selectors.SelectorKey, what: str) -> None:
        kind = key.data["kind"]
        report = self.reports[kind]
        report.answers[what] += 1
        report.seconds_to_answer.append(time.monotonic() - key.data["opened"])
        self._selector.unregister(key.fileobj)
        key.fileobj.close()  # type: ignore[union-attr]
        if not self._stop.is_set():
            try:
                self._open(kind)
            except OSError:
                report.answers["could not reopen"] += 1


def normal_calls(port: int, calls: Sequence[Call], *, concurrency: int, duration_s: float,
                 call_timeout_s: float) -> list[Latencies]:
    """Each call kind from ``concurrency`` threads, back to back, for ``duration_s``."""
    results = [Latencies(call.name) for call in calls]
    lock = threading.Lock()
    ends = time.monotonic() + duration_s

    def caller(call: Call, result: Latencies) -> None:
        while time.monotonic() < ends:
            connection = http.client.HTTPConnection(HOST, port, timeout=call_timeout_s)
            started = time.perf_counter()
            try:
                connection.request("POST", call.path, body=call.request_body(),
                                   headers={"Content-Type": call.content_type})
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
            finally:
                connection.close()
            with lock:
                result.ms.append((time.perf_counter() - started) * 1000)
                result.statuses[status] += 1

    threads = [threading.Thread(target=caller, args=(call, result), daemon=True)
               for call, result in zip(calls, results, strict=True)
               for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration_s + call_timeout_s + 5)
    return results


@dataclass(slots=True)
class Outcome:
    baseline: list[Latencies]
    attacked: list[Latencies]
    attacks: dict[str, AttackReport]

    def worst_p99_ms(self) -> float:
        return max(r.p99 for r in self.attacked)

    def normal_errors(self) -> int:
        return sum(r.errors for r in self.attacked)


def the_calls() -> list[Call]:
    child = typical_child()
    data = child.read_bytes()
    hook = cds_request(orjson.loads(data))
    return [Call("FHIR $ipex-screen", FHIR_PATH, data, "application/fhir+json"),
            Call("CDS patient-view", CDS_PATH, orjson.dumps(hook), "application/json",
                 fresh_id=hook["hookInstance"].encode())]


def measure(port: int, calls: Sequence[Call], *, slowloris: int = 200, lying: int = 20,
            duration_s: float = 20.0, concurrency: int = 2, trickle_s: float = 1.0,
            call_timeout_s: float = 10.0, baseline: bool = True) -> Outcome:
    """Normal calls to a running server without, then with, the attackers."""
    normal_calls(port, calls, concurrency=1, duration_s=min(1.0, duration_s),
                 call_timeout_s=call_timeout_s)  # warm-up, not measured
    before = normal_calls(port, calls, concurrency=concurrency, duration_s=duration_s,
                          call_timeout_s=call_timeout_s) if baseline else []
    with Attackers(port, slowloris=slowloris, lying=lying, trickle_s=trickle_s) as attackers:
        time.sleep(min(1.0, duration_s / 4))  # let them all settle in
        during = normal_calls(port, calls, concurrency=concurrency, duration_s=duration_s,
                              call_timeout_s=call_timeout_s)
    return Outcome(before, during, attackers.reports)


def run(*, request_timeout_s: float = 10.0, workers: int = 2, http: str = "buffered",
        **options: Any) -> Outcome:
    """Start the server, :func:`measure` it, stop it."""
    with tempfile.TemporaryDirectory(prefix="ipex-slow-") as state_dir:
        server = Server(workers=workers, state_dir=state_dir, http=http,
                        env={"IPEX_REQUEST_TIMEOUT_S": f"{request_timeout_s:g}"})
        try:
            server.wait_ready()
            return measure(server.port, the_calls(), **options)
        finally:
            server.stop()


def report(outcome: Outcome) -> str:
    lines = ["| part | call | requests | errors | p50 ms | p95 ms | p99 ms | max ms "
             "| p99 / baseline |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    base = {r.call: r.p99 for r in outcome.baseline}
    lines += [r.row("baseline", None) for r in outcome.baseline]
    lines += [r.row("under attack", base.get(r.call)) for r in outcome.attacked]
    lines.append("")
    lines += [report.line(kind) for kind, report in outcome.attacks.items()]
    return "\n".join(lines)


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_clients", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slowloris", type=int, default=200)
    parser.add_argument("--lying", type=int, default=20)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per part")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="threads per normal call kind (FHIR and CDS)")
    parser.add_argument("--trickle-s", type=float, default=1.0)
    parser.add_argument("--request-timeout", type=float, default=10.0,
                        help="the server's IPEX_REQUEST_TIMEOUT_S")
    parser.add_argument("--call-timeout", type=float, default=10.0,
                        help="seconds a normal call may take before it counts as an error")
    parser.add_argument("--http", choices=("buffered", "sync"), default="buffered")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    outcome = run(slowloris=args.slowloris, lying=args.lying, duration_s=args.duration,
                  concurrency=args.concurrency, trickle_s=args.trickle_s,
                  request_timeout_s=args.request_timeout, call_timeout_s=args.call_timeout,
                  http=args.http)
    print(report(outcome))
    worst = outcome.worst_p99_ms()
    met = worst < 1000 and outcome.normal_errors() == 0
    print(f"\nnormal calls under attack ({args.http}): worst p99 {worst:.1f} ms, "
          f"{outcome.normal_errors()} errors (target p99 < 1000 ms, no errors: "
          f"{'met' if met else 'MISSED'})")
    if args.json:
        args.json.write_text(json.dumps({
            "baseline": [{"call": r.call, "ms": r.ms} for r in outcome.baseline],
            "attacked": [{"call": r.call, "ms": r.ms} for r in outcome.attacked],
            "attacks": {k: {"opened": v.opened, "answers": dict(v.answers)}
                        for k, v in outcome.attacks.items()}}, indent=1))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
