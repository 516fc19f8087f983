"""What the HTTP server itself answers, before or instead of the app: always JSON.

A request the server refuses (malformed, too large, too slow) never reaches Flask, so
its answer is built here: an ``OperationOutcome`` on ``/fhir`` paths, ``{"error": ...}``
elsewhere (the CDS Hooks form), with the security headers every answer carries. The
text names the limit and its setting, never the request's own bytes.
"""

from __future__ import annotations

import orjson

from ..edge.errors import operation_outcome
from ..edge.headers import SECURITY_HEADERS

REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}

#: FHIR ``IssueType`` per status (OperationOutcome.issue.code).
_ISSUE_CODES = {400: "structure", 408: "timeout", 413: "too-costly", 414: "too-long",
                431: "too-long", 500: "exception", 501: "not-supported", 503: "transient"}


def is_fhir_path(path: str | None) -> bool:
    return bool(path) and (path == "/fhir" or str(path).startswith("/fhir/"))


def server_answer(status: int, text: str, *, path: str | None
                  ) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status line, headers, body) of the server's own JSON answer."""
    if is_fhir_path(path):
        body = orjson.dumps(operation_outcome(text, code=_ISSUE_CODES.get(status, "exception")))
        media = "application/fhir+json"
    else:
        body = orjson.dumps({"error": text})
        media = "application/json"
    headers = [("Content-Type", media), ("Content-Length", str(len(body))),
               ("Cache-Control", "no-store"), *SECURITY_HEADERS.items()]
    return f"{status} {REASONS.get(status, 'Error')}", headers, body
