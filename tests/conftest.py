"""Shared fixtures: the loaded rules, the app and its test client, the data corpus."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bench.postgres_cluster import Cluster
from service.app import create_app
from service.config import default_profiles_dir
from service.observability.logs import JsonFormatter
from service.profiles import Profiles, load_profiles

from .fixed_clock import FixedClock
from .jwt_support import Signer, es384_signer, rs384_signer
from .log_capture import JsonLog

TESTS = Path(__file__).parent
SCENARIOS = TESTS / "data" / "scenarios"
SHARED = TESTS.parent.parent / "shared"
SYNTHEA = SHARED / "data" / "synthea"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def scenario_files() -> list[Path]:
    return sorted(SCENARIOS.glob("*.json"))


def synthea_files() -> list[Path]:
    return sorted(SYNTHEA.glob("*.json"))


@pytest.fixture(scope="session")
def profiles() -> Profiles:
    return load_profiles(default_profiles_dir())


@pytest.fixture()
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"state_db": str(tmp_path / "state.sqlite3"), "cds_auth": "off"})
    app.config["TESTING"] = True
    yield app


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def clock() -> FixedClock:
    """The clock of the app under test: set it (``clock.set_today``) to replay a scenario."""
    return FixedClock()


@pytest.fixture()
def json_log() -> Iterator[JsonLog]:
    log = JsonLog()
    handler = logging.StreamHandler(log.stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield log
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(scope="module")
def es384() -> Signer:
    return es384_signer()


@pytest.fixture(scope="module")
def rs384() -> Signer:
    return rs384_signer()


# --- the state store on both back ends ----------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """One throwaway PostgreSQL server for the session (see tests/postgres_cluster.py)."""
    cluster = Cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture()
def postgres_url(postgres: Cluster) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    with postgres.database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def state_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Settings naming an empty state store, once per back end."""
    if request.param == "sqlite":
        return {"state_db": str(tmp_path / "state.sqlite3")}
    url: str = request.getfixturevalue("postgres_url")
    return {"state_db": str(tmp_path / "unused.sqlite3"), "state_url": url}
