"""The running service's :class:`Runtime`, held by the Flask app: the one way to reach it."""

from __future__ import annotations

from flask import Flask, current_app

from ..runtime import Runtime
from .errors import ServiceUnavailable

EXTENSION = "ipex"


def install(app: Flask, runtime: Runtime) -> None:
    """Give the app its runtime (once, in ``create_app``)."""
    app.extensions[EXTENSION] = runtime


def runtime(app: Flask | None = None) -> Runtime:
    """This app's runtime (default: the app handling the request); 503 while there is none."""
    found = (app if app is not None else current_app).extensions.get(EXTENSION)
    if not isinstance(found, Runtime):
        raise ServiceUnavailable("the service is not ready: its rules are not loaded")
    return found
