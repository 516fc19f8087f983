"""Answer times while the state store fails, through ``ipex-screen serve`` as a hospital runs it.

Run it with ``.venv/bin/python -m bench.state_outage`` (``--help`` for options). It starts
a throwaway PostgreSQL (:mod:`bench.postgres_cluster`) behind a TCP proxy the run can
break (:mod:`bench.tcp_proxy`), and ``ipex-screen serve --workers 2`` with
``IPEX_CDS_AUTH=jwt`` (a pinned ES384 key), ``IPEX_STATE_URL`` through the proxy and
``IPEX_STATE_TIMEOUT_S``; then a second server on a SQLite file. For each condition it
sends feedback calls with fresh tokens (each needs the replay check) one after another
for a few seconds and prints their statuses and answer times, with the ratio of each
median to the healthy median measured in the same run. Everything it starts is stopped.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import psycopg
from cryptography.hazmat.primitives.asymmetric import ec

from .postgres_cluster import Cluster, free_port
from .tcp_proxy import proxy_to

PUBLIC = "https://ipex.example.org"
FEEDBACK = "/cds-services/ipex-foxp3-screen/feedback"
ISS = "https://ehr.example.org"
KID = "bench-es384"


@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    statuses: Counter[int]
    times_ms: list[float]

    def row(self, healthy_ms: float) -> str:
        times = sorted(self.times_ms)
        p50 = statistics.median(times)
        p90 = times[int(0.9 * (len(times) - 1))]
        shown = ", ".join(f"{s} x{n}" for s, n in sorted(self.statuses.items()))
        return (f"| {self.name} | {len(times)} | {shown} | {p50:.1f} | {p90:.1f} | "
                f"{times[-1]:.1f} | {p50 / healthy_ms:.1f}x |")


class Signer:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        public = json.loads(jwt.get_algorithm_by_name("ES384").to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": KID, "use": "sig", "alg": "ES384"}]}

    def bearer(self) -> dict[str, str]:
        now = int(time.time())
        token = jwt.encode({"iss": ISS, "aud": PUBLIC + FEEDBACK, "iat": now, "exp": now + 300,
                            "jti": str(uuid.uuid4())}, self.key, algorithm="ES384",
                           headers={"kid": KID, "typ": "JWT"})
        return {"Authorization": f"Bearer {token}"}


def call(port: int, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, float]:
    """Status and answer time in ms of one request on a fresh connection."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        sent = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        response.read()
        return response.status, (time.perf_counter() - started) * 1000
    finally:
        connection.close()


@contextmanager
def serve(directory: Path, env: dict[str, str]) -> Iterator[int]:
    """``ipex-screen serve --workers 2`` on a free port until the block ends."""
    script = Path(sys.executable).with_name("ipex-screen")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IPEX_")}
    with (directory / f"serve-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, "serve", "--port", str(port), "--workers", "2"],
            env={**clean, "IPEX_LOG_LEVEL": "WARNING", **env}, cwd=directory,
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with {process.returncode}")
                try:
                    if call(port, "GET", "/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server was not ready within 90 s")
                time.sleep(0.1)
            yield port
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def feedback_calls(port: int, signer: Signer, name: str, *, seconds: float,
                   at_least: int = 5) -> Condition:
    statuses: Counter[int] = Counter()
    times: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or len(times) < at_least:
        body = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                              "outcomeTimestamp": "2026-03-01T10:00:00Z"}]}
        status, took = call(port, "POST", FEEDBACK, body, signer.bearer())
        statuses[status] += 1
        times.append(took)
    return Condition(name, statuses, times)


def readyz_calls(port: int, name: str, *, count: int) -> Condition:
    statuses: Counter[int] = Counter()
    times: list[float] = []
    for _ in range(count):
        status, took = call(port, "GET", "/readyz")
        statuses[status] += 1
        times.append(took)
        time.sleep(0.3)
    return Condition(name, statuses, times)


