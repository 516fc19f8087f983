"""Verify the signed JWT a caller presents (CDS Hooks 2.0 "Trusting CDS Clients").

A token is accepted only when every check passes, in this order (cheap and local first,
the replay mark last so a forged token can never burn a real ``jti``):

1. shape: three parts, at most ``MAX_TOKEN_CHARS``; header ``alg`` on the allowlist
   (never ``none``, never HMAC), ``typ`` JWT when given, ``kid`` present;
2. ``iss`` is a trusted issuer; a ``jku`` header equals that issuer's ``jwks_uri``
   (no other URL is ever fetched);
3. the key named by ``kid`` is in the issuer's JWK Set (fetched with a timeout, cached,
   refreshed at most once per ``refresh_interval_s`` on an unknown ``kid``) and fits ``alg``;
4. signature, ``aud`` (string or array) holding exactly the URL called, ``exp``/``iat``
   required, ``exp``/``iat``/``nbf`` within ``LEEWAY_S``, ``jti`` required;
5. ``tenant`` on the issuer's list when it has one; ``fhirServer`` under one of the
   issuer's ``fhir_servers`` when it lists them;
6. ``jti`` never seen before from this issuer (kept in SQLite, shared by all workers).

Every failure raises :class:`TokenRejected`; its ``reason`` is for the log and never
holds the token.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .issuers import Issuer

log = logging.getLogger("ipex_screen.security")

LEEWAY_S = 60
MAX_TOKEN_CHARS = 16_384
MAX_JWKS_BYTES = 256 * 1024
MIN_RSA_BITS = 2048
# The spec recommends ES384 and RS384; the rest of the ECDSA and RSA families are as
# strong or stronger. HMAC (shared secret) and "none" are refused by the spec.
ALLOWED_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
_CURVE_FOR = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


class TokenRejected(Exception):
    """The caller's token is not trusted; ``reason`` says why (safe to log, never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VerifiedClient:
    """Who called, as a verified token says."""

    issuer: Issuer
    jti: str
    tenant: str | None
    expires_at: int


def _shown(value: Any) -> str:
    """A short, printable rendering of a caller-controlled header value for the log."""
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:40] + "..."
        return repr(text)
    return type(value).__name__


# --- the JWK Sets ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key from an issuer's JWK Set, and the ``alg`` it is declared for, if any."""

    public_key: Any
    declared_alg: str | None


def usable_keys(jwks: Any) -> dict[str, TrustedKey]:
    """The public signing keys of a JWK Set by ``kid``; anything else is passed over."""
    keys: dict[str, TrustedKey] = {}
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        return keys
    for entry in jwks["keys"]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("kty") == "oct" or "d" in entry or entry.get("use", "sig") != "sig":
            continue
        declared = entry.get("alg")
        try:
            public_key = jwt.PyJWK(dict(entry)).key
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
        keys.setdefault(entry["kid"], TrustedKey(public_key,
                                                 declared if isinstance(declared, str) else None))
    return keys


@dataclass(slots=True)
class _KeySetState:
    keys: dict[str, TrustedKey] = field(default_factory=dict)
    fetched_at: float | None = None
    attempted_at: float | None = None


