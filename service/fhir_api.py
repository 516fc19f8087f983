"""The FHIR endpoints: ``$ipex-screen``, ``metadata`` and reads of the conformance resources."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, current_app, request

from .errors import BadRequest, NotFound, from_screening
from .http_json import json_response, read_json
from .runtime import Runtime
from .screening import ScreeningError

bp = Blueprint("fhir", __name__, url_prefix="/fhir")


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["ipex"]
    return rt


def _as_of(body: Any) -> dt.date | None:
    """The optional ``asOf`` input of the operation (Parameters only): screen as of a date."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "Parameters":
        return None
    for parameter in body.get("parameter") or []:
        if isinstance(parameter, Mapping) and parameter.get("name") == "asOf":
            value = parameter.get("valueDate")
            try:
                return dt.date.fromisoformat(str(value))
            except ValueError:
                raise BadRequest("parameter asOf must be a valueDate (YYYY-MM-DD)",
                                 expression="Parameters.parameter.where(name='asOf')") from None
    return None


@bp.post("/$ipex-screen")
def ipex_screen() -> Response:
    rt = runtime()
    body = read_json(request, max_bytes=int(rt.settings.max_body_mb * 1024 * 1024))
    try:
        results = rt.screen(body, as_of=_as_of(body))
    except ScreeningError as exc:
        raise from_screening(exc) from None
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
