"""Who may call the CDS service and its feedback: the mode gate (contract, "Authentication").

    IPEX_CDS_AUTH=off                    -> "off": every call accepted; Authorization ignored
    IPEX_CDS_AUTH=jwt, or an issuers file -> "jwt": a signed JWT, checked by security.guard
    neither, loopback or no bind host    -> "off" (a local run, tests)
    neither, any other bind host         -> "closed": a bare 401 to every call

:func:`require_trusted` raises :class:`NotTrusted` (a bare 401) for a refused call.

Discovery and CORS preflights are never gated. The mode and why are logged once,
when the app is built.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Literal

from flask import Request

from ..config import Settings
from ..edge.errors import NotTrusted
from ..security.guard import verify_cds_call
from ..security.jwt_verify import TokenRejected

log = logging.getLogger("ipex_screen.cds")

Mode = Literal["off", "jwt", "closed"]


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def auth_mode(settings: Settings) -> Mode:
    """The gate the settings give (see the module docstring)."""
    if settings.cds_auth == "off":
        return "off"
    if settings.cds_auth == "jwt" or settings.cds_issuers_file:
        return "jwt"
    if settings.bind_host is None or is_loopback(settings.bind_host):
        return "off"
    return "closed"


def announce(settings: Settings, mode: Mode) -> None:
    """Say once, at start, how CDS Hooks callers are checked."""
    if mode == "closed":
        log.warning(
            "CDS Hooks calls will be refused (401): the service listens on a non-loopback "
            "host and neither IPEX_CDS_ISSUERS_FILE nor IPEX_CDS_AUTH is set; set "
            "IPEX_CDS_ISSUERS_FILE to trust EHR issuers, or IPEX_CDS_AUTH=off to accept "
            "unauthenticated calls")
    elif mode == "off" and settings.cds_auth == "off":
        log.warning("IPEX_CDS_AUTH=off: CDS Hooks calls are accepted without authentication")
    elif mode == "off":
        log.info("CDS Hooks calls are accepted without authentication (loopback host)")
    elif not settings.cds_issuers_file:
        log.warning("IPEX_CDS_AUTH=jwt but IPEX_CDS_ISSUERS_FILE is not set: every CDS Hooks "
                    "call will be refused (401)")
    else:
        log.info("CDS Hooks calls need a JWT signed by an issuer of IPEX_CDS_ISSUERS_FILE")


def require_trusted(request: Request, mode: Mode, *, fhir_server: str | None) -> None:
    """Raise NotTrusted (a bare 401) unless this CDS call or feedback may proceed.

    In ``jwt`` mode the token is checked by :func:`service.security.guard.verify_cds_call`,
    which logs why a token was refused.
    """
    if mode == "off":
        return
    if mode == "closed":
        raise NotTrusted("CDS Hooks calls are refused: no issuers are trusted")
    try:
        verify_cds_call(request, fhir_server=fhir_server)
    except TokenRejected:
        raise NotTrusted("the caller's JWT was not accepted") from None