class KeySets:
    """The issuers' public keys: inline ones as given, remote ones fetched and cached."""

    def __init__(
        self,
        *,
        timeout_s: float,
        refresh_interval_s: float = 60.0,
        max_age_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self.refresh_interval_s = refresh_interval_s
        self.max_age_s = max_age_s
        self._clock = clock
        self._states: dict[str, _KeySetState] = {}
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._session_pid = 0

    def key(self, issuer: Issuer, kid: str) -> TrustedKey | None:
        """The key ``kid`` of ``issuer``; an unknown kid refetches the set at most once."""
        if issuer.jwks is not None:
            return usable_keys(issuer.jwks).get(kid)
        assert issuer.jwks_uri is not None
        with self._lock:
            state = self._states.setdefault(issuer.jwks_uri, _KeySetState())
            now = self._clock()
            stale = state.fetched_at is None or now - state.fetched_at > self.max_age_s
            if stale and self._may_fetch(state, now):
                self._fetch(issuer.jwks_uri, state, now)
            found = state.keys.get(kid)
            if found is None and self._may_fetch(state, now):
                self._fetch(issuer.jwks_uri, state, now)
                found = state.keys.get(kid)
            return found

    def _may_fetch(self, state: _KeySetState, now: float) -> bool:
        return state.attempted_at is None or now - state.attempted_at >= self.refresh_interval_s

    def _http(self) -> requests.Session:
        # One session per process: gunicorn forks after the app is built.
        if self._session is None or self._session_pid != os.getpid():
            self._session = requests.Session()
            self._session_pid = os.getpid()
        return self._session

    def _fetch(self, url: str, state: _KeySetState, now: float) -> None:
        state.attempted_at = now
        try:
            document = self._download(url)
        except (requests.RequestException, ValueError) as exc:
            # Keep the keys we had: a JWKS outage must not lock out a known key.
            log.warning("JWKS fetch from %s failed: %s", url, type(exc).__name__)
            return
        state.keys = usable_keys(document)
        state.fetched_at = now

    def _download(self, url: str) -> Any:
        started = time.monotonic()
        with self._http().get(
            url,
            timeout=(self.timeout_s, self.timeout_s),
            stream=True,
            allow_redirects=False,
            headers={"Accept": "application/jwk-set+json, application/json"},
        ) as response:
            if response.status_code != 200:
                raise ValueError(f"status {response.status_code}")
            body = bytearray()
            # The read timeout bounds each read; this bounds the whole trickle and the size.
            # read1 returns what one socket read gives, so a byte-a-second server is noticed.
            raw = response.raw
            while chunk := raw.read1(16_384, decode_content=True):
                body.extend(chunk)
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWK Set larger than the limit")
                if time.monotonic() - started > 2 * self.timeout_s:
                    raise ValueError("JWK Set download too slow")
            return _json(bytes(body))


def _json(data: bytes) -> Any:
    import orjson

    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValueError("JWK Set is not JSON") from None


# --- the replay store --------------------------------------------------------------


class ReplayStore:
    """Every ``jti`` seen, until its token expires, in SQLite (shared by all workers)."""

    PRUNE_EVERY_S = 60.0

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self._clock = clock
        self._ready_pid = 0
        self._pruned_at = 0.0
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        if self._ready_pid != os.getpid():
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS jwt_replay ("
                " iss TEXT NOT NULL, jti TEXT NOT NULL, exp INTEGER NOT NULL,"
                " PRIMARY KEY (iss, jti))"
            )
            connection.execute("CREATE INDEX IF NOT EXISTS jwt_replay_exp ON jwt_replay (exp)")
            self._ready_pid = os.getpid()
        return connection

    def first_use(self, *, iss: str, jti: str, keep_until: int) -> bool:
        """Record ``jti``; False when it was already used by a token still alive."""
        now = int(self._clock())
        with self._lock:
            connection = self._connect()
            try:
                cursor = connection.execute(
                    "INSERT INTO jwt_replay (iss, jti, exp) VALUES (?, ?, ?)"
                    " ON CONFLICT (iss, jti) DO UPDATE SET exp = excluded.exp"
                    " WHERE jwt_replay.exp < ?",
                    (iss, jti, keep_until, now),
                )
                fresh = cursor.rowcount == 1
                if now - self._pruned_at >= self.PRUNE_EVERY_S:
                    connection.execute("DELETE FROM jwt_replay WHERE exp < ?", (now,))
                    self._pruned_at = now
            finally:
                connection.close()
        return fresh

    def count(self) -> int:
        """How many ``jti`` are kept (for tests and operators)."""
        connection = self._connect()
        try:
            row = connection.execute("SELECT COUNT(*) FROM jwt_replay").fetchone()
        finally:
            connection.close()
        return int(row[0])


# --- the verifier ------------------------------------------------------------------


def _key_fits(key: TrustedKey, alg: str) -> bool:
    """True when the key is declared for ``alg`` (or for nothing) and of its family and size."""
    if key.declared_alg not in (None, alg):
        return False
    public = key.public_key
    if alg.startswith("ES"):
        return isinstance(public, ec.EllipticCurvePublicKey) and isinstance(
            public.curve, _CURVE_FOR[alg]
        )
    return isinstance(public, rsa.RSAPublicKey) and public.key_size >= MIN_RSA_BITS


_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not yet valid (iat or nbf in the future)"),
    (jwt.InvalidAudienceError, "aud does not hold the URL called"),
    (jwt.InvalidIssuerError, "iss does not match"),
    (jwt.MissingRequiredClaimError, "a required claim is missing"),
    (jwt.InvalidSignatureError, "the signature does not verify"),
    (jwt.InvalidIssuedAtError, "iat is not a number"),
    (jwt.InvalidAlgorithmError, "the algorithm is not allowed"),
)


