"""Caps on what a JSON body may look like, and the security headers every answer carries.

The body size is capped before parsing (``IPEX_MAX_BODY_MB``, 413); after parsing,
:func:`check_json_limits` caps the nesting depth (400: no FHIR resource nests that
deep, so the body is malformed) and the number of Bundle entries (413: too much work).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response

from ..edge.errors import BadRequest, PayloadTooLarge

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
    # Level by level, with exact type checks and no per-node tuples: this walk runs on
    # every request body, and the per-node version cost 2-3x the JSON parse itself.
    entries = 0
    level: list[Any] = [document] if type(document) in (dict, list) else []
    depth = 1
    while level:
        if depth > max_depth:
            raise BadRequest(f"the JSON nests deeper than {max_depth} levels")
        below: list[Any] = []
        keep = below.append
        for node in level:
            if type(node) is dict:
                if node.get("resourceType") == "Bundle":
                    bundle_entries = node.get("entry")
                    if type(bundle_entries) is list:
                        entries += len(bundle_entries)
                        if entries > max_entries:
                            raise PayloadTooLarge(
                                f"the body holds more than {max_entries} Bundle entries"
                            )
                values = node.values()
            else:
                values = node
            for value in values:
                kind = type(value)
                if kind is dict or kind is list:
                    keep(value)
        level = below
        depth += 1


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
