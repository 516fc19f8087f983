"""The evidence timeline: a SMART on FHIR app the service serves, and what it screens with.

* ``GET /timeline/launch.html`` (the EHR launches it with ``iss`` and ``launch``),
  ``/timeline/index.html`` (the redirect URI) and their ``assets/``: static files built
  from ``timeline/`` with npm (committed, so the service needs no Node to run).
* ``GET /timeline/config.json``: the client id and scopes the app asks the EHR for.
* ``POST /timeline/explain``: a Bundle (or Parameters with ``bundle`` and ``asOf``) in, the
  timeline account of each patient out (:mod:`.account`); the same input, limits and
  caller checks as ``POST /fhir/$ipex-screen``. Nothing is stored.

The pages get their own Content-Security-Policy: scripts and styles from this origin
only (Observable Plot writes a ``<style>`` into its SVG, hence ``'unsafe-inline'`` for
styles, never for scripts), connections to this origin and to the EHR's servers (any
``https:`` origin, or plain http on loopback for a test EHR), and framing only by the
origins of ``IPEX_CORS_ORIGINS`` (an EHR that embeds the app).
"""

from __future__ import annotations

import mimetypes
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, abort, request
from werkzeug.security import safe_join

from ..edge.errors import from_screening
from ..edge.fhir_json import JSON, json_response, paused_gc, read_json
from ..edge.running import runtime
from ..fhir_api import as_of_parameter
from ..screening import ScreeningError
from ..security.guard import require_api_caller
from .account import rule_set_summary, timeline_account

STATIC_DIR = Path(__file__).parent / "static"
LOOPBACK = "http://localhost:* http://127.0.0.1:* http://[::1]:*"

bp = Blueprint("timeline", __name__, url_prefix="/timeline")


def _frame_ancestors() -> str:
    origins = runtime().settings.cors_origins
    if not origins:
        return "'none'"
    return "*" if "*" in origins else " ".join(origins)


def app_policy() -> str:
    """The Content-Security-Policy of the app's pages."""
    return ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data:; connect-src 'self' https: {LOOPBACK}; "
            f"frame-ancestors {_frame_ancestors()}; base-uri 'none'; form-action 'none'")


@cache
def _file(name: str) -> tuple[bytes, str] | None:
    """A built file's bytes and media type (the build is a few small files: kept read)."""
    path = safe_join(str(STATIC_DIR), name)
    if path is None or not Path(path).is_file():
        return None
    return Path(path).read_bytes(), mimetypes.guess_type(path)[0] or "application/octet-stream"


def _static(name: str) -> Response:
    found = _file(name)
    if found is None:
        if not (STATIC_DIR / "index.html").is_file():
            abort(404, description="the timeline app is not built: run scripts/build-timeline")
        abort(404, description="the timeline app has no such file")
    data, mimetype = found
    response = Response(data, mimetype=mimetype)
    if name.startswith("assets/"):  # content-hashed names: safe to keep
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        response.headers["Cache-Control"] = "no-cache"
    response.headers["Content-Security-Policy"] = app_policy()
    return response


@bp.get("/")
def app_index() -> Response:
    return _static("index.html")


@bp.get("/<path:name>")
def app_file(name: str) -> Response:
    return _static(name)


@bp.get("/config.json")
def app_config() -> Response:
    settings = runtime().settings
    return json_response({"clientId": settings.smart_client_id, "scope": settings.smart_scope,
                          "maxPages": settings.fhir_max_pages}, mimetype=JSON)


@bp.post("/explain")
def explain() -> Response:
    rt = runtime()
    require_api_caller(request)
    # As the FHIR operation reads it: Bundle entries counted, no nesting walk (limits.py).
    body = read_json(request, max_bytes=int(rt.settings.max_body_mb * 1024 * 1024),
                     max_entries=rt.settings.max_entries,
                     what="a FHIR Bundle (or Parameters holding one)")
    as_of = as_of_parameter(body)
    rules = rt.profiles.rules
    with paused_gc():
        try:
            results = rt.screen(body, as_of=as_of)
        except ScreeningError as exc:
            raise from_screening(exc) from None
        return json_response({"rules": rule_set_summary(rules),
                              "results": [timeline_account(r, rules) for r in results]},
                             mimetype=JSON)
