"""The Flask app factory: one blueprint per concern over one screening runtime."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .config import Settings, load_settings
from .errors import ApiError, operation_outcome, outcome_for
from .http_json import FHIR_JSON, json_response
from .runtime import Runtime

log = logging.getLogger("ipex_screen")

_WERKZEUG_CODES = {404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}


def create_app(
    test_config: Mapping[str, Any] | None = None, *, settings: Settings | None = None
) -> Flask:
    """Build the app; ``test_config`` overrides settings by field name."""
    settings = settings or load_settings(**dict(test_config or {}))
    runtime = Runtime.start(settings)
    app = Flask(__name__)
    from .observability.hooks import install_request_hooks  # first: it times all the rest
    from .observability.logs import log_level

    install_request_hooks(app)
    logging.getLogger("ipex_screen").setLevel(log_level(settings.log_level))
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_body_mb * 1024 * 1024)
    app.extensions["ipex"] = runtime

    from . import fhir_api, operations
    from .security import guard, limits, openapi

    app.extensions[guard.EXTENSION] = guard.build_security(settings)
    limits.register_security_headers(app)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(fhir_api.bp)
    app.register_blueprint(operations.bp)
    from . import cds

    cds.register(app, settings)
    _register_errors(app)
    return app


def _is_fhir_path() -> bool:
    return request.path.startswith("/fhir")


def _register_errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        if _is_fhir_path():
            return json_response(outcome_for(error), status=error.status)
        return json_response({"error": error.diagnostics}, status=error.status,
                             mimetype="application/json")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        text = error.description or error.name
        if _is_fhir_path():
            outcome = operation_outcome(text, code=_WERKZEUG_CODES.get(status, "exception"))
            response = json_response(outcome, status=status, mimetype=FHIR_JSON)
        else:
            response = json_response({"error": text}, status=status, mimetype="application/json")
        allowed = getattr(error, "valid_methods", None)
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)  # RFC 9110 requires it on a 405
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        # Never a stack trace or request data in the answer or the log: the type only.
        route = request.url_rule.rule if request.url_rule else "<unmatched>"
        log.error("unexpected error handling %s %s: %s", request.method, route,
                  type(error).__name__)
        text = "the service failed to process this request; it has been logged"
        if _is_fhir_path():
            return json_response(operation_outcome(text, code="exception"), status=500)
        return json_response({"error": text}, status=500, mimetype="application/json")
