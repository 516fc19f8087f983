"""``GET /metrics``: counts that add up, in one process and summed across gunicorn workers."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from service.observability import metrics
from service.observability.multiproc import ENV, prepare_multiproc_dir

from .conftest import SYNTHEA, scenario_files
from .scenarios import load_scenario

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / ".venv" / "bin" / "ipex-screen"
SMALL_SYNTHEA = SYNTHEA / "Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return parse(response.get_data(as_text=True))


def test_request_counts_and_latency_add_up(client: FlaskClient) -> None:
    before = scrape(client)
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    for _ in range(3):
        assert client.get("/fhir/metadata").status_code == 200
    assert client.post("/fhir/$ipex-screen", data=b"not json",
                       content_type="application/fhir+json").status_code == 400
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests_total = "ipex_http_requests_total"
    assert delta(requests_total, endpoint="/healthz", method="GET", status="200") == 5
    assert delta(requests_total, endpoint="/fhir/metadata", method="GET", status="200") == 3
    assert delta(requests_total, endpoint="/fhir/$ipex-screen", method="POST", status="400") == 1
    # The scrape before this one counts too, once it has been answered.
    assert delta(requests_total, endpoint="/metrics", method="GET", status="200") == 1
    latency = "ipex_http_request_duration_seconds"
    assert delta(f"{latency}_count", endpoint="/healthz", method="GET", status="200") == 5
    assert delta(f"{latency}_bucket", endpoint="/healthz", method="GET", status="200",
                 le="+Inf") == 5
    assert delta(f"{latency}_sum", endpoint="/fhir/metadata", method="GET", status="200") > 0


def test_labels_are_url_rules_never_raw_paths(client: FlaskClient) -> None:
    patient_like = "Patient-4f1c9e2a-MRN-778812"
    assert client.get(f"/fhir/StructureDefinition/{patient_like}?name=Jane").status_code == 404
    assert client.get(f"/nothing/here/{patient_like}").status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert patient_like not in text and "Jane" not in text
    samples = parse(text)
    assert value(samples, "ipex_http_requests_total",
                 endpoint="/fhir/<resource_type>/<resource_id>", method="GET", status="404") >= 1
    assert value(samples, "ipex_http_requests_total", endpoint="<unmatched>",
                 method="GET", status="404") >= 1


def test_screenings_are_counted_by_tier_over_the_scenario_corpus(client: FlaskClient) -> None:
    expected: Tally[tuple[str, str]] = Tally()
    before = scrape(client)
    for path in scenario_files():
        scenario = load_scenario(path)
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "bundle", "resource": scenario.bundle},
            {"name": "asOf", "valueDate": scenario.as_of.isoformat()},
        ]}
        assert client.post("/fhir/$ipex-screen", json=body).status_code == 200, path.name
        for patient in scenario.expect:
            expected[(patient["tier"], "true" if patient.get("suppressed") else "false")] += 1
    after = scrape(client)
    assert sum(expected.values()) >= len(scenario_files())
    assert {tier for tier, _ in expected} == {"low", "moderate", "high"}
    for tier in ("low", "moderate", "high"):
        for suppressed in ("true", "false"):
            labels = {"channel": "fhir", "tier": tier, "suppressed": suppressed}
            got = (value(after, "ipex_screenings_total", **labels)
                   - value(before, "ipex_screenings_total", **labels))
            assert got == expected[(tier, suppressed)], labels


def test_fhir_fetches_and_feedback_are_recorded_with_closed_labels(client: FlaskClient) -> None:
    before = scrape(client)
    metrics.record_fhir_fetch(0.12, "ok")
    metrics.record_fhir_fetch(0.30, "ok")
    metrics.record_fhir_fetch(3.0, "timeout")
    metrics.record_fhir_fetch(0.05, "https://ehr.example/Patient/123")  # never a label
    metrics.record_feedback("accepted")
    metrics.record_feedback("overridden")
    metrics.record_feedback("overridden")
    metrics.record_feedback("something else")
    text = client.get("/metrics").get_data(as_text=True)
    assert "ehr.example" not in text and "something else" not in text
    after = parse(text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    fetch = "ipex_fhir_fetch_duration_seconds"
    assert delta(f"{fetch}_count", outcome="ok") == 2
    assert delta(f"{fetch}_sum", outcome="ok") == pytest.approx(0.42)
    assert delta(f"{fetch}_bucket", outcome="ok", le="0.25") == 1
    assert delta(f"{fetch}_count", outcome="timeout") == 1
    assert delta("ipex_fhir_fetch_failures_total", outcome="timeout") == 1
    assert delta("ipex_fhir_fetch_failures_total", outcome="other") == 1
    assert delta("ipex_fhir_fetch_failures_total", outcome="ok") == 0
    assert delta("ipex_cds_feedback_total", outcome="accepted") == 1
    assert delta("ipex_cds_feedback_total", outcome="overridden") == 2
    assert delta("ipex_cds_feedback_total", outcome="other") == 1


def test_readyz_answers_503_when_the_rules_are_not_loaded(app: Flask) -> None:
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
    app.extensions["ipex"] = None
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "not ready"
    assert client.get("/healthz").status_code == 200  # alive, only not ready


def test_multiproc_dir_is_wiped_at_start_or_made_fresh(tmp_path: Path) -> None:
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale")
    (given / "histogram_456.db").write_bytes(b"stale")
    (given / "README").write_text("an operator's file")
    env = {ENV: str(given)}
    assert prepare_multiproc_dir(environ=env) == given
    assert sorted(p.name for p in given.iterdir()) == ["README"]

    fresh_env: dict[str, str] = {}
    fresh = prepare_multiproc_dir(environ=fresh_env)
    try:
        assert fresh_env[ENV] == str(fresh) and fresh.is_dir() and not any(fresh.iterdir())
    finally:
        fresh.rmdir()


# --- the real thing: `ipex-screen serve --workers 2` --------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str, *, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/fhir+json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        status: int = answer.status
        return status


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Mapping[str, Any]]:
    """``ipex-screen serve --workers 2`` on a free loopback port, always stopped."""
    assert CLI.exists(), f"{CLI}: install the project into .venv first"
    port = _free_port()
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    # A file a previous run left: it must not be summed into this run's counts.
    (metrics_dir / "counter_999999.db").write_bytes(b"\0" * 64)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IPEX_")}
    env.update({ENV: str(metrics_dir), "IPEX_STATE_DB": str(tmp_path / "state.sqlite3"),
                "IPEX_LOG_LEVEL": "INFO"})
    stderr = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [str(CLI), "serve", "--workers", "2", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                if _get(f"{base}/readyz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready in 60 s"
            time.sleep(0.2)
        yield {"base": base, "log": tmp_path / "server.log", "dir": metrics_dir,
               "pid": process.pid}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        stderr.close()


def _request_lines(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [line for line in lines if line.get("logger") == "ipex_screen.request"]


def _screened_by(log: Path) -> Tally[int]:
    """How many ``$ipex-screen`` requests each worker (by pid) logged."""
    return Tally(line["pid"] for line in _request_lines(log)
                 if line["path"] == "/fhir/$ipex-screen")


def test_serve_with_two_workers_sums_metrics_across_workers(server: Mapping[str, Any]) -> None:
    base = server["base"]
    bundle = SMALL_SYNTHEA.read_bytes()
    status, text = _get(f"{base}/metrics")
    assert status == 200
    before = parse(text.decode())
    assert "counter_999999.db" not in {p.name for p in Path(server["dir"]).iterdir()}

    # gunicorn promises no share of the requests to either worker: send concurrent
    # batches (12 requests at least) until both workers' pids have answered one, up to
    # a bound, and count them all.
    gets, batch, least, most = 8, 4, 12, 200
    posts = 0
    screened_by: Tally[int] = Tally()
    with concurrent.futures.ThreadPoolExecutor(max_workers=batch) as pool:
        while posts < least or len(screened_by) < 2:
            assert posts < most, f"one worker took all {posts} requests: {screened_by}"
            screened = list(pool.map(lambda _: _post(f"{base}/fhir/$ipex-screen", bundle),
                                     range(batch)))
            assert screened == [200] * batch
            posts += batch
            screened_by = _screened_by(Path(server["log"]))
        read = list(pool.map(lambda _: _get(f"{base}/fhir/metadata")[0], range(gets)))
    assert read == [200] * gets

    status, text = _get(f"{base}/metrics")
    after = parse(text.decode())

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("ipex_http_requests_total", endpoint="/fhir/$ipex-screen",
                 method="POST", status="200") == posts
    assert delta("ipex_http_requests_total", endpoint="/fhir/metadata") == gets
    assert delta("ipex_http_request_duration_seconds_count",
                 endpoint="/fhir/$ipex-screen") == posts
    assert delta("ipex_screenings_total", channel="fhir", tier="low") == posts
    # Since start: the readiness polls, the first scrape and the requests above; the
    # warm-up screening in the master is no request and no screening.
    assert total(after, "ipex_screenings_total") == posts
    assert total(after, "ipex_http_requests_total", endpoint="/metrics") == 1

    # Both workers answered (their pids in the request log lines), and the sum holds.
    assert sum(screened_by.values()) == posts
    assert len(screened_by) == 2, f"one worker took every request: {screened_by}"
    assert server["pid"] not in screened_by

    # A worker that dies keeps its counts in the sum (no counter goes backwards), and
    # the replacement gunicorn starts adds its own. Every line gunicorn wrote is JSON.
    os.kill(next(iter(screened_by)), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while len(_booted(Path(server["log"]))) < 3:
        assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
        time.sleep(0.2)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        again = list(pool.map(lambda _: _post(f"{base}/fhir/$ipex-screen", bundle), range(4)))
    assert again == [200] * 4
    final = parse(_get(f"{base}/metrics")[1].decode())
    assert total(final, "ipex_screenings_total") == posts + 4
    assert total(final, "ipex_http_requests_total", endpoint="/fhir/$ipex-screen") == posts + 4


def _booted(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["logger"] == "gunicorn.error"
            and str(line["msg"]).startswith("Booting worker")]
