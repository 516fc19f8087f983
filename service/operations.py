"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response

from .edge.errors import ServiceUnavailable
from .edge.fhir_json import JSON, json_response
from .edge.running import runtime
from .observability import metrics

bp = Blueprint("operations", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"}, mimetype=JSON)


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the rule set is loaded and holds its value sets; else 503."""
    try:
        rules = runtime().profiles.rules
    except ServiceUnavailable:
        rules = None
    if rules is None or not rules.value_sets:
        response = json_response({"status": "not ready", "reason": "rules not loaded"},
                                 status=503, mimetype=JSON)
        response.headers["Retry-After"] = "5"
        return response
    return json_response(
        {"status": "ready", "rules": rules.id, "rulesVersion": rules.version,
         "valueSets": len(rules.value_sets)},
        mimetype=JSON,
    )


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus text format, summed across gunicorn workers."""
    return Response(metrics.render(), content_type=metrics.CONTENT_TYPE)
