"""The trusted-issuer file: which signers may call, where their keys are, what they may ask.

    {"issuers": [{"iss": "https://ehr.example.org",
                  "jwks_uri": "https://ehr.example.org/.well-known/jwks.json",  # and/or "jwks"
                  "jwks": {"keys": [...]},                          # pinned: never fetched
                  "jku": ["https://ehr.example.org/jwks"],                      # optional
                  "tenants": ["hospital-a"],                                    # optional
                  "fhir_servers": ["https://ehr.example.org/fhir"]}]}           # optional

Keys come from the inline ``jwks`` when it is given (the issuer's keys are *pinned*:
nothing is fetched for it), else from ``jwks_uri``. A token's ``jku`` header must be
the ``jwks_uri`` or one of the ``jku`` list; it is compared, never fetched.

A file the service cannot use stops the start with :class:`IssuersFileError`
naming the file and the field; it never surfaces on a patient request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

from ..config import ConfigError

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_ISSUER_KEYS = frozenset({"iss", "jwks_uri", "jwks", "jku", "tenants", "fhir_servers"})
_SYMMETRIC_KEY_TYPES = frozenset({"oct"})


class IssuersFileError(ConfigError):
    """The issuers file is missing, not JSON, or names an issuer the service cannot trust."""


@dataclass(frozen=True, slots=True)
class Issuer:
    """One trusted signer: its keys (pinned inline, or by URL), and what it may ask for."""

    iss: str
    jwks_uri: str | None
    jwks: Mapping[str, Any] | None
    tenants: frozenset[str] | None
    fhir_servers: tuple[str, ...]
    jku: frozenset[str] = frozenset()

    @property
    def pinned(self) -> bool:
        """True when the keys are inline: nothing is ever fetched for this issuer."""
        return self.jwks is not None

    def allows_jku(self, value: Any) -> bool:
        """True when a token's ``jku`` header is the ``jwks_uri`` or on the ``jku`` list."""
        return isinstance(value, str) and (value == self.jwks_uri or value in self.jku)

    def allows_fhir_server(self, url: str) -> bool:
        """True when no servers are listed, or ``url`` lies under one of them.

        The match stops at a path boundary, so ``https://ehr.example.org/fhir`` allows
        ``https://ehr.example.org/fhir/R4`` but not ``https://ehr.example.org/fhir-evil``
        nor ``https://ehr.example.org.evil.com``.
        """
        if not self.fhir_servers:
            return True
        for prefix in self.fhir_servers:
            if url == prefix or url.startswith(prefix + "/"):
                return True
        return False


def _is_https_or_loopback(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.netloc or parts.username or parts.password:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK_HOSTS


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise IssuersFileError(f"{where} must be a non-empty list of strings")
    if not all(isinstance(item, str) and item for item in value):
        raise IssuersFileError(f"{where} must hold only non-empty strings")
    return list(value)


def _check_jwks(jwks: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise IssuersFileError(f"{where} must be a JWK Set: an object with a non-empty 'keys' list")
    for index, key in enumerate(jwks["keys"]):
        key_where = f"{where}.keys[{index}]"
        if not isinstance(key, Mapping):
            raise IssuersFileError(f"{key_where} must be an object")
        if key.get("kty") in _SYMMETRIC_KEY_TYPES:
            raise IssuersFileError(f"{key_where} is a symmetric key; only public keys are trusted")
        if "d" in key:
            raise IssuersFileError(f"{key_where} holds a private key; publish only the public key")
        if not isinstance(key.get("kid"), str) or not key["kid"]:
            raise IssuersFileError(f"{key_where} needs a 'kid' (tokens name their key by kid)")
        try:
            jwt.PyJWK(dict(key))
        except jwt.PyJWTError as exc:
            raise IssuersFileError(f"{key_where} is not a usable public key: {exc}") from None
    return jwks


def _issuer(entry: Any, where: str) -> Issuer:
    if not isinstance(entry, Mapping):
        raise IssuersFileError(f"{where} must be an object")
    unknown = set(entry) - _ISSUER_KEYS
    if unknown:
        raise IssuersFileError(f"{where} has unknown fields {sorted(unknown)}")
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss.strip():
        raise IssuersFileError(f"{where}.iss must be a non-empty string")
    jwks_uri = entry.get("jwks_uri")
    jwks = entry.get("jwks")
    if jwks_uri is None and jwks is None:
        raise IssuersFileError(f"{where} needs 'jwks' (pinned keys) or 'jwks_uri' (fetched)")
    if jwks_uri is not None and (
        not isinstance(jwks_uri, str) or not _is_https_or_loopback(jwks_uri)
    ):
        raise IssuersFileError(f"{where}.jwks_uri must be an https URL (http only on loopback)")
    checked_jwks = _check_jwks(jwks, f"{where}.jwks") if jwks is not None else None
    jku = _jku_list(entry.get("jku"), f"{where}.jku")
    tenants = entry.get("tenants")
    fhir_servers = entry.get("fhir_servers")
    servers: tuple[str, ...] = ()
    if fhir_servers is not None:
        listed = _strings(fhir_servers, f"{where}.fhir_servers")
        for url in listed:
            if not _is_https_or_loopback(url):
                raise IssuersFileError(
                    f"{where}.fhir_servers: {url!r} must be an https URL (http only on loopback)"
                )
        servers = tuple(url.rstrip("/") for url in listed)
    return Issuer(
        iss=iss,
        jwks_uri=jwks_uri,
        jwks=checked_jwks,
        tenants=frozenset(_strings(tenants, f"{where}.tenants")) if tenants is not None else None,
        fhir_servers=servers,
        jku=jku,
    )


def _jku_list(value: Any, where: str) -> frozenset[str]:
    """The ``jku`` values an issuer may send: a URL or a list of them (https, or loopback)."""
    if value is None:
        return frozenset()
    listed = [value] if isinstance(value, str) else _strings(value, where)
    for url in listed:
        if not _is_https_or_loopback(url):
            raise IssuersFileError(f"{where}: {url!r} must be an https URL (http only on loopback)")
    return frozenset(listed)


def parse_issuers(document: Any, *, source: str) -> dict[str, Issuer]:
    """Check a parsed issuers document; return the issuers by ``iss``."""
    if not isinstance(document, Mapping) or not isinstance(document.get("issuers"), list):
        raise IssuersFileError(f"{source}: expected an object with an 'issuers' list")
    if not document["issuers"]:
        raise IssuersFileError(f"{source}: 'issuers' is empty; no caller could ever be trusted")
    issuers: dict[str, Issuer] = {}
    for index, entry in enumerate(document["issuers"]):
        issuer = _issuer(entry, f"{source}: issuers[{index}]")
        if issuer.iss in issuers:
            raise IssuersFileError(f"{source}: issuer {issuer.iss!r} is listed twice")
        issuers[issuer.iss] = issuer
    return issuers


def load_issuers(path: str | Path) -> dict[str, Issuer]:
    """Read and check an issuers file; any problem raises :class:`IssuersFileError`."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise IssuersFileError(f"{source}: cannot read the issuers file ({exc.strerror})") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise IssuersFileError(f"{source}: not valid JSON ({exc})") from None
    return parse_issuers(document, source=source)
