"""The FHIR endpoints: ``$ipex-screen``, ``metadata`` and reads of the conformance resources."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, request

from .edge.errors import BadRequest, NotFound, Unprocessable, from_screening
from .edge.fhir_json import json_response, paused_gc, read_json
from .edge.running import runtime
from .observability.metrics import record_screenings
from .runtime import Runtime
from .screening import ScreeningError
from .security.guard import require_api_caller

bp = Blueprint("fhir", __name__, url_prefix="/fhir")


def as_of_parameter(body: Any) -> dt.date | None:
    """The optional ``asOf`` input of the operation (Parameters only): screen as of a date."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "Parameters":
        return None
    parameters = body.get("parameter")
    for parameter in parameters if isinstance(parameters, list) else []:
        if isinstance(parameter, Mapping) and parameter.get("name") == "asOf":
            value = parameter.get("valueDate")
            try:
                return dt.date.fromisoformat(str(value))
            except ValueError:
                raise BadRequest("parameter asOf must be a valueDate (YYYY-MM-DD)",
                                 expression="Parameters.parameter.where(name='asOf')") from None
    return None


def _strict() -> bool:
    """FHIR ``Prefer: handling=strict``: refuse a record that cannot be read whole."""
    return any(part.strip().lower() == "handling=strict"
               for value in request.headers.getlist("Prefer") for part in value.split(";")
               for part in part.split(","))


@bp.post("/$ipex-screen")
def ipex_screen() -> Response:
    rt = runtime()
    require_api_caller(request)
    # The record is parsed, screened and written with the cyclic GC paused, and it is
    # gone (freed by reference counting) before the GC runs again: otherwise the first
    # collection after the pause walks the whole parsed record.
    with paused_gc():
        return _answer(rt, strict=_strict())


def _answer(rt: Runtime, *, strict: bool) -> Response:
    # The nesting walk only for strict handling, whose FHIR validator recurses.
    body = read_json(request, max_bytes=int(rt.settings.max_body_mb * 1024 * 1024),
                     max_depth=rt.settings.max_json_depth if strict else None,
                     max_entries=rt.settings.max_entries)
    return _screened(rt, body, as_of_parameter(body), strict=strict)


def _screened(rt: Runtime, body: Any, as_of: dt.date | None, *, strict: bool) -> Response:
    try:
        if strict:
            problems = rt.strict_problems(body, as_of=as_of)
            if problems:
                raise Unprocessable(
                    f"Prefer: handling=strict, and {len(problems)} part"
                    f"{'s' if len(problems) > 1 else ''} of the record could not be read; "
                    "each is an issue below with its location",
                    issues=tuple((p.location, p.describe()) for p in problems))
        results = rt.screen(body, as_of=as_of)
    except ScreeningError as exc:
        raise from_screening(exc) from None
    record_screenings(results, channel="fhir")
    return json_response(rt.result_resource(results))


@bp.get("/metadata")
def metadata() -> Response:
    statement = runtime().profiles.get("CapabilityStatement", "ipex-screen")
    if statement is None:
        raise NotFound("no CapabilityStatement is published")
    return json_response(statement)


@bp.get("/<resource_type>/<resource_id>")
def read(resource_type: str, resource_id: str) -> Response:
    resource = runtime().profiles.get(resource_type, resource_id)
    if resource is None:
        raise NotFound(f"{resource_type}/{resource_id} is not a resource this server publishes")
    return json_response(resource)