def _reason(error: jwt.PyJWTError) -> str:
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            if isinstance(error, jwt.MissingRequiredClaimError):
                return f"the required claim {error.claim!r} is missing"
            return reason
    return f"the token is not valid ({type(error).__name__})"


class JwtVerifier:
    """Check bearer tokens against one set of trusted issuers."""

    def __init__(
        self,
        issuers: Mapping[str, Issuer],
        *,
        replay: ReplayStore,
        key_sets: KeySets,
        leeway_s: int = LEEWAY_S,
    ) -> None:
        self.issuers = dict(issuers)
        self.replay = replay
        self.key_sets = key_sets
        self.leeway_s = min(leeway_s, LEEWAY_S)

    def verify(self, token: str, *, audience: str, fhir_server: str | None = None
               ) -> VerifiedClient:
        """Return the verified caller, or raise :class:`TokenRejected`."""
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise TokenRejected("the bearer value is not a compact JWS")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRejected("the token header or payload cannot be decoded") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise TokenRejected(f"algorithm {_shown(alg)} is not allowed")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise TokenRejected(f"typ {_shown(typ)} is not JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the header has no kid")
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise TokenRejected(f"iss {_shown(iss)} is not a trusted issuer")
        if "jku" in header and (issuer.jwks_uri is None or header["jku"] != issuer.jwks_uri):
            raise TokenRejected(f"jku is not the jwks_uri configured for {issuer.iss}")
        key = self.key_sets.key(issuer, kid)
        if key is None:
            raise TokenRejected(f"kid {_shown(kid)} is not in the key set of {issuer.iss}")
        if not _key_fits(key, alg):
            raise TokenRejected(f"key {_shown(kid)} does not fit algorithm {alg}")
        try:
            claims = jwt.decode(
                token,
                key=key.public_key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer.iss,
                leeway=self.leeway_s,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "strict_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(_reason(exc)) from None
        return self._check_claims(claims, issuer, fhir_server=fhir_server)

    def _check_claims(self, claims: Mapping[str, Any], issuer: Issuer, *,
                      fhir_server: str | None) -> VerifiedClient:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 512:
            raise TokenRejected("jti must be a non-empty string")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise TokenRejected("exp must be a number")
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise TokenRejected("tenant must be a string")
        if issuer.tenants is not None and tenant not in issuer.tenants:
            raise TokenRejected(f"tenant {_shown(tenant)} is not allowed for {issuer.iss}")
        if fhir_server is not None and not issuer.allows_fhir_server(fhir_server):
            raise TokenRejected(f"fhirServer is not one of the servers listed for {issuer.iss}")
        keep_until = int(exp) + self.leeway_s
        try:
            fresh = self.replay.first_use(iss=issuer.iss, jti=jti, keep_until=keep_until)
        except sqlite3.Error as exc:
            # Fail closed: without the store a replay could not be told from a first use.
            log.error("JWT replay store unavailable: %s", type(exc).__name__)
            raise TokenRejected("the replay store is unavailable") from None
        if not fresh:
            raise TokenRejected(f"jti already used (replay) for {issuer.iss}")
        return VerifiedClient(issuer=issuer, jti=jti, tenant=tenant, expires_at=int(exp))
