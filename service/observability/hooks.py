"""Per request: a request id, the time taken, one metric sample and one JSON log line.

The line holds ``method``, ``path`` (the url rule, e.g. ``/fhir/<resource_type>/<resource_id>``:
never the raw path or the query string, which can carry patient ids), ``status``,
``duration_ms``, ``request_id`` and, for CDS Hooks calls, ``hookInstance``. Never a
body, a header value other than the request id, or a token.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request

from .logs import FIELDS
from .metrics import UNMATCHED, record_request

log = logging.getLogger("ipex_screen.request")

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is echoed and logged only when it is a plain short token; a JWT
# (three base64url parts) is a token of another kind and is replaced.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?")
_HOOK_INSTANCE = re.compile(r"[A-Za-z0-9._:-]{1,100}")
# Probes and scrapes come every few seconds from each replica's orchestrator.
_QUIET_ENDPOINTS = frozenset({"/healthz", "/readyz", "/metrics"})
_START, _REQUEST_ID, _HOOK = "ipex_started", "ipex_request_id", "ipex_hook_instance"


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is a sane token, else a new UUID."""
    if header and _SANE_ID.fullmatch(header) and not _JWT_LIKE.match(header):
        return header
    return str(uuid.uuid4())


def note_hook_instance(value: Any) -> None:
    """Log this CDS Hooks call's ``hookInstance`` (call it once the body is parsed)."""
    if isinstance(value, str) and _HOOK_INSTANCE.fullmatch(value):
        setattr(g, _HOOK, value)


def _hook_instance() -> str | None:
    # Only what a handler noted: the log never reads a body (no second parse, no patient data).
    noted = getattr(g, _HOOK, None)
    return noted if isinstance(noted, str) else None


def _path() -> str:
    """The url rule; for a path no rule matched, its first segment only."""
    if request.url_rule is not None:
        return request.url_rule.rule
    first = request.path.lstrip("/").split("/", 1)[0]
    if first and re.fullmatch(r"[A-Za-z$_.-]{1,40}", first):
        return f"/{first}/*" if "/" in request.path.lstrip("/") else f"/{first}"
    return UNMATCHED


def _before() -> None:
    setattr(g, _START, time.perf_counter())
    setattr(g, _REQUEST_ID, request_id_from(request.headers.get(REQUEST_ID_HEADER)))


def _after(response: Response) -> Response:
    started = getattr(g, _START, None)
    seconds = time.perf_counter() - started if isinstance(started, float) else 0.0
    request_id = getattr(g, _REQUEST_ID, None) or request_id_from(None)
    response.headers[REQUEST_ID_HEADER] = request_id
    endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    record_request(endpoint=endpoint, method=request.method, status=response.status_code,
                   seconds=seconds)
    fields: dict[str, Any] = {
        "method": request.method,
        "path": _path(),
        "status": response.status_code,
        "duration_ms": round(seconds * 1000, 2),
        "request_id": request_id,
    }
    hook_instance = _hook_instance()
    if hook_instance is not None:
        fields["hookInstance"] = hook_instance
    quiet = endpoint in _QUIET_ENDPOINTS and response.status_code < 400
    log.log(logging.DEBUG if quiet else logging.INFO, "request", extra={FIELDS: fields})
    return response


def install_request_hooks(app: Flask) -> None:
    """Time, count and log every request; call first in ``create_app`` so it wraps the rest."""
    app.before_request(_before)
    app.after_request(_after)

