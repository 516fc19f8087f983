"""The JWT verifier against real keys, a JWKS served with ``responses``, and each attack."""

from __future__ import annotations

import json
import sqlite3
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import jwt.warnings
import pytest
import requests
import responses

from service.security.issuers import IssuersFileError, load_issuers, parse_issuers
from service.security.jwt_verify import JwtVerifier, TokenRejected
from service.security.key_sets import KeySets
from service.security.replay import ReplayStore
from service.state.sqlite import SqliteStore
from tests.jwt_support import (
    FHIR_SERVER,
    HOSTILE_JKU,
    ISS,
    JWKS_URI,
    Signer,
    es384_signer,
    hs256_with_public_key,
    jwks,
    rs384_signer,
    unsigned_token,
)

AUD = "https://ipex.example.org/cds-services/ipex-foxp3-screen"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def jwks_server(es384: Signer, rs384: Signer) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JWKS_URI, json=jwks(es384, rs384))
        mock.get(HOSTILE_JKU, json=jwks(es384, rs384))
        yield mock


def _replay(path: Path, *, clock: Clock | None = None) -> ReplayStore:
    if clock is None:
        return ReplayStore(SqliteStore(path, timeout_s=2))
    return ReplayStore(SqliteStore(path, timeout_s=2), clock=clock)


def _issuers(**extra: Any) -> dict[str, Any]:
    return parse_issuers({"issuers": [{"iss": ISS, "jwks_uri": JWKS_URI, **extra}]},
                         source="test")


def _verifier(tmp_path: Path, *, clock: Clock | None = None, **extra: Any) -> JwtVerifier:
    key_sets = KeySets(timeout_s=2.5, refresh_interval_s=60, clock=clock or Clock())
    return JwtVerifier(_issuers(**extra), replay=_replay(tmp_path / "state.sqlite3"),
                       key_sets=key_sets)


def _rejected(verifier: JwtVerifier, token: str, *, fhir_server: str | None = None) -> str:
    with pytest.raises(TokenRejected) as caught:
        verifier.verify(token, audience=AUD, fhir_server=fhir_server)
    return caught.value.reason


# --- accepted --------------------------------------------------------------------


def test_es384_and_rs384_tokens_are_accepted_and_the_jwks_fetch_has_a_timeout(
    tmp_path: Path, es384: Signer, rs384: Signer, jwks_server: responses.RequestsMock
) -> None:
    verifier = _verifier(tmp_path, tenants=["hospital-a"])
    client = verifier.verify(es384.token(aud=AUD, tenant="hospital-a"), audience=AUD)
    assert client.issuer.iss == ISS and client.tenant == "hospital-a"
    verifier.verify(rs384.token(aud=[AUD], tenant="hospital-a"), audience=AUD)
    fetches = [c for c in jwks_server.calls if c.request.url == JWKS_URI]
    assert len(fetches) == 1, "the key set is cached"
    assert fetches[0].request.req_kwargs["timeout"] == (2.5, 2.5)


