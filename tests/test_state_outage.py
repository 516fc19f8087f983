"""A state store that goes away: which calls still work, which get 503, and the way back.

Runs on both back ends. SQLite's volume disappears (its directory becomes a file);
PostgreSQL goes down behind a TCP proxy (connection refused) or hangs (the proxy
stops forwarding). While it lasts, calls that need the store get a JSON 503 that
says what could not be done, ``/readyz`` turns 503, and the rest keeps working;
afterwards everything answers as before and nothing acknowledged was lost.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bench.postgres_cluster import Cluster
from bench.tcp_proxy import Proxy, proxy_to
from service.app import create_app
from service.state import StateStore

from .cds_support import prefetch_call
from .conftest import SCENARIOS, load_json
from .jwt_support import Signer, jwks, write_issuers
from .log_capture import JsonLog

PUBLIC = "https://ipex.example.org"
SERVICE = "/cds-services/ipex-foxp3-screen"
FEEDBACK = SERVICE + "/feedback"
OPERATION = "/fhir/$ipex-screen"
BUNDLE = load_json(SCENARIOS / "classic-infant-boy-triad.json")["bundle"]
PASSWORD = "pw-" + uuid.uuid4().hex[:8]
COOL_DOWN_S = 0.2


class Outage(Protocol):
    settings: dict[str, Any]
    where: str

    def begin(self) -> None: ...
    def end(self) -> None: ...


class VolumeGone:
    """The SQLite file's directory is replaced by a file (an unmounted, unusable volume)."""

    def __init__(self, tmp_path: Path) -> None:
        self.directory = tmp_path / "state"
        self.aside = tmp_path / "state-aside"
        self.where = str(self.directory / "ipex.sqlite3")
        self.settings = {"state_db": self.where, "state_timeout_s": 0.5}

    def begin(self) -> None:
        self.directory.rename(self.aside)
        self.directory.write_text("not a directory")

    def end(self) -> None:
        self.directory.unlink()
        self.aside.rename(self.directory)


class DatabaseDown:
    """PostgreSQL behind a proxy that refuses connections (``hang``: stops answering)."""

    def __init__(self, proxy: Proxy, url: str, *, hang: bool) -> None:
        self.proxy = proxy
        self.hang = hang
        host_port = f"127.0.0.1:{proxy.port}"
        database = url.rsplit("/", 1)[1]
        self.where = f"postgresql://ipex@{host_port}/{database}"
        self.settings = {"state_url": f"postgresql://ipex:{PASSWORD}@{host_port}/{database}",
                         "state_timeout_s": 0.5}

    def begin(self) -> None:
        if self.hang:
            self.proxy.stall()
        else:
            self.proxy.down()

    def end(self) -> None:
        self.proxy.up()


