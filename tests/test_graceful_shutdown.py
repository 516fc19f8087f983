"""SIGTERM drains the backlog: every connection opened before it gets a whole answer.

Before issue 17 the 16 connections waiting in the listen backlog at SIGTERM were reset.
Here 40 connections each send a whole FHIR request (about 1 s of work for the two
workers, so most wait in the backlog), the master gets SIGTERM at once, and every
connection must read a complete 200; the server must exit 0 within its grace period
and refuse connections afterwards.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import orjson
import pytest

from bench.load import FHIR_PATH, HOST, Server, request, typical_child
from service.server import GRACEFUL_TIMEOUT_S

CONNECTIONS = 40


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of one whole HTTP answer; raises on a reset or a cut answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the headers ended: {data[:100]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (line.partition(":") for line in lines[1:])
                  if k.strip().lower() == "content-length")
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(body)} of {length} body bytes")
        body += chunk
    return int(lines[0].split(" ", 2)[1]), body


def test_sigterm_answers_every_accepted_and_queued_connection() -> None:
    record = typical_child().read_bytes()
    request = (f"POST {FHIR_PATH} HTTP/1.1\r\nHost: t\r\nContent-Type: application/fhir+json"
               f"\r\nContent-Length: {len(record)}\r\n\r\n").encode() + record
    with tempfile.TemporaryDirectory(prefix="ipex-drain-") as state_dir:
        server = Server(workers=2, state_dir=state_dir, env={"IPEX_LOG_LEVEL": "INFO"})
        try:
            server.wait_ready()
            socks = [socket.create_connection((HOST, server.port), timeout=30)
                     for _ in range(CONNECTIONS)]
            senders = [threading.Thread(target=s.sendall, args=(request,)) for s in socks]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join()
            stopped = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            answers: list[int | str] = []
            for sock in socks:
                with sock:
                    try:
                        status, body = read_answer(sock)
                    except OSError as exc:  # a reset: what this test is about
                        answers.append(type(exc).__name__)
                        continue
                    assert orjson.loads(body)["resourceType"] == "RiskAssessment"
                    answers.append(status)
            exit_code = server.process.wait(timeout=GRACEFUL_TIMEOUT_S + 5)
            exited_after = time.monotonic() - stopped
            log = server.log_tail()
        finally:
            server.stop()
    assert answers == [200] * CONNECTIONS, log
    assert exit_code == 0 and exited_after < GRACEFUL_TIMEOUT_S, log
    try:
        socket.create_connection((HOST, server.port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    assert refused


def _backlog(port: int) -> int:
    """The listen backlog of the socket on ``port`` (``ss``: Send-Q of a listener)."""
    shown = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                           text=True, timeout=10, check=True).stdout.split()
    return int(shown[2])


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_a_worker_stopped_alone_leaves_the_shared_backlog_as_it_is() -> None:
    # TTOU (one worker fewer) and a HUP reload stop single workers while the others go
    # on serving on the same socket: only a whole-server stop may cut the backlog.
    with tempfile.TemporaryDirectory(prefix="ipex-ttou-") as state_dir:
        server = Server(workers=2, state_dir=state_dir)
        try:
            server.wait_ready()
            assert _backlog(server.port) == 2048
            server.process.send_signal(signal.SIGTTOU)
            deadline = time.monotonic() + 20
            while len(server.workers()) > 1:
                assert time.monotonic() < deadline, server.log_tail()
                time.sleep(0.1)
            assert _backlog(server.port) == 2048
            record = typical_child().read_bytes()
            assert request(server.port, "POST", FHIR_PATH, record,
                           "application/fhir+json")[0] == 200
        finally:
            server.stop()
