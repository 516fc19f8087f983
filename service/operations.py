"""Operational endpoints: liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from .http_json import json_response
from .runtime import Runtime

bp = Blueprint("operations", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"}, mimetype="application/json")


@bp.get("/readyz")
def readyz() -> Response:
    runtime: Runtime = current_app.extensions["ipex"]
    rules = runtime.profiles.rules
    return json_response(
        {"status": "ready", "rules": rules.id, "rulesVersion": rules.version,
         "valueSets": len(rules.value_sets)},
        mimetype="application/json",
    )