def test_aud_array_holding_our_url_among_others_is_accepted(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    token = es384.token(aud=["https://other.example.org/cds-services", AUD])
    assert _verifier(tmp_path).verify(token, audience=AUD).issuer.iss == ISS


def test_jku_equal_to_the_configured_jwks_uri_is_accepted(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    token = es384.token(aud=AUD, headers={"jku": JWKS_URI})
    assert _verifier(tmp_path).verify(token, audience=AUD).jti


def test_inline_jwks_needs_no_fetch(tmp_path: Path, es384: Signer) -> None:
    issuers = parse_issuers({"issuers": [{"iss": ISS, "jwks": jwks(es384)}]}, source="test")
    verifier = JwtVerifier(issuers, replay=_replay(tmp_path / "s.sqlite3"),
                           key_sets=KeySets(timeout_s=1))
    with responses.RequestsMock() as mock:  # any request would raise ConnectionError
        assert verifier.verify(es384.token(aud=AUD), audience=AUD).issuer.iss == ISS
        assert not mock.calls


def test_exp_within_the_60_s_leeway_is_accepted(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    token = es384.token(aud=AUD, issued_offset_s=-330, lifetime_s=300)  # expired 30 s ago
    assert _verifier(tmp_path).verify(token, audience=AUD).jti


# --- refused ---------------------------------------------------------------------


def test_forged_signature_is_refused(
    tmp_path: Path, jwks_server: responses.RequestsMock
) -> None:
    forger = es384_signer(kid="ehr-es384")  # same kid, a key the issuer never published
    assert "signature" in _rejected(_verifier(tmp_path), forger.token(aud=AUD))


def test_tampered_payload_is_refused(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    header, _, signature = es384.token(aud=AUD).split(".")
    other_payload = es384.token(aud=AUD, tenant="someone-else").split(".")[1]
    assert "signature" in _rejected(_verifier(tmp_path), f"{header}.{other_payload}.{signature}")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"issued_offset_s": -600, "lifetime_s": 300}, "expired"),
        ({"issued_offset_s": 300}, "not yet valid"),
        ({"nbf": int(time.time()) + 600}, "not yet valid"),
        ({"drop": ("exp",)}, "'exp' is missing"),
        ({"drop": ("iat",)}, "'iat' is missing"),
        ({"drop": ("jti",)}, "'jti' is missing"),
        ({"drop": ("aud",)}, "'aud' is missing"),
        ({"jti": ""}, "jti"),
        ({"aud": "https://ipex.example.org/cds-services"}, "aud"),
        ({"aud": AUD + "/"}, "aud"),
        ({"aud": ["https://other.example.org/cds-services/ipex-foxp3-screen"]}, "aud"),
        ({"aud": []}, "aud"),
        ({"iss": "https://unknown.example.org"}, "not a trusted issuer"),
        ({"headers": {"typ": "at+jwt"}}, "typ"),
        ({"headers": {"jku": HOSTILE_JKU}}, "jku"),
        ({"kid": "never-published"}, "kid"),
    ],
    ids=["expired", "iat-future", "nbf-future", "no-exp", "no-iat", "no-jti", "no-aud",
         "empty-jti", "aud-discovery", "aud-trailing-slash", "aud-array-without-us",
         "aud-empty-array", "unknown-iss", "wrong-typ", "foreign-jku", "unknown-kid"],
)
def test_each_bad_token_is_refused(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock,
    options: dict[str, Any], expected: str,
) -> None:
    options = dict(options)
    claims = {k: v for k, v in options.items()
              if k not in ("issued_offset_s", "lifetime_s", "drop", "headers", "kid")}
    kwargs = {k: v for k, v in options.items() if k not in claims}
    token = es384.token(**{"aud": AUD, **claims, **kwargs})
    assert expected in _rejected(_verifier(tmp_path), token)
    assert not [c for c in jwks_server.calls if c.request.url == HOSTILE_JKU]


