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
