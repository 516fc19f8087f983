"""A misbehaving FHIR server cannot stretch a CDS call past its budget, nor its memory.

Each misbehaviour of issue 17 against a stand-in server on a real loopback socket:
a byte at a time in the headers or the body (one deadline for every read), answers
larger than ``IPEX_FHIR_MAX_MB`` (announced, chunked, or summed over pages), more
entries than ``IPEX_FHIR_MAX_ENTRIES``, a ``next`` link back to a page already read,
and a worker's peak memory while a server sends the issue's 51 MB self-referencing
pages or dense pages built to inflate when parsed. Every one is a 412 naming why.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from .cds_support import SERVICE, cds_app, hook_call
from .fhir_standin import Answer, StandIn

PID = "baby1"
PATIENT = {"resourceType": "Patient", "id": PID, "gender": "male", "birthDate": "2025-01-01"}


def _page(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    page: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                            "entry": [{"resource": r} for r in resources]}
    if next_url:
        page["link"] = [{"relation": "next", "url": next_url}]
    return page


def _condition(n: int, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": f"c{n}", "subject": {"reference": f"Patient/{PID}"},
            "code": {"text": "x"}, **extra}


def _call(base: str) -> dict[str, Any]:
    # Only Conditions are fetched; the rest is given, so each test drives one search.
    return hook_call(PID, fhir_server=base, prefetch={
        "patient": PATIENT, "observations": None, "orders": None})


def _post(tmp_path: Path, base: str, **settings: Any) -> tuple[int, str, float]:
    client = cds_app(tmp_path, **settings).test_client()
    started = time.monotonic()
    response = client.post(SERVICE, json=_call(base))
    return response.status_code, response.get_json().get("error", ""), \
        time.monotonic() - started


def _tls_context(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and its file."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_trickling_server_is_cut_off_at_the_budget(tmp_path: Path, where: str) -> None:
    # A byte every 0.1 s: every read returns long before the 3 s read timeout.
    body = orjson.dumps(_page([_condition(1)]))
    pause = {"trickle_headers_s": 0.1} if where == "headers" else {"trickle_body_s": 0.1}
    with StandIn({"/fhir/Condition": Answer(body, **pause)}) as ehr:
        status, error, elapsed = _post(tmp_path, ehr.base, cds_budget_s=1.0,
                                       fhir_timeout_s=3.0)
    assert status == 412 and "IPEX_CDS_BUDGET_S" in error
    assert 0.9 < elapsed < 1.0 + 1.0  # the bound: the budget + 1 s


def test_over_tls_a_fast_server_is_read_and_a_trickling_one_cut_at_the_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # EHR FHIR servers speak https: the deadline wraps the TLS socket too.
    context, cert = _tls_context(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # trust_env: the operator's CA
    body = orjson.dumps(_page([_condition(1)]))
    with StandIn({"/fhir/Condition": Answer(body)}, tls=context) as ehr:
        status, error, _ = _post(tmp_path, ehr.base)
    assert ehr.base.startswith("https://")
    assert status == 200, error
    with StandIn({"/fhir/Condition": Answer(body, trickle_body_s=0.1)}, tls=context) as ehr:
        status, error, elapsed = _post(tmp_path, ehr.base, cds_budget_s=1.0,
                                       fhir_timeout_s=3.0)
    assert status == 412 and "IPEX_CDS_BUDGET_S" in error
    assert elapsed < 1.0 + 1.0


def test_the_deadline_spans_every_read_of_the_call(tmp_path: Path) -> None:
    # Each page alone takes 0.4 s (well under the read timeout); the pages together
    # pass the 1 s budget, and the call ends there rather than after the last page.
    def page(target: str) -> Answer:
        n = int(target.rsplit("=", 1)[1]) if "page=" in target else 0
        nxt = f"/fhir/Condition?patient={PID}&page={n + 1}"
        return Answer(orjson.dumps(_page([_condition(n)], nxt)), trickle_body_s=0.04,
                      piece=len(orjson.dumps(_page([_condition(n)], nxt))) // 10 + 1)

    with StandIn({"/fhir/Condition": page}) as ehr:
        status, error, elapsed = _post(tmp_path, ehr.base, cds_budget_s=1.0,
                                       fhir_timeout_s=3.0)
    assert status == 412 and "IPEX_CDS_BUDGET_S" in error
    assert elapsed < 1.0 + 1.0
    assert 2 <= len(ehr.seen) <= 4


def test_an_answer_announced_larger_than_the_cap_is_refused_unread(tmp_path: Path) -> None:
    big = orjson.dumps(_page([_condition(1, note=[{"text": "x" * (3 << 20)}])]))
    with StandIn({"/fhir/Condition": Answer(big)}) as ehr:
        status, error, _ = _post(tmp_path, ehr.base, fhir_max_mb=2)
    assert status == 412 and "IPEX_FHIR_MAX_MB" in error


def test_a_chunked_answer_is_cut_at_the_cap(tmp_path: Path) -> None:
    big = orjson.dumps(_page([_condition(1, note=[{"text": "x" * (3 << 20)}])]))
    with StandIn({"/fhir/Condition": Answer(big, chunked=True)}) as ehr:
        status, error, _ = _post(tmp_path, ehr.base, fhir_max_mb=2)
    assert status == 412 and "IPEX_FHIR_MAX_MB" in error


def test_bytes_are_summed_over_the_pages_of_a_call(tmp_path: Path) -> None:
    # Each page is 0.6 MB, under the 2 MB cap alone; the fourth passes it.
    def page(target: str) -> Answer:
        n = int(target.rsplit("=", 1)[1]) if "page=" in target else 0
        resource = _condition(n, note=[{"text": "x" * 600_000}])
        return Answer(orjson.dumps(_page([resource], f"/fhir/Condition?page={n + 1}")))

    with StandIn({"/fhir/Condition": page}) as ehr:
        status, error, _ = _post(tmp_path, ehr.base, fhir_max_mb=2)
    assert status == 412 and "IPEX_FHIR_MAX_MB" in error
    assert len(ehr.seen) == 4


def test_entries_are_summed_over_the_pages_of_a_call(tmp_path: Path) -> None:
    def page(target: str) -> Answer:
        n = int(target.rsplit("=", 1)[1]) if "page=" in target else 0
        batch = [_condition(n * 40 + i) for i in range(40)]
        return Answer(orjson.dumps(_page(batch, f"/fhir/Condition?page={n + 1}")))

    with StandIn({"/fhir/Condition": page}) as ehr:
        status, error, _ = _post(tmp_path, ehr.base, fhir_max_entries=100)
    assert status == 412 and "IPEX_FHIR_MAX_ENTRIES" in error
    assert len(ehr.seen) == 3  # 40, 80, then 120 > 100


@pytest.mark.parametrize("link", ["self", "earlier"])
def test_a_next_link_back_to_a_page_already_read_is_not_followed(tmp_path: Path,
                                                                 link: str) -> None:
    def page(target: str) -> Answer:
        if link == "self" or "page=" in target:
            back = target  # itself; or page 2 pointing back at itself
        else:
            back = "/fhir/Condition?page=2"
        return Answer(orjson.dumps(_page([_condition(1)], back)))

    with StandIn({"/fhir/Condition": page}) as ehr:
        status, error, _ = _post(tmp_path, ehr.base)
    assert status == 412 and "page already read" in error
    assert len(ehr.seen) == (1 if link == "self" else 2)
    assert len(set(ehr.seen)) == len(ehr.seen)  # no page read twice


# ---------------------------------------------------------------- memory

_MEASURE = textwrap.dedent("""
    import json, pathlib, sys
    from tests.cds_support import SERVICE, cds_app

    def hwm():  # VmHWM: this process's peak (ru_maxrss would carry the parent's over fork)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    state, call = pathlib.Path(sys.argv[1]), json.loads(sys.argv[2])
    client = cds_app(state).test_client()
    before = hwm()
    response = client.post(SERVICE, json=call)
    peak = hwm()
    print(json.dumps({"status": response.status_code, "error": response.get_json().get("error"),
                      "before_mb": before, "peak_mb": peak}))
