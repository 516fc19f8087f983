"""Adversarial bundles inside the limits, timed through the FHIR operation.

Each bundle is legal (at most ``IPEX_MAX_ENTRIES`` entries and ``IPEX_MAX_BODY_MB``),
and each shape once made a step quadratic or slow:

* ``conditions``: 100,000 Conditions for one patient, every one matching a rule
  (diarrhea codes, diabetes, eczema, causes that explain diarrhea, features);
* ``observations``: 100,000 Observations with 20 components each;
* ``patients``: 50,000 patients of 2 entries (a Patient and a diabetes Condition),
  so 50,000 RiskAssessments come back;
* ``long-strings``: 60 MB of long strings in the displays and texts the rules read.

Each is POSTed to ``/fhir/$ipex-screen`` (in process through the Flask app, or to a
running service with ``--url``) and timed end to end, next to ``orjson.loads`` of the
same bytes measured in the same run. Target: every answer under 5 s, never a worker
timeout. Run it with ``.venv/bin/python -m bench.adversarial`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LIMIT_BYTES = 64 * 1024 * 1024
LIMIT_ENTRIES = 100_000
AS_OF = "2026-01-01"


def _patient(pid: str = "p") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "male", "birthDate": "2024-01-15"}


def _bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def conditions(count: int = LIMIT_ENTRIES - 1) -> dict[str, Any]:
    codes = ["R19.7", "E10.9", "L20.9", "K90.9", "K90.0", "A08.0", "Z91.0110", "D69.3",
             "K52.9", "E06.3"]
    start = dt.date(2024, 1, 20)
    entries = [{"resource": _patient()}]
    for i in range(count):
        entries.append({"resource": {
            "resourceType": "Condition", "id": f"c{i}", "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": ICD10CM, "code": codes[i % len(codes)]}]},
            "onsetDateTime": (start + dt.timedelta(days=i % 700)).isoformat()}})
    return _bundle(entries)


def observations(count: int = LIMIT_ENTRIES - 1, components: int = 20) -> dict[str, Any]:
    entries = [{"resource": _patient()}]
    for i in range(count):
        entries.append({"resource": {
            "resourceType": "Observation", "id": f"o{i}", "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": LOINC, "code": "26449-9"}]},
            "valueQuantity": {"value": 0.2 + (i % 10) / 10},
            "component": [{"code": {"text": "c"}}] * components}})
    return _bundle(entries)


def patients(count: int = LIMIT_ENTRIES // 2) -> dict[str, Any]:
    entries = []
    for i in range(count):
        entries.append({"resource": _patient(f"p{i}")})
        entries.append({"resource": {
            "resourceType": "Condition", "id": f"c{i}", "subject": {"reference": f"Patient/p{i}"},
            "code": {"coding": [{"system": ICD10CM, "code": "E10.9"}]},
            "onsetDateTime": "2024-03-01"}})
    return _bundle(entries)


def long_strings(total: int = 60_000_000) -> dict[str, Any]:
    text = "x" * (total // 6)
    entries = [{"resource": _patient()}]
    for i, code in enumerate(["K90.89", "E10.9", "L20.9"]):
        entries.append({"resource": {
            "resourceType": "Condition", "id": f"c{i}", "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": ICD10CM, "code": code, "display": text}],
                     "text": text},
            "onsetDateTime": "2024-03-01"}})
    return _bundle(entries)


SHAPES: dict[str, Callable[[], dict[str, Any]]] = {
    "conditions": conditions,
    "observations": observations,
    "patients": patients,
    "long-strings": long_strings,
}


def _parameters(bundle_bytes: bytes) -> bytes:
    """The bundle wrapped in Parameters with asOf, without parsing it again."""
    return (b'{"resourceType":"Parameters","parameter":[{"name":"asOf","valueDate":"'
            + AS_OF.encode() + b'"},{"name":"bundle","resource":' + bundle_bytes + b"}]}")


def _in_process() -> Callable[[bytes], tuple[int, int]]:
    import tempfile

    from service.app import create_app

    state = tempfile.mkdtemp(prefix="ipex-adversarial-")
    client = create_app({"state_db": f"{state}/state.sqlite3", "cds_auth": "off"}).test_client()

    def post(body: bytes) -> tuple[int, int]:
        response = client.post("/fhir/$ipex-screen", data=body,
                               content_type="application/fhir+json")
        return response.status_code, len(response.get_data())

    return post


def _over_http(url: str, timeout_s: float) -> Callable[[bytes], tuple[int, int]]:
    import requests

    session = requests.Session()

    def post(body: bytes) -> tuple[int, int]:
        response = session.post(f"{url.rstrip('/')}/fhir/$ipex-screen", data=body,
                                headers={"Content-Type": "application/fhir+json"},
                                timeout=timeout_s)
        return response.status_code, len(response.content)

    return post


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running service (default: the app in process)")
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES),
                        help="only this shape (repeatable)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="per request, with --url")
    args = parser.parse_args(argv)
    post = _over_http(args.url, args.timeout) if args.url else _in_process()
    print("| bundle | MB | entries | orjson.loads s | answer s (median) | slowest s | status "
          "| answer MB | under 5 s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in args.shape or list(SHAPES):
        bundle = SHAPES[name]()
        data = orjson.dumps(bundle)
        entries = len(bundle["entry"])
        del bundle
        body = _parameters(data)
        assert len(body) <= LIMIT_BYTES and entries <= LIMIT_ENTRIES, (name, len(body), entries)
        loads, answers, status, size = [], [], 0, 0
        for _ in range(args.repeats):
            start = time.perf_counter()
            orjson.loads(data)
            loads.append(time.perf_counter() - start)
            start = time.perf_counter()
            status, size = post(body)
            answers.append(time.perf_counter() - start)
        median = statistics.median(answers)
        print(f"| {name} | {len(body) / 1e6:.1f} | {entries} | "
              f"{statistics.median(loads):.2f} | {median:.2f} | {max(answers):.2f} | {status} "
              f"| {size / 1e6:.1f} | {'yes' if max(answers) < 5 and status == 200 else 'NO'} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