def test_alg_none_is_refused_before_any_key_is_fetched(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    reason = _rejected(_verifier(tmp_path), unsigned_token(aud=AUD, kid=es384.kid))
    assert "'none' is not allowed" in reason
    assert not jwks_server.calls


def test_hs256_keyed_with_the_public_key_is_refused(
    tmp_path: Path, rs384: Signer, jwks_server: responses.RequestsMock
) -> None:
    reason = _rejected(_verifier(tmp_path), hs256_with_public_key(rs384, aud=AUD))
    assert "'HS256' is not allowed" in reason


def test_a_token_whose_alg_does_not_fit_its_key_is_refused(
    tmp_path: Path, es384: Signer, rs384: Signer, jwks_server: responses.RequestsMock
) -> None:
    # Signed with the RSA key but naming the EC key's kid: the EC key cannot verify RS384.
    assert "does not fit" in _rejected(_verifier(tmp_path), rs384.token(aud=AUD, kid=es384.kid))


def test_rsa_keys_under_2048_bits_are_refused(tmp_path: Path) -> None:
    weak = rs384_signer(kid="weak", bits=1024)
    issuers = parse_issuers({"issuers": [{"iss": ISS, "jwks": jwks(weak)}]}, source="test")
    verifier = JwtVerifier(issuers, replay=_replay(tmp_path / "s.sqlite3"),
                           key_sets=KeySets(timeout_s=1))
    with warnings.catch_warnings():  # PyJWT warns when signing with the weak key
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        token = weak.token(aud=AUD)
    assert "does not fit" in _rejected(verifier, token)


def test_replayed_jti_is_refused_across_workers(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    token = es384.token(aud=AUD)
    worker_a, worker_b = _verifier(tmp_path), _verifier(tmp_path)  # one state DB, two stores
    worker_a.verify(token, audience=AUD)
    assert "replay" in _rejected(worker_b, token)
    assert "replay" in _rejected(worker_a, token)


def test_a_forged_token_does_not_burn_the_real_jti(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    verifier = _verifier(tmp_path)
    real = es384.token(aud=AUD, jti="shared-jti")
    forged = es384_signer(kid=es384.kid).token(aud=AUD, jti="shared-jti")
    _rejected(verifier, forged)
    assert verifier.verify(real, audience=AUD).jti == "shared-jti"


def test_replay_rows_are_kept_until_expiry_then_pruned(tmp_path: Path) -> None:
    clock = Clock()
    store = _replay(tmp_path / "state.sqlite3", clock=clock)
    assert store.first_use(iss=ISS, jti="a", keep_until=1100)
    assert not store.first_use(iss=ISS, jti="a", keep_until=1100)
    assert store.first_use(iss="https://other.example.org", jti="a", keep_until=1100)
    clock.now = 1200.0  # both rows expired; the next write prunes them
    assert store.first_use(iss=ISS, jti="b", keep_until=1300)
    assert store.count() == 1
    with sqlite3.connect(tmp_path / "state.sqlite3") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unknown_kid_refreshes_once_per_interval_then_401(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    clock = Clock()
    verifier = _verifier(tmp_path, clock=clock)
    verifier.verify(es384.token(aud=AUD), audience=AUD)  # fetch 1
    stranger = es384.token(aud=AUD, kid="rotated-in")
    assert "kid" in _rejected(verifier, stranger)  # within the interval: no refetch
    assert len(jwks_server.calls) == 1
    clock.now += 61
    assert "kid" in _rejected(verifier, es384.token(aud=AUD, kid="rotated-in"))
    assert "kid" in _rejected(verifier, es384.token(aud=AUD, kid="rotated-in"))
    assert len(jwks_server.calls) == 2, "one refresh, not one per token"


def test_a_rotated_key_is_picked_up_on_refresh(tmp_path: Path, es384: Signer) -> None:
    clock = Clock()
    verifier = _verifier(tmp_path, clock=clock)
    rotated = es384_signer(kid="2027-key")
    with responses.RequestsMock() as mock:
        mock.get(JWKS_URI, json=jwks(es384))
        verifier.verify(es384.token(aud=AUD), audience=AUD)
        mock.replace(responses.GET, JWKS_URI, json=jwks(es384, rotated))
        clock.now += 61
        assert verifier.verify(rotated.token(aud=AUD), audience=AUD).jti
        assert len(mock.calls) == 2


def test_jwks_outage_is_a_401_and_keeps_known_keys(tmp_path: Path, es384: Signer) -> None:
    clock = Clock()
    verifier = _verifier(tmp_path, clock=clock)
    with responses.RequestsMock() as mock:
        mock.get(JWKS_URI, body=requests.ConnectTimeout("slow"))
        assert "kid" in _rejected(verifier, es384.token(aud=AUD))
    with responses.RequestsMock() as mock:
        mock.get(JWKS_URI, json=jwks(es384))
        clock.now += 61
        verifier.verify(es384.token(aud=AUD), audience=AUD)
        mock.replace(responses.GET, JWKS_URI, status=503)
        clock.now += 4000  # the cache is stale; the refetch fails; the known key still works
        verifier.verify(es384.token(aud=AUD), audience=AUD)
        assert len(mock.calls) == 2


def test_oversized_jwks_is_not_used(tmp_path: Path, es384: Signer) -> None:
    padded = jwks(es384)
    padded["padding"] = "x" * (300 * 1024)
    with responses.RequestsMock() as mock:
        mock.get(JWKS_URI, body=json.dumps(padded))
        assert "kid" in _rejected(_verifier(tmp_path), es384.token(aud=AUD))


def test_tenant_allowlist(tmp_path: Path, es384: Signer,
                          jwks_server: responses.RequestsMock) -> None:
    verifier = _verifier(tmp_path, tenants=["hospital-a"])
    assert "tenant" in _rejected(verifier, es384.token(aud=AUD, tenant="hospital-b"))
    assert "tenant" in _rejected(verifier, es384.token(aud=AUD))


@pytest.mark.parametrize(
    ("fhir_server", "accepted"),
    [
        (FHIR_SERVER, True),
        (FHIR_SERVER + "/R4", True),
        (FHIR_SERVER + "-evil", False),
        ("https://ehr.example.org.evil.com/fhir", False),
        ("https://attacker.example.net/fhir", False),
        ("http://ehr.example.org/fhir", False),
    ],
)
def test_fhir_server_must_lie_under_a_listed_server(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock,
    fhir_server: str, accepted: bool,
) -> None:
    verifier = _verifier(tmp_path, fhir_servers=[FHIR_SERVER + "/"])
    token = es384.token(aud=AUD)
    if accepted:
        assert verifier.verify(token, audience=AUD, fhir_server=fhir_server).jti
    else:
        assert "fhirServer" in _rejected(verifier, token, fhir_server=fhir_server)


@pytest.mark.parametrize("junk", ["", "abc", "a.b", "a.b.c", "x" * 20_000 + ".a.b"])
def test_junk_bearer_values_are_refused(tmp_path: Path, junk: str) -> None:
    assert _rejected(_verifier(tmp_path), junk)


# --- the issuers file ------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("not json", "not valid JSON"),
        ({"issuers": []}, "empty"),
        ({"issuer": []}, "'issuers' list"),
        ({"issuers": [{"jwks_uri": JWKS_URI}]}, "iss must be"),
        ({"issuers": [{"iss": ISS}]}, "needs 'jwks' (pinned keys) or 'jwks_uri'"),
        ({"issuers": [{"iss": ISS, "jwks_uri": JWKS_URI, "jwks": {"keys": []}}]}, "JWK Set"),
        ({"issuers": [{"iss": ISS, "jwks_uri": JWKS_URI, "jku": "http://ehr.example.org/j"}]},
         "jku: 'http://ehr.example.org/j' must be an https URL"),
        ({"issuers": [{"iss": ISS, "jwks_uri": JWKS_URI, "jku": []}]}, "jku must be a non-empty"),
        ({"issuers": [{"iss": ISS, "jwks_uri": JWKS_URI, "jku": [7]}]}, "jku must hold only"),
        ({"issuers": [{"iss": ISS, "jwks_uri": "http://ehr.example.org/jwks"}]}, "https"),
        ({"issuers": [{"iss": ISS, "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0",
                                                     "kid": "s"}]}}]}, "symmetric"),
        ({"issuers": [{"iss": ISS, "jwks": {"keys": []}}]}, "JWK Set"),
        ({"issuers": [{"iss": ISS, "jwks_uri": JWKS_URI, "tenants": "a"}]}, "tenants"),
        ({"issuers": [{"iss": ISS, "jwks_uri": JWKS_URI, "fhir_servers": ["ftp://x"]}]},
         "fhir_servers"),
        ({"issuers": [{"iss": ISS, "jwks_uri": JWKS_URI, "audience": "x"}]}, "unknown fields"),
        ({"issuers": [{"iss": ISS, "jwks_uri": JWKS_URI},
                      {"iss": ISS, "jwks_uri": JWKS_URI}]}, "listed twice"),
    ],
)
def test_a_broken_issuers_file_names_the_file_and_the_problem(
    tmp_path: Path, document: Any, expected: str
) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(IssuersFileError) as caught:
        load_issuers(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_a_private_key_in_the_issuers_file_is_refused(tmp_path: Path, es384: Signer) -> None:
    private = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(es384.private_key))
    with pytest.raises(IssuersFileError, match="private key"):
        parse_issuers({"issuers": [{"iss": ISS, "jwks": {"keys": [{**private, "kid": "k"}]}}]},
                      source="test")


