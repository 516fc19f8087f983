"""CORS for browser-based CDS Clients (CDS Hooks 2.0 "Cross-Origin Resource Sharing").

Only origins on ``IPEX_CORS_ORIGINS`` (``*`` for any) get CORS headers; the origin is
echoed, never ``*`` itself, with ``Vary: Origin`` so a cache keeps answers apart.
Preflights (``OPTIONS``) are answered by Flask before any auth and allow the
``Authorization`` and ``Content-Type`` headers a CDS Client sends.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Response, request

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-ID"
MAX_AGE_S = "600"


class CorsPolicy:
    """Which browser origins may call, and the headers that tell the browser so."""

    def __init__(self, origins: Iterable[str]) -> None:
        cleaned = {o.strip().rstrip("/") for o in origins if o.strip()}
        self.any_origin = "*" in cleaned
        self.origins = frozenset(o.lower() for o in cleaned - {"*"})

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin.rstrip("/").lower() in self.origins

    def apply(self, response: Response) -> Response:
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if not origin or not self.allows(origin):
            return response
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "X-Request-ID, WWW-Authenticate"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE_S
        return response
