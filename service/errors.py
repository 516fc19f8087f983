"""HTTP errors and the OperationOutcome every FHIR caller gets.

    ApiError (status, code, diagnostics)
    ├── BadRequest          400  not JSON, not a Bundle, invalid entry
    ├── Unauthorized        401  a configured issuer check failed
    ├── NotFound            404  unknown resource or service
    ├── PayloadTooLarge     413  body, entries or nesting over the limits
    ├── UnsupportedMedia    415  not application/fhir+json or application/json
    └── Unprocessable       422  valid FHIR but nothing to screen

Core errors (``service.screening.errors``) map onto these in :func:`from_screening`.
"""

from __future__ import annotations

from typing import Any

from .screening.errors import InvalidEntry, NotABundle, NothingToScreen, ScreeningError


class ApiError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, diagnostics: str, *, expression: str | None = None) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression


class BadRequest(ApiError):
    status, code = 400, "invalid"


class Unauthorized(ApiError):
    status, code = 401, "login"


class NotFound(ApiError):
    status, code = 404, "not-found"


class MethodNotAllowed(ApiError):
    status, code = 405, "not-supported"


class PayloadTooLarge(ApiError):
    status, code = 413, "too-costly"


class UnsupportedMedia(ApiError):
    status, code = 415, "not-supported"


class Unprocessable(ApiError):
    status, code = 422, "processing"


def from_screening(error: ScreeningError) -> ApiError:
    if isinstance(error, NothingToScreen):
        return Unprocessable(error.diagnostics, expression=error.expression)
    if isinstance(error, NotABundle | InvalidEntry):
        return BadRequest(error.diagnostics, expression=error.expression)
    return BadRequest(error.diagnostics, expression=error.expression)


def operation_outcome(
    diagnostics: str,
    *,
    code: str = "invalid",
    severity: str = "error",
    expression: str | None = None,
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {
        "resourceType": "OperationOutcome",
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>'
            + _escape(diagnostics)
            + "</p></div>",
        },
        "issue": [issue],
    }


def _escape(text: str) -> str:
    from html import escape

    return escape(text)


def outcome_for(error: ApiError) -> dict[str, Any]:
    return operation_outcome(error.diagnostics, code=error.code, expression=error.expression)