def test_a_missing_issuers_file_stops_the_start(tmp_path: Path) -> None:
    from service.app import create_app

    with pytest.raises(IssuersFileError, match="cannot read"):
        create_app({"state_db": str(tmp_path / "s.sqlite3"),
                    "api_issuers_file": str(tmp_path / "absent.json")})


def test_a_key_embedded_in_the_header_is_never_trusted(
    tmp_path: Path, es384: Signer, jwks_server: responses.RequestsMock
) -> None:
    attacker = es384_signer(kid=es384.kid)
    token = attacker.token(aud=AUD, headers={"jwk": attacker.public_jwk(),
                                             "x5u": HOSTILE_JKU})
    assert "signature" in _rejected(_verifier(tmp_path), token)
    assert not [c for c in jwks_server.calls if c.request.url == HOSTILE_JKU]


def test_a_trickling_jwks_server_is_cut_off_at_twice_the_timeout(
    tmp_path: Path, es384: Signer
) -> None:
    import http.server
    import threading

    body = json.dumps(jwks(es384)).encode()

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for index in range(len(body)):  # each byte within the read timeout, never done
                try:
                    self.wfile.write(body[index:index + 1])
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.05)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        issuers = parse_issuers({"issuers": [{"iss": ISS, "jwks_uri": uri}]}, source="test")
        verifier = JwtVerifier(issuers, replay=_replay(tmp_path / "s.sqlite3"),
                               key_sets=KeySets(timeout_s=0.3))
        started = time.monotonic()
        assert "kid" in _rejected(verifier, es384.token(aud=AUD))
        assert time.monotonic() - started < 3.0  # unbounded, it took 12 s
    finally:
        server.shutdown()
        server.server_close()