def until_ready(port: int) -> float:
    started = time.monotonic()
    while call(port, "GET", "/readyz")[0] != 200:
        time.sleep(0.05)
    return time.monotonic() - started


def measure(*, timeout_s: float, seconds: float) -> tuple[list[Condition], list[str]]:
    signer = Signer()
    results: list[Condition] = []
    notes: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="ipex-bench-state-"))
    cluster = Cluster()
    try:
        cluster.start()
        issuers = directory / "issuers.json"
        issuers.write_text(json.dumps({"issuers": [{"iss": ISS, "jwks": signer.jwks}]}))
        common = {"IPEX_CDS_ISSUERS_FILE": str(issuers), "IPEX_PUBLIC_BASE_URL": PUBLIC,
                  "IPEX_STATE_TIMEOUT_S": f"{timeout_s:g}"}
        with cluster.database() as url, proxy_to(cluster.port) as proxy:
            proxied = url.replace(f":{cluster.port}/", f":{proxy.port}/")
            with serve(directory, {**common, "IPEX_STATE_URL": proxied}) as port:
                run: Callable[[str], Condition] = lambda name: feedback_calls(  # noqa: E731
                    port, signer, name, seconds=seconds)
                results.append(run("PostgreSQL healthy"))
                proxy.down()
                results.append(run("PostgreSQL down (connection refused)"))
                results.append(readyz_calls(port, "/readyz, PostgreSQL down", count=5))
                proxy.up()
                notes.append(f"PostgreSQL back: /readyz 200 after {until_ready(port):.2f} s")
                proxy.stall()
                results.append(run("PostgreSQL hung (no answer at all)"))
                proxy.up()
                notes.append(f"PostgreSQL unhung: /readyz 200 after {until_ready(port):.2f} s")
                with psycopg.connect(url) as holder:
                    holder.execute("LOCK TABLE jwt_replay IN ACCESS EXCLUSIVE MODE")
                    results.append(run("PostgreSQL table locked by another session"))
                    holder.rollback()
                notes.append(f"lock released: /readyz 200 after {until_ready(port):.2f} s")
        volume = directory / "volume"
        volume.mkdir()
        state = {"IPEX_STATE_DB": str(volume / "state.sqlite3")}
        with serve(directory, {**common, **state}) as port:
            results.append(feedback_calls(port, signer, "SQLite healthy", seconds=seconds))
            volume.rename(directory / "volume-aside")
            volume.write_text("not a directory")
            results.append(feedback_calls(port, signer, "SQLite volume gone", seconds=seconds))
            volume.unlink()
            (directory / "volume-aside").rename(volume)
            notes.append(f"SQLite volume back: /readyz 200 after {until_ready(port):.2f} s")
            holder = __import__("sqlite3").connect(volume / "state.sqlite3",
                                                   isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            results.append(feedback_calls(port, signer, "SQLite locked by another writer",
                                          seconds=seconds))
            holder.execute("ROLLBACK")
            holder.close()
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return results, notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state_outage",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--timeout-s", type=float, default=2.0,
                        help="IPEX_STATE_TIMEOUT_S of the servers (default 2)")
    parser.add_argument("--seconds", type=float, default=12.0,
                        help="how long each condition is measured (default 12: a few "
                             "cool-down periods of the failing ones)")
    args = parser.parse_args(argv)
    results, notes = measure(timeout_s=args.timeout_s, seconds=args.seconds)
    healthy = {c.name.split()[0]: statistics.median(c.times_ms)
               for c in results if c.name.endswith("healthy")}
    print(f"IPEX_STATE_TIMEOUT_S={args.timeout_s:g}, 2 workers, feedback calls with a fresh "
          "JWT each (replay check), one at a time; times in ms")
    print()
    print("| condition | calls | statuses | p50 | p90 | max | p50 / healthy p50 |")
    print("|---|---|---|---|---|---|---|")
    for condition in results:
        base = healthy.get(condition.name.lstrip("/readyz, ").split()[0], 1.0)
        print(condition.row(base))
    print()
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
