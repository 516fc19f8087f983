"""Every status the service answers, and the OperationOutcome FHIR callers get.

    ApiError (status, code, diagnostics)   raised by an endpoint, answered by handlers.py
    ├── BadRequest            400  not JSON, not a Bundle, an invalid entry or CDS request,
    │                              JSON nested deeper than IPEX_MAX_JSON_DEPTH
    ├── Unauthorized          401  the FHIR operation's caller has no accepted JWT
    │   └── NotTrusted        401  a CDS Hooks call or feedback refused: bare, no body
    ├── NotFound              404  a conformance resource this server does not publish
    ├── PreconditionFailed    412  CDS prefetch missing and the FHIR server could not supply it
    ├── PayloadTooLarge       413  body over IPEX_MAX_BODY_MB, entries over IPEX_MAX_ENTRIES
    ├── UnsupportedMedia      415  not application/fhir+json or application/json
    ├── Unprocessable         422  valid FHIR but nothing to screen; with
    │                              Prefer: handling=strict, every part not read
    └── ServiceUnavailable    503  the state store cannot be used (the JWT replay check,
                                   feedback); no runtime installed

Answered without an ApiError:

    werkzeug HTTPException    404 no route, 405 wrong method (with Allow), 413 over
                              MAX_CONTENT_LENGTH: the same shapes, from handlers.py
    any other exception       500, its type logged, nothing of the request answered
    GET /readyz               503 with Retry-After while the rules are not loaded

FHIR callers (``/fhir``) get an OperationOutcome; everyone else ``{"error": "..."}``.
Core errors (``service.screening.errors``) map onto these in :func:`from_screening`.
"""

from __future__ import annotations

from html import escape
from typing import Any

from ..screening.errors import NothingToScreen, ScreeningError


class ApiError(Exception):
    status = 400
    code = "invalid"

    def __init__(
        self,
        diagnostics: str,
        *,
        expression: str | None = None,
        issues: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression
        self.issues = issues  # (expression, diagnostics) of each further issue


class BadRequest(ApiError):
    status, code = 400, "invalid"


class Unauthorized(ApiError):
    status, code = 401, "login"


class NotTrusted(Unauthorized):
    """401 with no body: CDS Hooks callers learn nothing of why (the reason is logged)."""


class NotFound(ApiError):
    status, code = 404, "not-found"


class PreconditionFailed(ApiError):
    """412: data the screening needs could not be obtained (CDS Hooks 2.0, Prefetch)."""

    status, code = 412, "incomplete"


class PayloadTooLarge(ApiError):
    status, code = 413, "too-costly"


class UnsupportedMedia(ApiError):
    status, code = 415, "not-supported"


class Unprocessable(ApiError):
    status, code = 422, "processing"


class ServiceUnavailable(ApiError):
    status, code = 503, "transient"


def from_screening(error: ScreeningError) -> ApiError:
    """422 when there is nothing to screen; any other core error is the caller's 400."""
    if isinstance(error, NothingToScreen):
        return Unprocessable(error.diagnostics, expression=error.expression)
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
            + escape(diagnostics)
            + "</p></div>",
        },
        "issue": [issue],
    }


def outcome_for(error: ApiError) -> dict[str, Any]:
    outcome = operation_outcome(error.diagnostics, code=error.code,
                                expression=error.expression)
    for expression, diagnostics in error.issues:
        outcome["issue"].append({"severity": "error", "code": error.code,
                                 "diagnostics": diagnostics, "expression": [expression]})
    return outcome
