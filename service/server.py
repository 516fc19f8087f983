"""``ipex-screen serve``: the app under gunicorn, loaded once before the workers fork."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from .config import load_settings

log = logging.getLogger("ipex_screen")


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # older gunicorn lacks e.g. control_socket_disable
                self.cfg.set(key, value)

    def load(self) -> Any:
        return self.application


def warm_up(app: Any) -> None:
    """Load the FHIR models and run one screening so the first real request is not slow."""
    from .edge.running import runtime
    from .warmup import WARM_UP_BUNDLE

    runtime(app).screen(WARM_UP_BUNDLE)


def _child_exit(server: Any, worker: Any) -> None:
    """Let prometheus-client drop a dead worker's live gauges (its counters stay summed)."""
    from prometheus_client import multiprocess

    from .observability.multiproc import enabled

    if enabled():
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def serve(*, host: str, port: int, workers: int | None) -> int:
    """Run gunicorn in the foreground until TERM or INT."""
    settings = load_settings(bind_host=host)
    from .observability.logs import configure_logging, gunicorn_logger_class

    configure_logging(level=settings.log_level)
    from .app import create_app

    app = create_app(settings=settings)
    warm_up(app)
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers or settings.workers,
        "worker_class": "sync",
        "preload_app": True,
        "timeout": 60,
        "graceful_timeout": 20,
        "keepalive": 5,
        "limit_request_line": 8190,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "proc_name": "ipex-screen",
        # gunicorn 27's control socket lives in $HOME: two servers on a host would share
        # it, and a non-root container may have no writable home. Nothing here uses it.
        "control_socket_disable": True,
        "logger_class": gunicorn_logger_class(),
        "child_exit": _child_exit,
    }
    _Server(app, options).run()
    return 0
