"""The issuers' public keys: pinned in the issuers file, or fetched from their ``jwks_uri``.

An issuer whose entry holds an inline ``jwks`` is *pinned*: its keys are those, and
nothing is ever fetched for it (whatever ``jku`` its tokens name). Otherwise its
``jwks_uri`` is fetched with a connect and read timeout, at most ``MAX_JWKS_BYTES``
and twice the timeout in total, cached for ``max_age_s`` and refetched at most once
per ``refresh_interval_s`` when an unknown ``kid`` arrives. A failed refetch keeps
the keys already known. No other URL is ever fetched.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
import requests

from .issuers import Issuer

log = logging.getLogger("ipex_screen.security")

MAX_JWKS_BYTES = 256 * 1024


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
class _FetchedSet:
    keys: dict[str, TrustedKey] = field(default_factory=dict)
    fetched_at: float | None = None
    attempted_at: float | None = None


class KeySets:
    """The keys of every trusted issuer: pinned ones as given, remote ones fetched and cached."""

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
        self._pinned: dict[str, dict[str, TrustedKey]] = {}
        self._fetched: dict[str, _FetchedSet] = {}
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._session_pid = 0

    def key(self, issuer: Issuer, kid: str) -> TrustedKey | None:
        """The key ``kid`` of ``issuer``; an unknown kid refetches a remote set at most once."""
        if issuer.jwks is not None:
            pinned = self._pinned.get(issuer.iss)
            if pinned is None:
                pinned = self._pinned.setdefault(issuer.iss, usable_keys(issuer.jwks))
            return pinned.get(kid)
        assert issuer.jwks_uri is not None
        with self._lock:
            state = self._fetched.setdefault(issuer.jwks_uri, _FetchedSet())
            now = self._clock()
            stale = state.fetched_at is None or now - state.fetched_at > self.max_age_s
            if stale and self._may_fetch(state, now):
                self._fetch(issuer.jwks_uri, state, now)
            found = state.keys.get(kid)
            if found is None and self._may_fetch(state, now):
                self._fetch(issuer.jwks_uri, state, now)
                found = state.keys.get(kid)
            return found

    def _may_fetch(self, state: _FetchedSet, now: float) -> bool:
        return state.attempted_at is None or now - state.attempted_at >= self.refresh_interval_s

    def _http(self) -> requests.Session:
        # One session per process: gunicorn forks after the app is built.
        if self._session is None or self._session_pid != os.getpid():
            self._session = requests.Session()
            self._session_pid = os.getpid()
        return self._session

    def _fetch(self, url: str, state: _FetchedSet, now: float) -> None:
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
            try:
                return orjson.loads(bytes(body))
            except orjson.JSONDecodeError:
                raise ValueError("JWK Set is not JSON") from None
