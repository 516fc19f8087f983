"""Over real sockets: a tiny FHIR server on 127.0.0.1 gives the same card as full prefetch;
an unreachable or silent server gives 412 within the budget."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from .cds_support import (
    CLASSIC,
    SERVICE,
    cds_app,
    hook_call,
    prefetch_call,
    searchset,
    split_record,
    without_uuids,
)
from .fixed_clock import FixedClock
from .scenarios import load_scenario

TOKEN = "loopback-token-77"


class FhirServer:
    """Serves one patient's record read-only, Conditions in pages of one."""

    def __init__(self, bundle: dict[str, Any], *, delay_s: float = 0.0) -> None:
        self.pid, self.patient, self.by_key = split_record(bundle)
        self.delay_s = delay_s
        self.seen: list[tuple[str, str | None]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                owner.seen.append((self.path, self.headers.get("Authorization")))
                if owner.delay_s:
                    time.sleep(owner.delay_s)
                status, body = owner.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        kinds = {"Condition": "conditions", "Observation": "observations",
                 "ServiceRequest": "orders"}
        if parts.path == f"/fhir/Patient/{self.pid}":
            return 200, self.patient
        kind = parts.path.removeprefix("/fhir/")
        if kind in kinds and query.get("patient") == self.pid:
            resources = self.by_key[kinds[kind]]
            page = int(query.get("page", "0"))
            if kind != "Condition":
                return 200, searchset(resources)
            bundle = searchset(resources[page:page + 1])
            if page + 1 < len(resources):
                bundle["link"] = [{"relation": "next", "url":
                                   f"{self.base}/Condition?patient={self.pid}&page={page + 1}"}]
            return 200, bundle
        return 404, {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "not-found"}]}

    def __enter__(self) -> FhirServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_fhir_server_on_loopback_gives_the_same_card_as_full_prefetch(
        tmp_path: Path, clock: FixedClock) -> None:
    scenario = load_scenario(CLASSIC)
    clock.set_today(scenario.as_of)
    client = cds_app(tmp_path, clock=clock).test_client()
    with_prefetch = client.post(SERVICE, json=prefetch_call(scenario.bundle))
    (expected,) = with_prefetch.get_json()["cards"]
    with FhirServer(scenario.bundle) as ehr:
        fetched = client.post(SERVICE, json=hook_call(ehr.pid, fhir_server=ehr.base,
                                                      token=TOKEN))
    assert fetched.status_code == 200, fetched.get_json()
    (card,) = fetched.get_json()["cards"]
    assert card["indicator"] == "warning"
    assert without_uuids(card) == without_uuids(expected)
    assert len(ehr.seen) == 1 + 3 + 2  # Patient, three Condition pages, two searches
    assert {auth for _, auth in ehr.seen} == {f"Bearer {TOKEN}"}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


def test_an_unreachable_fhir_server_is_412_within_the_budget(
        tmp_path: Path, clock: FixedClock) -> None:
    scenario = load_scenario(CLASSIC)
    clock.set_today(scenario.as_of)
    client = cds_app(tmp_path, clock=clock, cds_budget_s=1.0, fhir_timeout_s=0.5).test_client()
    pid, _, _ = split_record(scenario.bundle)
    started = time.monotonic()
    response = client.post(SERVICE, json=hook_call(
        pid, fhir_server=f"http://127.0.0.1:{_closed_port()}/fhir", token=TOKEN))
    assert response.status_code == 412
    assert "could not be reached" in response.get_json()["error"]
    assert time.monotonic() - started < 1.0


@pytest.fixture()
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/fhir"
    finally:
        listener.close()


def test_a_silent_fhir_server_is_412_when_the_budget_runs_out(
        tmp_path: Path, clock: FixedClock, silent_server: str) -> None:
    client = cds_app(tmp_path, clock=clock, cds_budget_s=0.6, fhir_timeout_s=5.0).test_client()
    started = time.monotonic()
    response = client.post(SERVICE, json=hook_call("baby1", fhir_server=silent_server,
                                                   token=TOKEN))
    elapsed = time.monotonic() - started
    assert response.status_code == 412
    assert "IPEX_CDS_BUDGET_S" in response.get_json()["error"]
    assert 0.5 < elapsed < 0.6 + 0.5


def test_a_slow_fhir_server_is_cut_at_the_budget(
        tmp_path: Path, clock: FixedClock) -> None:
    scenario = load_scenario(CLASSIC)
    clock.set_today(scenario.as_of)
    client = cds_app(tmp_path, clock=clock, cds_budget_s=0.7, fhir_timeout_s=2.0).test_client()
    with FhirServer(scenario.bundle, delay_s=0.3) as ehr:
        started = time.monotonic()
        response = client.post(SERVICE, json=hook_call(ehr.pid, fhir_server=ehr.base,
                                                       token=TOKEN))
        elapsed = time.monotonic() - started
    assert response.status_code == 412
    assert elapsed < 0.7 + 0.5
