"""SMART Backend Services: a client-assertion JWT signed with our key, for an access token.

The token endpoint comes from ``[base]/.well-known/smart-configuration``. The
assertion (RS384 for an RSA key, ES384 for a P-384 key, ``kid`` from
IPEX_BULK_KEY_ID or the key's RFC 7638 thumbprint) lives five minutes and has a
fresh ``jti``. The token is reused until ``EXPIRY_MARGIN_S`` before it expires,
and fetched again at once when the server answers 401 (expired mid-download).
Neither the token nor the assertion is ever logged or put in a message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from .errors import BulkAuthError, BulkConfigError
from .http import Http, json_body

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 300
EXPIRY_MARGIN_S = 30.0
DEFAULT_EXPIRES_IN_S = 300.0


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    algorithm: str
    kid: str


def load_signing_key(path: str, kid: str | None) -> SigningKey:
    """Read a PEM private key: RSA -> RS384, EC P-384 -> ES384."""
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise BulkConfigError(f"IPEX_BULK_KEY_FILE {path}: cannot be read: "
                              f"{exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise BulkConfigError(f"IPEX_BULK_KEY_FILE {path}: not an unencrypted PEM private "
                              f"key ({type(exc).__name__})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        members = {"e": _b64(numbers.e), "kty": "RSA", "n": _b64(numbers.n)}
        algorithm = "RS384"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        point = key.public_key().public_numbers()
        members = {"crv": "P-384", "kty": "EC", "x": _b64(point.x), "y": _b64(point.y)}
        algorithm = "ES384"
    else:
        raise BulkConfigError(f"IPEX_BULK_KEY_FILE {path}: SMART Backend Services needs an "
                              "RSA key (RS384) or an EC P-384 key (ES384)")
    thumbprint = base64.urlsafe_b64encode(hashlib.sha256(
        json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())
    return SigningKey(key, algorithm, kid or thumbprint.rstrip(b"=").decode())


@dataclass(slots=True)
class BackendServicesAuth:
    """Gets and keeps an access token; ``token(refresh=True)`` forces a new one."""

    http: Http
    base_url: str
    client_id: str
    signing_key: SigningKey
    scope: str
    token_endpoint: str | None = None
    _token: str | None = field(default=None, repr=False)
    _refresh_at: float = 0.0
    tokens_fetched: int = 0

    def token(self, refresh: bool = False) -> str:
        now = self.http.clock.monotonic()
        if refresh or self._token is None or now >= self._refresh_at:
            self._fetch()
        assert self._token is not None
        return self._token

    def _discover(self) -> str:
        url = self.base_url.rstrip("/") + "/.well-known/smart-configuration"
        response = self.http.request("GET", url, doing="discovering the token endpoint",
                                     headers={"Accept": "application/json"}, authorised=False)
        config = json_body(response) if response.ok else None
        endpoint = config.get("token_endpoint") if isinstance(config, dict) else None
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            raise BulkAuthError(f"{url} (HTTP {response.status_code}) names no token_endpoint")
        assert isinstance(config, dict)
        algorithms = config.get("token_endpoint_auth_signing_alg_values_supported")
        if isinstance(algorithms, list) and self.signing_key.algorithm not in algorithms:
            raise BulkAuthError(f"the server's token endpoint does not accept "
                                f"{self.signing_key.algorithm} (it lists {algorithms})")
        return endpoint

    def assertion(self, endpoint: str) -> str:
        now = int(self.http.clock.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": endpoint,
                  "iat": now, "exp": now + ASSERTION_LIFETIME_S, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self.signing_key.key, algorithm=self.signing_key.algorithm,
                          headers={"kid": self.signing_key.kid, "typ": "JWT"})

    def _fetch(self) -> None:
        if self.token_endpoint is None:
            self.token_endpoint = self._discover()
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(self.token_endpoint),
        }
        started = self.http.clock.monotonic()
        response = self.http.request("POST", self.token_endpoint, data=form,
                                     doing="getting an access token", authorised=False,
                                     headers={"Accept": "application/json"})
        body: Any = json_body(response)
        if response.status_code != 200 or not isinstance(body, dict) or not isinstance(
                body.get("access_token"), str):
            error = body.get("error") if isinstance(body, dict) else None
            described = body.get("error_description") if isinstance(body, dict) else None
            detail = ": ".join(str(x)[:200] for x in (error, described) if x)
            raise BulkAuthError(f"the token endpoint refused the client assertion "
                                f"(HTTP {response.status_code}{', ' + detail if detail else ''})")
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and (
            expires_in > 0) else DEFAULT_EXPIRES_IN_S
        self._token = body["access_token"]
        self._refresh_at = started + lifetime - min(EXPIRY_MARGIN_S, lifetime / 2)
        self.tokens_fetched += 1
