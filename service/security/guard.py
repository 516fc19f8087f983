"""The Flask side of trust: read the bearer token, name the audience, decide, log why.

Both protected surfaces go through :func:`verify_request`: the CDS Hooks service and
feedback calls (``IPEX_CDS_ISSUERS_FILE``, a bare 401) and the FHIR operation
(``IPEX_API_ISSUERS_FILE``, a 401 with an OperationOutcome).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import Request, current_app

from ..config import Settings
from ..edge.errors import ServiceUnavailable, Unauthorized
from ..state import StateStore, StateUnavailable
from .issuers import load_issuers
from .jwt_verify import JwtVerifier, TokenRejected, VerifiedClient
from .key_sets import KeySets
from .replay import ReplayStore

log = logging.getLogger("ipex_screen.security")

EXTENSION = "ipex_security"


@dataclass(frozen=True, slots=True)
class Security:
    """The verifiers a running service holds; ``None`` where no issuers file is set."""

    public_base_url: str | None
    cds: JwtVerifier | None
    api: JwtVerifier | None


def build_security(settings: Settings, store: StateStore, *,
                   clock: Callable[[], float]) -> Security:
    """Load the issuers files (a broken one stops the start) and build the verifiers.

    Seen ``jti`` are kept in ``store``; ``clock`` (seconds since the epoch) is the
    replay check's: the runtime's clock.
    """
    replay = ReplayStore(store, clock=clock)

    def verifier(path: str | None) -> JwtVerifier | None:
        if not path:
            return None
        return JwtVerifier(load_issuers(path), replay=replay,
                           key_sets=KeySets(timeout_s=settings.fhir_timeout_s))

    security = Security(
        public_base_url=settings.public_base_url,
        cds=verifier(settings.cds_issuers_file),
        api=verifier(settings.api_issuers_file),
    )
    if (security.cds or security.api) and not settings.public_base_url:
        log.warning("IPEX_PUBLIC_BASE_URL is not set: JWT aud is checked against the Host "
                    "the request names; set it to the URL callers use")
    return security


def security() -> Security:
    found: Security = current_app.extensions[EXTENSION]
    return found


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def audience_for(request: Request, *, public_base_url: str | None) -> str:
    """The URL called: ``IPEX_PUBLIC_BASE_URL`` + path, else the URL the request came to."""
    base = public_base_url.rstrip("/") if public_base_url else request.host_url.rstrip("/")
    return base + request.path


def verify_request(request: Request, verifier: JwtVerifier, *,
                   fhir_server: str | None = None) -> VerifiedClient:
    """Verify the request's bearer token; log the reason (never the token) and re-raise."""
    try:
        token = bearer_token(request)
        if token is None:
            raise TokenRejected("no Authorization: Bearer header")
        client = verifier.verify(
            token,
            audience=audience_for(request, public_base_url=security().public_base_url),
            fhir_server=fhir_server,
        )
    except TokenRejected as exc:
        log.warning("JWT rejected on %s %s: %s", request.method, request.path, exc.reason)
        raise
    log.info("JWT accepted on %s %s from %s", request.method, request.path, client.issuer.iss)
    return client


def require_api_caller(request: Request) -> VerifiedClient | None:
    """Check the FHIR operation's caller when ``IPEX_API_ISSUERS_FILE`` is set (else open)."""
    verifier = security().api
    if verifier is None:
        return None
    try:
        return verify_request(request, verifier)
    except TokenRejected:
        raise Unauthorized(
            "a valid signed JWT from a trusted issuer is required "
            "(Authorization: Bearer); the reason is in the service log"
        ) from None
    except StateUnavailable:
        raise ServiceUnavailable(
            "the service cannot check JWT replays now: its state store is unavailable; "
            "nothing was screened; try again shortly") from None


def verify_cds_call(request: Request, *, fhir_server: str | None = None) -> VerifiedClient:
    """Check a CDS Hooks call when the auth mode is ``jwt``; raise TokenRejected (-> bare 401)."""
    verifier = security().cds
    if verifier is None:
        log.warning("JWT rejected on %s %s: no CDS issuers file is configured",
                    request.method, request.path)
        raise TokenRejected("no CDS issuers file is configured")
    return verify_request(request, verifier, fhir_server=fhir_server)
