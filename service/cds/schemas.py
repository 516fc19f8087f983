"""The CDS Hooks 2.0 request envelope and feedback, validated with marshmallow.

Unknown fields are tolerated (the spec lets clients add extensions); the fields the
spec requires are enforced. A field sent as JSON ``null`` where the spec makes it
optional is read as absent. A failure becomes a 400 whose text names the fields.

Feedback is bounded (docs/security.md): at most ``MAX_FEEDBACK_ITEMS`` items per call
(more: 413), ids of at most ``MAX_ID_CHARS``, at most ``MAX_ACCEPTED_SUGGESTIONS``
per item, coding fields and the user comment within their lengths (400 past them),
and an ``outcomeTimestamp`` that can be placed in UTC (400, never a 500).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from ..edge.errors import BadRequest, PayloadTooLarge
from ..edge.openapi_schemas import MAX_JSON_INTEGER

HOOK = "patient-view"
# A FHIR id (R4 ``id`` datatype): it goes into URLs, so nothing else is let through.
FHIR_ID = validate.Regexp(r"\A[A-Za-z0-9\-.]{1,64}\Z",
                          error="must be a FHIR id: 1 to 64 letters, digits, - or .")
NON_EMPTY = validate.Length(min=1)

MAX_FEEDBACK_ITEMS = 100
MAX_ID_CHARS = 128  # a card or suggestion uuid is 36
MAX_ACCEPTED_SUGGESTIONS = 20
MAX_URI_CHARS = 1024  # a coding's system, and its display
MAX_CODE_CHARS = 256
MAX_COMMENT_CHARS = 4096
ID_LENGTH = validate.Length(min=1, max=MAX_ID_CHARS)


class _Tolerant(Schema):
    class Meta:
        unknown = EXCLUDE


class FhirAuthorizationSchema(_Tolerant):
    access_token = fields.String(required=True, validate=NON_EMPTY)
    token_type = fields.String(
        required=True, validate=validate.OneOf(["Bearer"], error="must be 'Bearer'"))
    expires_in = fields.Integer(
        required=True, strict=True,
        validate=validate.Range(min=-MAX_JSON_INTEGER, max=MAX_JSON_INTEGER),
        error_messages={"invalid": f"must be whole seconds, at most {MAX_JSON_INTEGER} either way"})
    scope = fields.String(required=True)
    subject = fields.String(required=True)
    patient = fields.String(allow_none=True)


class PatientViewContextSchema(_Tolerant):
    patientId = fields.String(required=True, validate=FHIR_ID)
    userId = fields.String(allow_none=True)
    encounterId = fields.String(allow_none=True)


class HookRequestSchema(_Tolerant):
    hook = fields.String(
        required=True,
        validate=validate.OneOf([HOOK], error=f"this service answers the {HOOK} hook only"),
    )
    hookInstance = fields.String(required=True, validate=NON_EMPTY)
    fhirServer = fields.Url(
        allow_none=True, require_tld=False, schemes={"http", "https"})
    fhirAuthorization = fields.Nested(FhirAuthorizationSchema, allow_none=True)
    context = fields.Nested(PatientViewContextSchema, required=True)
    prefetch = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                           allow_none=True)

    @validates_schema
    def _server_with_token(self, data: Mapping[str, Any], **_: Any) -> None:
        if data.get("fhirAuthorization") and not data.get("fhirServer"):
            raise ValidationError("fhirServer is required when fhirAuthorization is given",
                                  field_name="fhirServer")


def _placeable_in_utc(value: dt.datetime) -> None:
    try:
        value.astimezone(dt.UTC)
    except OverflowError:
        raise ValidationError("must lie between 0001-01-01 and 9999-12-31 once in UTC"
                              ) from None


class CodingSchema(_Tolerant):
    system = fields.String(required=True, validate=validate.Length(min=1, max=MAX_URI_CHARS))
    code = fields.String(required=True, validate=validate.Length(min=1, max=MAX_CODE_CHARS))
    display = fields.String(allow_none=True, validate=validate.Length(max=MAX_URI_CHARS))


class OverrideReasonSchema(_Tolerant):
    reason = fields.Nested(CodingSchema, allow_none=True)
    userComment = fields.String(allow_none=True, validate=validate.Length(max=MAX_COMMENT_CHARS))


class AcceptedSuggestionSchema(_Tolerant):
    id = fields.String(required=True, validate=ID_LENGTH)


class FeedbackItemSchema(_Tolerant):
    card = fields.String(required=True, validate=ID_LENGTH)
    outcome = fields.String(
        required=True,
        validate=validate.OneOf(["accepted", "overridden"],
                                error="must be 'accepted' or 'overridden'"),
    )
    acceptedSuggestions = fields.List(
        fields.Nested(AcceptedSuggestionSchema), allow_none=True,
        validate=validate.Length(max=MAX_ACCEPTED_SUGGESTIONS))
    overrideReason = fields.Nested(OverrideReasonSchema, allow_none=True)
    outcomeTimestamp = fields.AwareDateTime(required=True, format="iso",
                                            validate=_placeable_in_utc)

    @validates_schema
    def _accepted_names_a_suggestion(self, data: Mapping[str, Any], **_: Any) -> None:
        if data.get("outcome") == "accepted" and not data.get("acceptedSuggestions"):
            raise ValidationError("acceptedSuggestions is required when outcome is accepted",
                                  field_name="acceptedSuggestions")


class FeedbackSchema(_Tolerant):
    feedback = fields.List(fields.Nested(FeedbackItemSchema), required=True,
                           validate=validate.Length(min=1, max=MAX_FEEDBACK_ITEMS))


def _flatten(messages: Any, path: str = "") -> list[str]:
    if isinstance(messages, Mapping):
        found: list[str] = []
        for key, value in messages.items():
            name = str(key) if key != "_schema" else ""
            found += _flatten(value, f"{path}.{name}".strip(".") if name else path)
        return found
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{path or 'body'}: {' '.join(messages)}"]
    if isinstance(messages, list):
        return [line for m in messages for line in _flatten(m, path)]
    return [f"{path or 'body'}: {messages}"]


def check_feedback_count(document: Any) -> None:
    """413 when a feedback call holds more items than one call may (before validating them)."""
    items = document.get("feedback") if isinstance(document, Mapping) else None
    if isinstance(items, list) and len(items) > MAX_FEEDBACK_ITEMS:
        raise PayloadTooLarge(f"{len(items)} feedback items in one call; at most "
                              f"{MAX_FEEDBACK_ITEMS} are accepted: send them in several calls")


def load(schema: Schema, document: Any, *, what: str) -> dict[str, Any]:
    """Validate ``document``; a failure is a 400 naming every wrong field."""
    if not isinstance(document, Mapping):
        raise BadRequest(f"the body must be a JSON object holding a {what}")
    try:
        loaded: dict[str, Any] = schema.load(document)
    except ValidationError as error:
        raise BadRequest(f"not a valid {what}: " + "; ".join(_flatten(error.messages))
                         ) from None
    return loaded


HOOK_REQUEST = HookRequestSchema()
FEEDBACK = FeedbackSchema()
