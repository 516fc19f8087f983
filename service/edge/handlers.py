"""One error handler per kind of failure, each answering in the caller's shape.

Under ``/fhir`` an OperationOutcome; elsewhere ``{"error": "..."}``; a CDS Hooks caller
who is not trusted a bare 401. Never a stack trace or request data (see :mod:`.errors`).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .errors import ApiError, NotTrusted, operation_outcome, outcome_for
from .fhir_json import FHIR_JSON, JSON, json_response

log = logging.getLogger("ipex_screen")

_WERKZEUG_CODES = {404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}


def _is_fhir_path() -> bool:
    return request.path.startswith("/fhir")


def api_error(error: ApiError) -> Response:
    if isinstance(error, NotTrusted):
        return Response(b"", status=error.status, headers={"WWW-Authenticate": "Bearer"})
    if _is_fhir_path():
        return json_response(outcome_for(error), status=error.status)
    return json_response({"error": error.diagnostics}, status=error.status, mimetype=JSON)


def http_error(error: HTTPException) -> Response:
    status = error.code or 500
    text = error.description or error.name
    if _is_fhir_path():
        outcome = operation_outcome(text, code=_WERKZEUG_CODES.get(status, "exception"))
        response = json_response(outcome, status=status, mimetype=FHIR_JSON)
    else:
        response = json_response({"error": text}, status=status, mimetype=JSON)
    allowed = getattr(error, "valid_methods", None)
    if status == 405 and allowed:
        response.headers["Allow"] = ", ".join(allowed)  # RFC 9110 requires it on a 405
    return response


def unexpected(error: Exception) -> Response:
    # Never a stack trace or request data in the answer or the log: the type only.
    route = request.url_rule.rule if request.url_rule else "<unmatched>"
    log.error("unexpected error handling %s %s: %s", request.method, route,
              type(error).__name__)
    text = "the service failed to process this request; it has been logged"
    if _is_fhir_path():
        return json_response(operation_outcome(text, code="exception"), status=500)
    return json_response({"error": text}, status=500, mimetype=JSON)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, api_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected)
