"""Errors the screening core raises, each a thing the caller got wrong.

    ScreeningError
    ├── NotABundle          the request as a whole is not a FHIR Bundle (or Parameters
    │                       holding one): not an object, not a Bundle, entry not a list
    └── NothingToScreen     a Bundle, but no Patient to screen

A single unusable entry is never an error: it is read leniently and reported as
not read (``facts.NotRead``). Adapters map these to HTTP 400 and 422 (FHIR: an
OperationOutcome).
"""

from __future__ import annotations


class ScreeningError(Exception):
    """A request the core cannot screen; ``diagnostics`` is safe to show the caller."""

    def __init__(self, diagnostics: str, *, expression: str | None = None) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression


class NotABundle(ScreeningError):
    """The body is not a Bundle of an accepted type, nor Parameters holding one."""


class NothingToScreen(ScreeningError):
    """The Bundle holds no Patient."""