""")


def _peak(tmp_path: Path, base: str) -> dict[str, Any]:
    """Run one CDS call in a fresh process (as a worker would) and read its peak RSS."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path),
                           json.dumps(_call(base))], cwd=root, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _self_referencing_51_mb(target: str) -> Answer:
    # The page: valid, 51 MB, its next link pointing back to itself.
    resources = [_condition(i, note=[{"text": "x" * 1000}]) for i in range(50_000)]
    return Answer(orjson.dumps(_page(resources, target)), chunked=True)


def _inflating(target: str) -> Answer:
    # Dense empty arrays: about 28 bytes of memory per byte of JSON once parsed, the
    # worst ratio orjson gives; 1.9 MB pages, each pointing to the next, so three of
    # them (5.7 MB) are read and kept before the 6 MB default cap refuses the fourth.
    n = int(target.rsplit("=", 1)[1]) if "page=" in target else 0
    junk = _condition(n) | {"extension": [[]] * 633_000}
    return Answer(orjson.dumps(_page([junk], f"/fhir/Condition?page={n + 1}")))


@pytest.mark.parametrize("serve", [_self_referencing_51_mb, _inflating],
                         ids=["51MB-self-referencing-pages", "inflating-pages"])
def test_a_worker_stays_under_300_mb_whatever_the_server_sends(tmp_path: Path,
                                                               serve: Any) -> None:
    with StandIn({"/fhir/Condition": serve}) as ehr:
        result = _peak(tmp_path, ehr.base)
    assert result["status"] == 412
    assert "IPEX_FHIR_MAX_MB" in result["error"] or "page already read" in result["error"]
    assert result["peak_mb"] < 300, result
