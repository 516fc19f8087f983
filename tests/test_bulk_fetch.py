"""``--from``: the Bulk Data client against a stand-in server that checks every step."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization

from bench.bulk_export import template
from service.cli import main
from service.config import Settings, load_settings
from service.population.bulk.errors import (
    BulkAuthError,
    BulkConfigError,
    BulkDeadlineExceeded,
    BulkExportFailed,
)
from service.population.bulk.fetch import export_urls, fetch_export

from .bulk_server import CLIENT_ID, TYPES, Behaviour, BulkServer
from .jwt_support import Signer
from .population_support import AS_OF, triad_bundle

PATIENT = orjson.dumps({"resourceType": "Patient", "id": "p1", "gender": "male",
                        "birthDate": "2025-01-10"})
CONDITION = orjson.dumps({"resourceType": "Condition", "id": "c1",
                          "subject": {"reference": "Patient/p1"},
                          "code": {"coding": [{"system": "http://snomed.info/sct",
                                               "code": "236071009"}]},
                          "onsetDateTime": "2025-03-02"})
FILES = {"Patient.ndjson": PATIENT + b"\n", "Condition.ndjson": CONDITION + b"\n" * 1}
ERRORS = [orjson.dumps({"resourceType": "OperationOutcome", "issue": [
    {"severity": "error", "code": "processing", "diagnostics": "Observation/o9 unreadable"}]}),
    orjson.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "warning", "code": "too-costly", "diagnostics": "partial"}]})]


class FakeClock:
    """Monotonic time that moves only when the client sleeps; the wall clock is real."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _key_file(tmp_path: Path, signer: Signer) -> Path:
    path = tmp_path / "client-key.pem"
    path.write_bytes(signer.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path


def _settings(tmp_path: Path, signer: Signer | None, **overrides: object) -> Settings:
    auth = {"bulk_client_id": CLIENT_ID, "bulk_key_file": str(_key_file(tmp_path, signer)),
            "bulk_key_id": "client-key-1"} if signer else {}
    return load_settings({}, **auth, **overrides)  # type: ignore[arg-type]


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


def _serve(**kwargs: object) -> BulkServer:
    return BulkServer(Behaviour(files=dict(FILES), **kwargs))  # type: ignore[arg-type]


@pytest.fixture(params=["es384", "rs384"])
def signer(request: pytest.FixtureRequest) -> Iterator[Signer]:
    yield request.getfixturevalue(request.param)


def test_every_step_of_an_authorised_export(tmp_path: Path, clock: FakeClock,
                                            signer: Signer) -> None:
    stderr = io.StringIO()
    with _serve(signer=signer, error_lines=ERRORS) as server:
        fetched = fetch_export(f"{server.base}/Group/g", tmp_path / "export",
                               _settings(tmp_path, signer), clock=clock, stream=stderr)
    assert server.problems == []
    # Discovery, then one token from a signed assertion with the configured kid.
    (assertion,) = server.assertions
    assert assertion["header"]["alg"] == signer.alg
    assert assertion["header"]["kid"] == "client-key-1"
    assert assertion["claims"]["aud"].endswith("/auth/token")
    assert assertion["claims"]["exp"] - assertion["claims"]["iat"] <= 300
    assert "system/Observation.read" in assertion["scope"]
    (kickoff,) = server.requests_to("$export")
    assert kickoff.query == {"_type": TYPES}
    assert kickoff.headers["Prefer"] == "respond-async"
    assert kickoff.headers["Accept"] == "application/fhir+json"
    assert kickoff.headers["Authorization"] == "Bearer token-1"
    # Two 202s with Retry-After: 3, then the manifest; the waits are what the server said.
    assert server.polls == 3 and clock.sleeps == [3.0, 3.0]
    assert "export: in progress (30% complete)" in stderr.getvalue()
    downloads = server.requests_to("/files/")
    assert {d.path for d in downloads} == {"/files/Patient.ndjson", "/files/Condition.ndjson",
                                            "/files/errors.ndjson"}
    assert all(d.headers["Authorization"] == "Bearer token-1" for d in downloads)
    assert all(d.headers["Accept"] == "application/fhir+ndjson" for d in downloads)
    assert server.deleted
    # The files and a local manifest; the error file's issues counted by code.
    assert (tmp_path / "export" / "Patient.1.ndjson").read_bytes() == FILES["Patient.ndjson"]
    manifest = orjson.loads(fetched.manifest_path.read_bytes())
    assert [o["url"] for o in manifest["output"]] == ["Patient.1.ndjson", "Condition.1.ndjson"]
    assert manifest["error"] == [{"type": "OperationOutcome",
                                  "url": "OperationOutcome.error.1.ndjson"}]
    assert dict(fetched.error_issues) == {"processing": 1, "too-costly": 1}
    assert fetched.summary()["errorIssues"] == 2
    # Neither the token nor the assertion is ever printed.
    assert "token-1" not in stderr.getvalue() and "eyJ" not in stderr.getvalue()


def test_a_429_at_kick_off_is_retried_after_what_the_server_says(
        tmp_path: Path, clock: FakeClock, es384: Signer) -> None:
    with _serve(signer=es384, kickoff_429_first=True, polls_before_done=0) as server:
        fetch_export(f"{server.base}/Group/g", tmp_path / "export",
                     _settings(tmp_path, es384), clock=clock, stream=io.StringIO())
    assert len(server.requests_to("$export")) == 2
    assert clock.sleeps == [7.0]
    assert server.problems == []


def test_a_transient_503_on_a_download_is_retried(tmp_path: Path, clock: FakeClock) -> None:
    with _serve(polls_before_done=0, download_500_first=True,
                requires_access_token=False) as server:
        fetched = fetch_export(f"{server.base}/Group/g", tmp_path / "export",
                               _settings(tmp_path, None), clock=clock, stream=io.StringIO())
    assert clock.sleeps == [1.0]
    assert fetched.output_files == 2
    # An open server and requiresAccessToken false: no token is ever sent.
    assert all("Authorization" not in s.headers for s in server.seen)
    assert server.problems == []


def test_a_token_that_expires_mid_download_is_replaced(tmp_path: Path, clock: FakeClock,
                                                      rs384: Signer) -> None:
    # Token 1 answers the kick-off, three polls and the first download, then expires.
    with _serve(signer=rs384, revoke_first_token_after=5) as server:
        fetched = fetch_export(f"{server.base}/Group/g", tmp_path / "export",
                               _settings(tmp_path, rs384), clock=clock, stream=io.StringIO())
    assert server.tokens == ["token-1", "token-2"]
    assert len({a["claims"]["jti"] for a in server.assertions}) == 2
    second = server.requests_to("/files/Condition.ndjson")
    assert [s.headers["Authorization"] for s in second] == ["Bearer token-1", "Bearer token-2"]
    assert (fetched.directory / "Condition.1.ndjson").read_bytes() == FILES["Condition.ndjson"]
    assert server.problems == []


def test_a_failed_job_is_reported_with_the_servers_diagnostics(
        tmp_path: Path, clock: FakeClock, es384: Signer) -> None:
    with _serve(signer=es384, fail_job=True) as server, pytest.raises(BulkExportFailed) as info:
        fetch_export(f"{server.base}/Group/g", tmp_path / "export",
                     _settings(tmp_path, es384), clock=clock, stream=io.StringIO())
    assert "HTTP 500" in str(info.value) and "ran out of disk" in str(info.value)
    assert server.polls == 2, "a failed job (non-transient OperationOutcome) is not retried"
    assert not (tmp_path / "export").exists()


def test_the_total_time_limit_stops_a_job_that_never_finishes(
        tmp_path: Path, clock: FakeClock, es384: Signer) -> None:
    with _serve(signer=es384, never_done=True, retry_after="3") as server, \
            pytest.raises(BulkDeadlineExceeded) as info:
        fetch_export(f"{server.base}/Group/g", tmp_path / "export",
                     _settings(tmp_path, es384, bulk_deadline_s=10.0), clock=clock,
                     stream=io.StringIO())
    assert "10 s" in str(info.value) and "IPEX_BULK_DEADLINE_S" in str(info.value)
    assert clock.sleeps == [3.0, 3.0, 3.0] and server.polls == 4


def test_a_refused_client_assertion_is_an_auth_error(tmp_path: Path, clock: FakeClock,
                                                     es384: Signer, rs384: Signer) -> None:
    # The server knows the ES384 key; the client signs with another one.
    with _serve(signer=es384) as server, pytest.raises(BulkAuthError) as info:
        fetch_export(f"{server.base}/Group/g", tmp_path / "export",
                     _settings(tmp_path, rs384), clock=clock, stream=io.StringIO())
    assert "HTTP 401" in str(info.value) and "invalid_client" in str(info.value)
    assert server.requests_to("$export") == []


def test_settings_and_urls_are_checked_before_any_request(tmp_path: Path) -> None:
    assert export_urls("https://ehr.example/fhir/Group/123") == (
        "https://ehr.example/fhir", "https://ehr.example/fhir/Group/123/$export")
    assert export_urls("https://ehr.example/fhir/Patient/") == (
        "https://ehr.example/fhir", "https://ehr.example/fhir/Patient/$export")
    assert export_urls("https://ehr.example/fhir") == (
        "https://ehr.example/fhir", "https://ehr.example/fhir/$export")
    with pytest.raises(BulkConfigError, match="https"):
        export_urls("http://ehr.example/fhir/Group/1")
    with pytest.raises(BulkConfigError, match="IPEX_BULK_KEY_FILE"):
        fetch_export("https://ehr.example/fhir", tmp_path,
                     load_settings({}, bulk_client_id="only-the-id"))
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("not a key")
    with pytest.raises(BulkConfigError, match="PEM"):
        fetch_export("https://ehr.example/fhir", tmp_path,
                     load_settings({}, bulk_client_id="c", bulk_key_file=str(bad_key)))


def test_population_from_a_server_screens_what_it_downloaded(
        tmp_path: Path, es384: Signer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    lines = template(triad_bundle(), copies=False).lines
    files = {f"{kind}.ndjson": b"\n".join(rows) + b"\n" for kind, rows in lines.items() if rows}
    monkeypatch.setenv("IPEX_BULK_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("IPEX_BULK_KEY_FILE", str(_key_file(tmp_path, es384)))
    with BulkServer(Behaviour(signer=es384, files=files, polls_before_done=0,
                              error_lines=ERRORS)) as server:
        code = main(["population", "--from", f"{server.base}/Group/g", "--out",
                     str(tmp_path / "out"), "--as-of", AS_OF.isoformat(), "--workers", "1"])
    assert code == 0 and server.problems == []
    assert (tmp_path / "out" / "flagged.csv").read_text().splitlines()[1].startswith("baby1,")
    summary = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())
    assert summary["export"] == {"transactionTime": "2025-09-01T00:00:00Z", "outputFiles": 2,
                                 "errorFiles": 1, "errorIssues": 2}
    assert summary["exportErrors"] == {"issues": 2, "byCode": {"processing": 1,
                                                               "too-costly": 1}}
    err = capsys.readouterr().err
    assert "1 flagged" in err and "token-1" not in err


def test_population_from_a_failed_export_exits_1_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with BulkServer(Behaviour(files=dict(FILES), fail_job=True, polls_before_done=1,
                              retry_after="0")) as server:
        code = main(["population", "--from", f"{server.base}/Group/g", "--out",
                     str(tmp_path / "out")])
    assert code == 1
    assert "the export failed (HTTP 500): export failed: the job ran out of disk" in (
        capsys.readouterr().err)
