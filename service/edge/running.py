"""The running service's :class:`Runtime` and state store, held by the Flask app.

:func:`runtime` and :func:`state_store` are the one way to reach them.
"""

from __future__ import annotations

from flask import Flask, current_app

from ..runtime import Runtime
from ..state import StateStore
from .errors import ServiceUnavailable

EXTENSION = "ipex"
STATE_EXTENSION = "ipex_state"


def install(app: Flask, runtime: Runtime) -> None:
    """Give the app its runtime (once, in ``create_app``)."""
    app.extensions[EXTENSION] = runtime


def runtime(app: Flask | None = None) -> Runtime:
    """This app's runtime (default: the app handling the request); 503 while there is none."""
    found = (app if app is not None else current_app).extensions.get(EXTENSION)
    if not isinstance(found, Runtime):
        raise ServiceUnavailable("the service is not ready: its rules are not loaded")
    return found


def install_state(app: Flask, store: StateStore) -> None:
    """Give the app its state store (once, in ``create_app``)."""
    app.extensions[STATE_EXTENSION] = store


def state_store(app: Flask | None = None) -> StateStore:
    """This app's state store; 503 while there is none."""
    found = (app if app is not None else current_app).extensions.get(STATE_EXTENSION)
    if not isinstance(found, StateStore):
        raise ServiceUnavailable("the service is not ready: it has no state store")
    return found