@pytest.fixture(params=["sqlite-volume-gone", "postgresql-down", "postgresql-hung"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    if request.param == "sqlite-volume-gone":
        (tmp_path / "state").mkdir()
        yield VolumeGone(tmp_path)
        return
    cluster: Cluster = request.getfixturevalue("postgres")
    url: str = request.getfixturevalue("postgres_url")
    with proxy_to(cluster.port) as proxy:
        yield DatabaseDown(proxy, url, hang=request.param == "postgresql-hung")


@pytest.fixture()
def app(tmp_path: Path, outage: Outage, es384: Signer) -> Iterator[Flask]:
    issuers = write_issuers(tmp_path / "issuers.json", inline=jwks(es384))
    app = create_app({"cds_issuers_file": str(issuers), "api_issuers_file": str(issuers),
                      "public_base_url": PUBLIC, **outage.settings})
    store: StateStore = app.extensions["ipex_state"]
    store.availability.cool_down_s = COOL_DOWN_S
    yield app
    store.close()


def _bearer(signer: Signer, path: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.token(aud=PUBLIC + path)}"}


def _feedback(card: str) -> dict[str, Any]:
    return {"feedback": [{"card": card, "outcome": "overridden",
                          "outcomeTimestamp": "2026-03-01T10:00:00Z"}]}


def _wait_ready(client: FlaskClient, *, within_s: float = 15) -> float:
    started = time.monotonic()
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() - started < within_s, "not ready again in time"
        time.sleep(0.2)
    return time.monotonic() - started


def test_calls_that_need_the_store_get_503_and_the_rest_keep_working(
        app: Flask, outage: Outage, es384: Signer, json_log: JsonLog) -> None:
    client = app.test_client()
    call = prefetch_call(BUNDLE)
    assert client.get("/readyz").status_code == 200
    before = client.post(FEEDBACK, json=_feedback("kept"), headers=_bearer(es384, FEEDBACK))
    assert before.status_code == 200 and before.get_json()["stored"] == 1

    outage.begin()
    started = time.monotonic()
    screened = client.post(SERVICE, json=call, headers=_bearer(es384, SERVICE))
    took = time.monotonic() - started
    assert screened.status_code == 503, screened.data
    assert screened.mimetype == "application/json"
    assert "cannot check JWT replays" in screened.get_json()["error"]
    assert took < 2.0, f"the CDS call waited {took:.1f} s"
    feedback = client.post(FEEDBACK, json=_feedback("lost"), headers=_bearer(es384, FEEDBACK))
    assert feedback.status_code == 503 and feedback.mimetype == "application/json"
    assert "cannot check JWT replays" in feedback.get_json()["error"]
    fhir = client.post(OPERATION, json=BUNDLE, headers=_bearer(es384, OPERATION))
    assert fhir.status_code == 503
    outcome = fhir.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "transient"
    time.sleep(COOL_DOWN_S)  # past the cool-down: readiness tries the store again
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["status"] == "not ready"
    assert outage.where in ready.get_json()["reason"]
    assert client.get("/cds-services").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/fhir/metadata").status_code == 200

    errors = [line for line in json_log.lines() if line["level"] == "ERROR"]
    assert errors and outage.where in errors[0]["msg"]
    assert errors[0]["state_store"] == outage.where
    assert PASSWORD not in json_log.stream.getvalue()

    outage.end()
    _wait_ready(client)
    again = client.post(SERVICE, json=call, headers=_bearer(es384, SERVICE))
    assert again.status_code == 200 and "cards" in again.get_json()
    resent = client.post(FEEDBACK, json=_feedback("kept"), headers=_bearer(es384, FEEDBACK))
    assert resent.get_json() == {"stored": 0, "duplicates": 1}, "acknowledged feedback was kept"


QUICK = pytest.mark.parametrize("outage", ["sqlite-volume-gone", "postgresql-down"],
                                indirect=True)


@QUICK
def test_without_jwt_the_cds_service_needs_no_store(tmp_path: Path, outage: Outage) -> None:
    app = create_app({"cds_auth": "off", **outage.settings})
    try:
        client = app.test_client()
        outage.begin()
        assert client.post(SERVICE, json=prefetch_call(BUNDLE)).status_code == 200
        assert client.post(OPERATION, json=BUNDLE).status_code == 200
        feedback = client.post(FEEDBACK, json=_feedback("x"))
        assert feedback.status_code == 503
        assert "nothing was stored" in feedback.get_json()["error"]
    finally:
        app.extensions["ipex_state"].close()


@QUICK
def test_a_store_down_at_start_is_used_once_it_is_up(tmp_path: Path, outage: Outage,
                                                     es384: Signer) -> None:
    outage.begin()
    issuers = write_issuers(tmp_path / "issuers.json", inline=jwks(es384))
    app = create_app({"cds_issuers_file": str(issuers), "public_base_url": PUBLIC,
                      **outage.settings})
    try:
        client = app.test_client()
        assert client.get("/readyz").status_code == 503
        outage.end()
        _wait_ready(client)
        response = client.post(FEEDBACK, json=_feedback("late"), headers=_bearer(es384, FEEDBACK))
        assert response.status_code == 200
    finally:
        app.extensions["ipex_state"].close()
