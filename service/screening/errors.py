"""Errors the screening core raises, each a thing the caller got wrong.

    ScreeningError
    ├── NotABundle          the body is not a FHIR Bundle (or Parameters holding one)
    ├── InvalidEntry        an entry the rules read is not valid FHIR
    └── NothingToScreen     valid FHIR, but no Patient to screen

Adapters map them to HTTP: 400, 400 and 422 (FHIR: an OperationOutcome).
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


class InvalidEntry(ScreeningError):
    """An entry that the rules read does not validate as FHIR R4."""


class NothingToScreen(ScreeningError):
    """The Bundle is valid but holds no Patient."""
