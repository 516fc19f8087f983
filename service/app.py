"""The Flask app factory: one blueprint per concern over one screening runtime."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask

from .config import Settings, load_settings
from .edge import running
from .edge.handlers import register_error_handlers
from .runtime import Runtime, utc_now


def create_app(
    test_config: Mapping[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    today: Callable[[], dt.date] | None = None,
    now: Callable[[], dt.datetime] = utc_now,
) -> Flask:
    """Build the app; ``test_config`` overrides settings by field name.

    ``today`` and ``now`` are the service's clock (see :class:`Runtime`): the date a
    call screens as of unless it names one, and the time stamped on what it writes.
    """
    settings = settings or load_settings(**dict(test_config or {}))
    runtime = Runtime.start(settings, today=today, now=now)
    app = Flask(__name__)
    from .observability.hooks import install_request_hooks  # first: it times all the rest
    from .observability.logs import log_level

    install_request_hooks(app)
    logging.getLogger("ipex_screen").setLevel(log_level(settings.log_level))
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_body_mb * 1024 * 1024)
    running.install(app, runtime)

    from . import fhir_api, operations
    from . import publication_api as publication
    from .edge import headers, openapi
    from .security import guard
    from .state import open_store
    from .timeline import api as timeline

    store = open_store(settings)
    store.start()  # migrations; when the store is down, readiness says so until it is back
    running.install_state(app, store)
    app.extensions[guard.EXTENSION] = guard.build_security(
        settings, store, clock=lambda: runtime.now().timestamp())
    headers.register_security_headers(app)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(fhir_api.bp)
    app.register_blueprint(operations.bp)
    app.register_blueprint(publication.bp)
    app.register_blueprint(timeline.bp)
    from . import cds

    cds.register(app, settings, store, now=runtime.now)
    register_error_handlers(app)
    return app
