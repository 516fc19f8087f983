"""CDS Hooks 2.0: discovery, the ``ipex-foxp3-screen`` patient-view service, feedback.

Registered on the app by :func:`register`; see :mod:`.api` for a call's path.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from flask import Flask, Response, request

from ..config import Settings
from ..state import StateStore
from .api import EXTENSION, CdsState, bp
from .auth import announce, auth_mode
from .cors import CorsPolicy
from .feedback import FeedbackLog

__all__ = ["register"]

log = logging.getLogger("ipex_screen.cds")


def register(app: Flask, settings: Settings, store: StateStore, *,
             now: Callable[[], dt.datetime]) -> None:
    """Add the CDS Hooks endpoints, their CORS policy and auth gate to the app.

    ``now`` is the runtime's clock: it stamps when feedback was received.
    """
    mode = auth_mode(settings)
    announce(settings, mode)
    feedback = FeedbackLog(store, retention_days=settings.feedback_retention_days, now=now)
    feedback.prune_if_due()  # at start; feedback answers 503 while the store is unusable
    app.extensions[EXTENSION] = CdsState(mode=mode, feedback=feedback)
    policy = CorsPolicy(settings.cors_origins)

    def _cors(response: Response) -> Response:
        if request.path == "/cds-services" or request.path.startswith("/cds-services/"):
            return policy.apply(response)
        return response

    app.after_request(_cors)

    app.register_blueprint(bp)
