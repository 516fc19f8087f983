"""Pinned keys and ``jku``: the CDS Hooks Sandbox's tokens are trusted with no fetch.

The sandbox (https://sandbox.cds-hooks.org) signs every call ES384 with a header
``{"alg", "typ": "JWT", "kid", "jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"}``
and claims ``iss``, ``aud`` (the service URL), ``exp`` (+300 s), ``iat`` and ``jti``.
A hospital pins its public key in the issuers file and names that ``jku``; the
service then verifies with the pinned key and never opens a connection, which the
tests prove with a socket guard as well as ``responses``.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import responses

from service.app import create_app
from service.security.issuers import parse_issuers
from service.security.jwt_verify import JwtVerifier, TokenRejected
from service.security.key_sets import KeySets
from service.security.replay import ReplayStore
from service.state.sqlite import SqliteStore

from .cds_support import classic_call
from .conftest import TESTS, load_json
from .fixed_clock import FixedClock
from .jwt_support import Signer, es384_signer, jwks

SANDBOX = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
PUBLIC = "https://ipex.example.org"
SERVICE = "/cds-services/ipex-foxp3-screen"


@pytest.fixture(scope="module")
def sandbox() -> Signer:
    return es384_signer(kid=SANDBOX_KID)


def sandbox_token(signer: Signer, *, aud: str, jku: str = SANDBOX_JKU) -> str:
    """A token shaped exactly like the sandbox's: these header fields, these claims."""
    now = int(time.time())
    payload = {"iss": SANDBOX, "aud": aud, "exp": now + 300, "iat": now,
               "jti": str(uuid.uuid4())}
    header = {"alg": "ES384", "typ": "JWT", "kid": signer.kid, "jku": jku}
    token = jwt.encode(payload, signer.private_key, algorithm="ES384", headers=header)
    assert jwt.get_unverified_header(token) == header
    return token


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Fail any outbound connection, and any request made through ``requests``."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("outbound connection attempted in a no-network test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield attempts
        assert not mock.calls
    assert attempts == [], f"connections were attempted: {attempts}"


def _issuers(signer: Signer, **entry: Any) -> dict[str, Any]:
    return {"issuers": [{"iss": SANDBOX, "jwks": jwks(signer), **entry}]}


def _verifier(tmp_path: Path, document: dict[str, Any]) -> JwtVerifier:
    return JwtVerifier(parse_issuers(document, source="test"),
                       replay=ReplayStore(SqliteStore(tmp_path / "s.sqlite3", timeout_s=2)),
                       key_sets=KeySets(timeout_s=1))


@pytest.mark.parametrize("entry", [
    {"jku": [SANDBOX_JKU]},
    {"jku": SANDBOX_JKU},
    {"jwks_uri": SANDBOX_JKU},
    {"jwks_uri": SANDBOX_JKU, "jku": ["https://sandbox.cds-hooks.org/keys-2027.json"]},
], ids=["jku-list", "jku-string", "jwks_uri-pinned", "jwks_uri-and-jku"])
def test_a_listed_jku_is_verified_against_the_pinned_keys_with_no_fetch(
        tmp_path: Path, sandbox: Signer, no_network: list[Any], entry: dict[str, Any]) -> None:
    verifier = _verifier(tmp_path, _issuers(sandbox, **entry))
    aud = PUBLIC + SERVICE
    client = verifier.verify(sandbox_token(sandbox, aud=aud), audience=aud)
    assert client.issuer.iss == SANDBOX and client.issuer.pinned


@pytest.mark.parametrize("jku", [
    "https://attacker.example.net/.well-known/jwks.json",
    "https://sandbox.cds-hooks.org/.well-known/jwks.json?x=1",
    "https://sandbox.cds-hooks.org.attacker.example.net/.well-known/jwks.json",
    "http://sandbox.cds-hooks.org/.well-known/jwks.json",
])
def test_a_jku_not_listed_is_refused_and_never_fetched(
        tmp_path: Path, sandbox: Signer, jku: str) -> None:
    verifier = _verifier(tmp_path, _issuers(sandbox, jku=[SANDBOX_JKU]))
    aud = PUBLIC + SERVICE
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(jku, json=jwks(sandbox))
        with pytest.raises(TokenRejected) as refused:
            verifier.verify(sandbox_token(sandbox, aud=aud, jku=jku), audience=aud)
        assert not mock.calls
    assert "jku" in refused.value.reason


def test_pinned_keys_without_a_listed_jku_refuse_a_token_that_names_one(
        tmp_path: Path, sandbox: Signer, no_network: list[Any]) -> None:
    verifier = _verifier(tmp_path, _issuers(sandbox))
    aud = PUBLIC + SERVICE
    with pytest.raises(TokenRejected, match="jku"):
        verifier.verify(sandbox_token(sandbox, aud=aud), audience=aud)


def test_a_token_the_real_sandbox_signed_passes_every_check_but_its_age(
        tmp_path: Path, no_network: list[Any]) -> None:
    """The sandbox's published key and one of its real tokens (2020): all but ``exp`` pass."""
    real = load_json(TESTS / "data" / "cds" / "sandbox-2020-token.json")
    assert jwt.get_unverified_header(real["token"]) == {
        "alg": "ES384", "typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}
    document = {"issuers": [{"iss": real["iss"], "jwks": real["jwks"], "jku": [real["jku"]]}]}
    with pytest.raises(TokenRejected) as refused:
        _verifier(tmp_path, document).verify(real["token"], audience=real["aud"])
    assert refused.value.reason == "the token has expired"  # checked after the signature
    forged = real["token"][:-8] + ("A" * 8 if not real["token"].endswith("A" * 8) else "B" * 8)
    with pytest.raises(TokenRejected) as bad_signature:
        _verifier(tmp_path, document).verify(forged, audience=real["aud"])
    assert bad_signature.value.reason == "the signature does not verify"


def test_a_sandbox_call_gets_its_card_with_no_outbound_request(
        tmp_path: Path, sandbox: Signer, monkeypatch: pytest.MonkeyPatch) -> None:
    issuers = tmp_path / "cds-issuers.json"
    issuers.write_text(json.dumps(_issuers(sandbox, jku=[SANDBOX_JKU])), encoding="utf-8")
    clock = FixedClock()
    app = create_app({"state_db": str(tmp_path / "state.sqlite3"),
                      "cds_issuers_file": str(issuers), "public_base_url": PUBLIC,
                      "bind_host": "0.0.0.0"}, today=clock.today, now=clock.now)
    call = classic_call(clock)
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("outbound connection attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        token = sandbox_token(sandbox, aud=PUBLIC + SERVICE)
        answer = app.test_client().post(SERVICE, json=call,
                                        headers={"Authorization": f"Bearer {token}"})
        assert not mock.calls
    assert attempts == []
    assert answer.status_code == 200
    (card,) = answer.get_json()["cards"]
    assert card["indicator"] == "warning"
    replayed = app.test_client().post(SERVICE, json=call,
                                      headers={"Authorization": f"Bearer {token}"})
    assert replayed.status_code == 401
