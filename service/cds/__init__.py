"""CDS Hooks 2.0: discovery, the ``ipex-foxp3-screen`` patient-view service, feedback.

Registered on the app by :func:`register`; see :mod:`.api` for a call's path.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable

from flask import Flask, Response, request

from ..config import Settings
from .api import EXTENSION, CdsState, bp
from .auth import announce, auth_mode
from .cors import CorsPolicy
from .feedback import FeedbackStore

__all__ = ["register"]

log = logging.getLogger("ipex_screen.cds")


def register(app: Flask, settings: Settings, *, now: Callable[[], dt.datetime]) -> None:
    """Add the CDS Hooks endpoints, their CORS policy and auth gate to the app.

    ``now`` is the runtime's clock: it stamps when feedback was received.
    """
    mode = auth_mode(settings)
    announce(settings, mode)
    store = FeedbackStore(settings.state_db, now=now)
    try:
        store.prepare()
    except (OSError, sqlite3.Error) as exc:  # feedback answers 503 until it can be written
        log.error("the CDS feedback store cannot be opened: %s", type(exc).__name__)
    app.extensions[EXTENSION] = CdsState(mode=mode, feedback=store)
    policy = CorsPolicy(settings.cors_origins)

    def _cors(response: Response) -> Response:
        if request.path == "/cds-services" or request.path.startswith("/cds-services/"):
            return policy.apply(response)
        return response

    app.after_request(_cors)

    app.register_blueprint(bp)
