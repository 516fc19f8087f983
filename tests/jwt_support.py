"""Real keys and tokens for the trust tests: EC P-384 (ES384) and RSA 2048 (RS384)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISS = "https://ehr.example.org"
JWKS_URI = "https://ehr.example.org/.well-known/jwks.json"
FHIR_SERVER = "https://ehr.example.org/fhir"
HOSTILE_JKU = "https://attacker.example.net/jwks.json"


@dataclass(frozen=True)
class Signer:
    """A private key, the kid its public half is published under, and its algorithm."""

    private_key: Any
    kid: str
    alg: str

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        key = self.private_key.public_key()
        pem: bytes = key.public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
        return pem

    def token(self, *, aud: str | list[str], iss: str = ISS, lifetime_s: int = 300,
              issued_offset_s: int = 0, headers: dict[str, Any] | None = None,
              drop: tuple[str, ...] = (), kid: str | None = None, **claims: Any) -> str:
        """A compact JWS with the spec's claims; ``drop`` leaves claims out."""
        now = int(time.time()) + issued_offset_s
        payload: dict[str, Any] = {"iss": iss, "aud": aud, "iat": now,
                                   "exp": now + lifetime_s, "jti": str(uuid.uuid4()), **claims}
        for name in drop:
            payload.pop(name, None)
        header = {"typ": "JWT", "kid": kid or self.kid, **(headers or {})}
        return jwt.encode(payload, self.private_key, algorithm=self.alg, headers=header)


def es384_signer(kid: str = "ehr-es384") -> Signer:
    return Signer(ec.generate_private_key(ec.SECP384R1()), kid, "ES384")


def rs384_signer(kid: str = "ehr-rs384", bits: int = 2048) -> Signer:
    return Signer(rsa.generate_private_key(public_exponent=65537, key_size=bits), kid, "RS384")


def jwks(*signers: Signer) -> dict[str, Any]:
    return {"keys": [s.public_jwk() for s in signers]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(*, aud: str, kid: str, iss: str = ISS) -> str:
    """``alg: none``: a header and payload with an empty signature."""
    now = int(time.time())
    header = {"alg": "none", "typ": "JWT", "kid": kid}
    payload = {"iss": iss, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}."


def hs256_with_public_key(signer: Signer, *, aud: str, iss: str = ISS) -> str:
    """The key-confusion attack: HMAC-SHA256 keyed with the issuer's public key PEM."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    payload = {"iss": iss, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    mac = hmac.new(signer.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def write_issuers(path: Path, *, jwks_uri: str | None = JWKS_URI,
                  inline: dict[str, Any] | None = None, tenants: list[str] | None = None,
                  fhir_servers: list[str] | None = None, iss: str = ISS) -> Path:
    issuer: dict[str, Any] = {"iss": iss}
    if inline is not None:
        issuer["jwks"] = inline
    else:
        issuer["jwks_uri"] = jwks_uri
    if tenants is not None:
        issuer["tenants"] = tenants
    if fhir_servers is not None:
        issuer["fhir_servers"] = fhir_servers
    path.write_text(json.dumps({"issuers": [issuer]}), encoding="utf-8")
    return path
