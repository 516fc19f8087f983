"""The production server (``ipex-screen serve``) against slow, lying and malformed clients.

One server for the module, as ``bench.load`` runs it (2 workers, a free loopback port),
with ``IPEX_REQUEST_TIMEOUT_S=2``. Raw sockets send exactly the bytes of each attack of
issue 17 and read exactly what comes back.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Iterator

import orjson
import pytest

from bench.load import HOST, Server, request
from bench.slow_clients import measure, the_calls

REQUEST_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="ipex-resilience-") as state_dir:
        running = Server(workers=2, state_dir=state_dir,
                         env={"IPEX_REQUEST_TIMEOUT_S": f"{REQUEST_TIMEOUT_S:g}",
                              "IPEX_LOG_LEVEL": "INFO"})
        try:
            running.wait_ready()
            yield running
        finally:
            running.stop()


def exchange(port: int, data: bytes, *, wait_s: float = 10.0) -> tuple[bytes, float]:
    """Send ``data`` (then nothing), read until the server closes; (answer, seconds)."""
    with socket.create_connection((HOST, port), timeout=wait_s) as sock:
        started = time.monotonic()
        sock.sendall(data)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            answer += chunk
        return answer, time.monotonic() - started


def parsed(answer: bytes) -> tuple[int, dict[str, str], object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, orjson.loads(body)


FHIR_POST = (b"POST /fhir/$ipex-screen HTTP/1.1\r\nHost: t\r\n"
             b"Content-Type: application/fhir+json\r\n")
CDS_POST = (b"POST /cds-services/ipex-foxp3-screen HTTP/1.1\r\nHost: t\r\n"
            b"Content-Type: application/json\r\n")

REFUSALS = {
    # name: (bytes sent, status, FHIR path?)
    "malformed-chunked-fhir": (FHIR_POST + b"Transfer-Encoding: chunked\r\n\r\n"
                               b"ZZ\r\nabc\r\n0\r\n\r\n", 400, True),
    "malformed-chunked-cds": (CDS_POST + b"Transfer-Encoding: chunked\r\n\r\n5;\x00\r\nabc",
                              400, False),
    "bad-request-line": (b"GARBAGE\r\n\r\n", 400, False),
    "invalid-content-length": (FHIR_POST + b"Content-Length: 12abc\r\n\r\n{}", 400, True),
    "content-length-over-limit": (FHIR_POST + b"Content-Length: 68719476736\r\n\r\n", 413, True),
    "uri-too-long": (b"GET /fhir/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, False),
    "headers-too-large": (b"GET /fhir/metadata HTTP/1.1\r\nHost: t\r\nX-Big: "
                          + b"b" * 70_000 + b"\r\n\r\n", 431, False),
    "unknown-transfer-coding": (FHIR_POST + b"Transfer-Encoding: gzip\r\n\r\n", 501, True),
}


@pytest.mark.parametrize(("data", "status", "fhir"), list(REFUSALS.values()),
                         ids=list(REFUSALS))
def test_the_servers_own_refusals_are_json(server: Server, data: bytes, status: int,
                                           fhir: bool) -> None:
    answer, elapsed = exchange(server.port, data)
    got, headers, body = parsed(answer)
    assert got == status and elapsed < 1.0
    assert headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"
    if fhir:
        assert headers["content-type"] == "application/fhir+json"
        assert isinstance(body, dict) and body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["severity"] == "error"
    else:
        assert headers["content-type"] == "application/json"
        assert isinstance(body, dict) and set(body) == {"error"}
    assert b"b" * 100 not in answer and b"a" * 100 not in answer  # the request is not echoed


STALLS = {
    # A body announced larger than sent, a body a byte at a time, headers never ended.
    "lying-content-length": (FHIR_POST + b"Content-Length: 1000\r\n\r\n{\"resourceType\":", True),
    "headers-never-finished": (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: a", False),
}


@pytest.mark.parametrize(("data", "fhir"), list(STALLS.values()), ids=list(STALLS))
def test_a_stalled_request_gets_a_json_408_at_the_request_timeout(
        server: Server, data: bytes, fhir: bool) -> None:
    answer, elapsed = exchange(server.port, data)
    status, headers, body = parsed(answer)
    assert status == 408
    assert REQUEST_TIMEOUT_S <= elapsed < REQUEST_TIMEOUT_S + 1.5
    assert isinstance(body, dict)
    if fhir:
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["code"] == "timeout"
        assert "IPEX_REQUEST_TIMEOUT_S" in body["issue"][0]["diagnostics"]
    else:
        assert "IPEX_REQUEST_TIMEOUT_S" in body["error"]


def test_a_body_trickled_a_byte_at_a_time_is_cut_at_the_request_timeout(server: Server
                                                                         ) -> None:
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(FHIR_POST + b"Content-Length: 100\r\n\r\n")
        answer = b""
        for _ in range(100):  # each byte well inside any per-read timeout
            try:
                sock.sendall(b" ")
            except OSError:
                break
            time.sleep(0.1)
            sock.setblocking(False)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if answer:
                break
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert elapsed < REQUEST_TIMEOUT_S + 1.5


def test_an_idle_connection_is_closed(server: Server) -> None:
    answer, elapsed = exchange(server.port, b"", wait_s=10)
    assert answer == b"" and elapsed < 5 + 1.5


def test_a_malformed_chunked_body_logs_no_error(server: Server) -> None:
    before = server.log.read_text(errors="replace")
    exchange(server.port, REFUSALS["malformed-chunked-fhir"][0])
    time.sleep(0.2)
    new = server.log.read_text(errors="replace")[len(before):]
    assert '"level":"ERROR"' not in new and "Traceback" not in new
    assert "400 Bad Request" in new  # logged at INFO, as the refusal it is


def test_normal_calls_stay_fast_under_200_slowloris_and_20_lying_posts(server: Server
                                                                       ) -> None:
    # The short form of bench.slow_clients (its figures are in bench/RESULTS.md).
    outcome = measure(server.port, the_calls(), slowloris=200, lying=20, duration_s=2.5,
                      concurrency=2, trickle_s=0.5, call_timeout_s=5.0, baseline=False)
    for calls in outcome.attacked:
        assert calls.errors == 0 and len(calls.ms) >= 5, calls.statuses
        assert calls.p99 < 1000, f"{calls.call}: p99 {calls.p99:.0f} ms"
    # Every attacker open past the request timeout got a JSON 408, and nothing else.
    for kind, count in (("lying", 20), ("slowloris", 200)):
        attack = outcome.attacks[kind]
        assert set(attack.answers) == {"408 json"} and attack.answers["408 json"] >= count
        assert max(attack.seconds_to_answer) < REQUEST_TIMEOUT_S + 1.5


def test_an_app_that_raises_gets_a_json_500_from_the_server() -> None:
    # Flask answers its own errors; this is the server's last line, for a WSGI app that
    # raises past Flask. waitress's loop runs in a thread here, without gunicorn.
    import threading

    from waitress import wasyncore
    from waitress.adjustments import Adjustments

    from service.config import load_settings
    from service.server import limits
    from service.serving.worker import InlineDispatcher, ListenerServer

    def broken(environ: object, start_response: object) -> list[bytes]:
        raise RuntimeError("a bug")

    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(8)
    socket_map: dict[int, object] = {}
    dispatcher = InlineDispatcher()
    server = ListenerServer(broken, map=socket_map, _sock=listener, dispatcher=dispatcher,
                         adj=Adjustments(ident=""), bind_socket=False,
                         sockinfo=(listener.family, listener.type, listener.proto,
                                   listener.getsockname()))
    server.limits = limits(load_settings())
    server.dispatcher = dispatcher
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            wasyncore.loop(timeout=0.05, map=socket_map, use_poll=True, count=1)
            dispatcher.run_pending()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        answer, _ = exchange(listener.getsockname()[1],
                             b"GET /fhir/metadata HTTP/1.1\r\nHost: t\r\n\r\n")
    finally:
        stop.set()
        thread.join(timeout=5)
        wasyncore.close_all(socket_map)
        dispatcher.shutdown()
    status, headers, body = parsed(answer)
    assert status == 500 and headers["content-type"] == "application/fhir+json"
    assert isinstance(body, dict) and body["issue"][0]["code"] == "exception"
    assert "a bug" not in answer.decode()


def test_a_request_that_holds_a_worker_too_long_gets_a_json_503_and_a_new_worker(
) -> None:
    """IPEX_WORKER_TIMEOUT_S: the master stops a worker stuck on one request; its caller
    gets the server's JSON 503 (never a dropped connection or an HTML page) and the
    service goes on with a fresh worker. Stuck here: a FHIR server that sends its
    headers a byte every half second, with a CDS budget longer than the worker limit."""
    from tests.cds_support import hook_call
    from tests.fhir_standin import Answer, StandIn

    stalled = Answer(b'{"resourceType": "Patient", "id": "p-1"}', trickle_headers_s=0.5)
    with StandIn({"/fhir/Patient/p-1": stalled}) as ehr, \
            tempfile.TemporaryDirectory(prefix="ipex-abort-") as state_dir:
        running = Server(workers=1, state_dir=state_dir,
                         env={"IPEX_WORKER_TIMEOUT_S": "1", "IPEX_CDS_BUDGET_S": "60",
                              "IPEX_FHIR_TIMEOUT_S": "60", "IPEX_LOG_LEVEL": "INFO"})
        try:
            running.wait_ready()
            first_worker = running.workers()
            body = orjson.dumps(hook_call("p-1", fhir_server=ehr.base))
            answer, seconds = exchange(running.port, CDS_POST + b"Content-Length: %d\r\n\r\n"
                                       % len(body) + body, wait_s=30)
            status, headers, error = parsed(answer)
            assert status == 503
            assert status == 503 and headers["content-type"] == "application/json"
            assert isinstance(error, dict) and "IPEX_WORKER_TIMEOUT_S" in error["error"]
            assert seconds < 10
            running.wait_ready()  # a new worker serves
            assert running.workers() != first_worker
            status, _ = request(running.port, "GET", "/readyz")
            assert status == 200
            assert "stopped after 1 s on one request" in running.log_tail()
        finally:
            running.stop()
