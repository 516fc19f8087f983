"""Caps on what a JSON body may look like, and the security headers every answer carries.

The body size is capped before parsing (``IPEX_MAX_BODY_MB``, 413); after parsing,
:func:`check_json_limits` caps the nesting depth (400: no FHIR resource nests that
deep, so the body is malformed) and the number of Bundle entries (413: too much work).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response

from ..errors import BadRequest, PayloadTooLarge

SECURITY_HEADERS: Mapping[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # The service answers only JSON and text: nothing may load, run or frame it.
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def check_json_limits(document: Any, *, max_depth: int, max_entries: int) -> None:
    """Raise BadRequest when nesting exceeds ``max_depth``, PayloadTooLarge over ``max_entries``.

    Entries are summed over every Bundle in the document (a Parameters-wrapped Bundle,
    the Bundles of a CDS Hooks prefetch). The walk is iterative: no recursion limit.
    """
    entries = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise BadRequest(f"the JSON nests deeper than {max_depth} levels")
        if isinstance(node, dict):
            if node.get("resourceType") == "Bundle" and isinstance(node.get("entry"), list):
                entries += len(node["entry"])
                if entries > max_entries:
                    raise PayloadTooLarge(
                        f"the body holds more than {max_entries} Bundle entries"
                    )
            stack.extend((value, depth + 1) for value in node.values()
                         if isinstance(value, dict | list))
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node if isinstance(value, dict | list))


def add_security_headers(response: Response) -> Response:
    """Set the security headers (and ``no-store`` unless a handler chose caching)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    if response.status_code == 401:
        response.headers.setdefault("WWW-Authenticate", "Bearer")
    return response


def register_security_headers(app: Flask) -> None:
    app.after_request(add_security_headers)
