"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response

from .edge.errors import ServiceUnavailable
from .edge.fhir_json import JSON, json_response
from .edge.running import runtime, state_store
from .observability import metrics
from .state import state_problem

bp = Blueprint("operations", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"}, mimetype=JSON)


def _not_ready(reason: str, **details: object) -> Response:
    response = json_response({"status": "not ready", "reason": reason, **details},
                             status=503, mimetype=JSON)
    response.headers["Retry-After"] = "5"
    return response


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the rules are loaded, the state store can be written and every
    directory the server writes can be written (:mod:`service.serving.paths`); else
    503 saying why."""
    try:
        rules = runtime().profiles.rules
    except ServiceUnavailable:
        rules = None
    if rules is None or not rules.value_sets:
        return _not_ready("rules not loaded")
    problems: list[str] = []
    try:
        store = state_store()
    except ServiceUnavailable as error:
        problems.append(error.diagnostics)
    else:
        problem = state_problem(store)
        if problem is not None:
            problems.append(problem)
    from .serving.paths import PATHS

    unwritable = PATHS.problems()
    problems += [p.text() for p in unwritable]
    if problems:
        details = {"unwritable": [{"path": p.path, "reason": p.reason, "neededFor": p.what}
                                  for p in unwritable]} if unwritable else {}
        return _not_ready("; ".join(problems), **details)
    return json_response(
        {"status": "ready", "rules": rules.id, "rulesVersion": rules.version,
         "valueSets": len(rules.value_sets), "state": store.kind},
        mimetype=JSON,
    )


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus text format, summed across gunicorn workers."""
    return Response(metrics.render(), content_type=metrics.CONTENT_TYPE)
