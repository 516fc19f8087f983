"""CDS Hooks 2.0 endpoints: discovery, the ``patient-view`` service and its feedback.

A call's path: validate the envelope (:mod:`.schemas`) -> gather the record
(:mod:`.prefetch`, :mod:`.fhir_client`) -> :meth:`Runtime.screen` -> the card
(:mod:`.cards`). Errors are ``{"error": "..."}`` with a 4xx; an unauthorised call a
bare 401 (:func:`.auth.require_trusted` raises it). Any other service id matches no
route: a JSON 404 from the app's handler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, request

from ..edge.errors import ApiError, ServiceUnavailable, from_screening
from ..edge.fhir_json import JSON, json_response, paused_gc, read_json
from ..edge.running import runtime
from ..observability.hooks import note_hook_instance
from ..observability.metrics import record_feedback, record_screenings
from ..screening import ScreeningError
from ..state import CardRow, StateUnavailable
from . import cards, schemas
from .auth import Mode, require_trusted
from .feedback import FeedbackLog
from .prefetch import TEMPLATES, gather

log = logging.getLogger("ipex_screen.cds")

SERVICE_ID = "ipex-foxp3-screen"
EXTENSION = "ipex_cds"

bp = Blueprint("cds", __name__)

REPLAY_CHECK_UNAVAILABLE = (
    "the service cannot check JWT replays now: its state store is unavailable; "
    "nothing was screened or stored; try again shortly")


@dataclass(frozen=True, slots=True)
class CdsState:
    mode: Mode
    feedback: FeedbackLog


def _state() -> CdsState:
    state: CdsState = current_app.extensions[EXTENSION]
    return state


def discovery_document() -> dict[str, Any]:
    return {"services": [{
        "hook": "patient-view",
        "id": SERVICE_ID,
        "title": "IPEX syndrome screening",
        "description": (
            "Flags a child whose coded record (enteropathy, early-onset type 1 diabetes or "
            "other autoimmune endocrinopathy, eczema, and supporting laboratory findings) "
            "suggests IPEX syndrome or IPEX-like immune dysregulation, and proposes FOXP3 "
            "gene sequencing for boys or an immune-dysregulation gene panel otherwise."
        ),
        "prefetch": {key: template for key, (template, _, _) in TEMPLATES.items()},
        "usageRequirements": (
            "Send the four prefetch keys, or fhirServer with fhirAuthorization whose "
            "token can read Patient, Condition, Observation and ServiceRequest for the patient."
        ),
    }]}


@bp.get("/cds-services")
def discovery() -> Response:
    return json_response(discovery_document(), mimetype=JSON)


def _trusted_body(*, gate_fhir_server: bool, what: str, walk_depth: bool) -> Any:
    """The JSON body of a caller who may call: a refused caller's 401 comes before any 4xx."""
    mode = _state().mode
    if mode == "closed":  # refused before the body is even read
        require_trusted(request, mode, fhir_server=None)
    settings = runtime().settings
    body: Any = None
    problem: ApiError | None = None
    try:
        body = read_json(request, max_bytes=int(settings.max_body_mb * 1024 * 1024),
                         max_depth=settings.max_json_depth if walk_depth else None,
                         max_entries=settings.max_entries, what=what)
    except ApiError as error:
        problem = error
    fhir_server = None
    if gate_fhir_server and isinstance(body, Mapping) and isinstance(body.get("fhirServer"), str):
        fhir_server = body["fhirServer"]
    try:
        require_trusted(request, mode, fhir_server=fhir_server)
    except StateUnavailable:
        # The replay check could not be made: not the caller's fault, so not a 401.
        raise ServiceUnavailable(REPLAY_CHECK_UNAVAILABLE) from None
    if problem is not None:
        raise problem
    if isinstance(body, Mapping):
        note_hook_instance(body.get("hookInstance"))
    return body


@bp.post(f"/cds-services/{SERVICE_ID}")
def service_call() -> Response:
    with paused_gc():
        return _service_call()


def _service_call() -> Response:
    # No nesting walk: the prefetch is read at fixed places, iteratively (see limits.py).
    body = _trusted_body(gate_fhir_server=True, what="a CDS Hooks patient-view request",
                         walk_depth=False)
    call = schemas.load(schemas.HOOK_REQUEST, body, what="CDS Hooks patient-view request")
    rt = runtime()
    gathered = gather(call, rt.settings)
    try:
        screened = rt.screen(gathered.bundle())  # as of the runtime's today
    except ScreeningError as error:
        raise from_screening(error) from None
    # What could not be read is named by where the caller sent it (the prefetch key).
    results = [r.with_locations(gathered.origin_of) for r in screened]
    if any(r.not_read for r in results):
        log.warning("CDS call: %d parts of the record could not be read",
                    sum(len(r.not_read) for r in results))
    record_screenings(results, channel="cds")
    base_url = rt.settings.public_base_url or request.host_url
    shown = [(c, r) for r in results
             if (c := cards.card(r, rt.profiles.rules, patient_id=gathered.patient_id,
                                 order_code=rt.settings.order_code,
                                 base_url=base_url)) is not None]
    issued_at = rt.now()
    _state().feedback.shown(
        CardRow(card=c["uuid"], issued_at=issued_at, tier=r.tier, row=r.row.row,
                recommendation=r.row.recommend, rules_version=r.rules_version)
        for c, r in shown)
    return json_response({"cards": [c for c, _ in shown]}, mimetype=JSON)


@bp.post(f"/cds-services/{SERVICE_ID}/feedback")
def feedback() -> Response:
    body = _trusted_body(gate_fhir_server=False, what="CDS Hooks feedback", walk_depth=True)
    schemas.check_feedback_count(body)
    loaded = schemas.load(schemas.FEEDBACK, body, what="CDS Hooks feedback")
    items = loaded["feedback"]
    try:
        stored = _state().feedback.add(items)
    except StateUnavailable:
        raise ServiceUnavailable("the feedback could not be stored: the service's state "
                                 "store is unavailable; nothing was stored; send it again"
                                 ) from None
    for outcome in stored.new_outcomes:
        record_feedback(outcome)
    return json_response({"stored": stored.new, "duplicates": stored.duplicates},
                         mimetype=JSON)
