"""The security headers every answer carries (and ``no-store`` unless a handler chose caching)."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, Response

SECURITY_HEADERS: Mapping[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # The service answers only JSON and text: nothing may load, run or frame it.
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}


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
