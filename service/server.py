"""``ipex-screen serve``: the app under gunicorn, loaded once before the workers fork.

gunicorn manages the processes; each worker serves HTTP with waitress's buffering
event loop (:mod:`service.serving`), so slow or lying clients hold no worker.
"""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from .config import Settings, load_settings

log = logging.getLogger("ipex_screen")


class _Arbiter(Arbiter):  # type: ignore[misc]
    """gunicorn's master, cutting the listen backlog to 0 when the whole server stops.

    Then the kernel completes no new handshake while one waits (a new client's SYN is
    dropped, retried, and refused once the socket closes), and the workers answer what
    already waits there (:meth:`service.serving.worker.BufferedWorker.drain`). Only
    here: a worker stopped alone (``TTOU``, a ``HUP`` reload) shares the socket with
    workers that go on, and must leave its backlog as it is; nor during a ``USR2``
    re-exec, whose new master shares it too.
    """

    def stop(self, graceful: bool = True) -> None:
        if self.reexec_pid == self.master_pid == 0:
            for listener in self.LISTENERS:
                try:
                    listener.sock.listen(0)
                except OSError:
                    pass
        super().stop(graceful)


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

    def run(self) -> None:
        _Arbiter(self).run()


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


#: Seconds a worker has after SIGTERM to answer what it accepted and what waits in the
#: backlog: a request still arriving (IPEX_REQUEST_TIMEOUT_S, 10 s by default), its CDS
#: fetching (IPEX_CDS_BUDGET_S, 5 s) and the screening fit in it.
GRACEFUL_TIMEOUT_S = 20
IDLE_S = 5.0  # a connection that sends nothing is closed after this
MAX_HEADER_BYTES = 64 * 1024  # request line and headers together (a JWT is at most 16 KiB)


def limits(settings: Settings) -> Any:
    from .serving.channel import Limits

    return Limits(request_timeout_s=settings.request_timeout_s,
                  max_body_bytes=int(settings.max_body_mb * 1024 * 1024),
                  max_header_bytes=MAX_HEADER_BYTES, idle_s=IDLE_S)


def serve(*, host: str, port: int, workers: int | None, http: str = "buffered") -> int:
    """Run gunicorn in the foreground until TERM or INT.

    ``http="sync"`` runs gunicorn's own sync worker instead, the model slow clients
    starved: only for benchmarks that compare the two (``bench.load --http sync``).
    """
    settings = load_settings(bind_host=host)
    from .observability.logs import configure_logging, gunicorn_logger_class

    configure_logging(level=settings.log_level)
    # waitress's own lines: a queue-depth warning on every burst, and INFO lines naming
    # raw paths; the request hooks already log each request by route.
    logging.getLogger("waitress").setLevel(max(logging.WARNING, logging.root.level))
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    from .app import create_app

    app = create_app(settings=settings)
    warm_up(app)
    from .serving.paths import heartbeat_directory, temporary_directory
    from .serving.worker import worker_class

    heartbeat = heartbeat_directory()
    if heartbeat is None:
        log.critical("cannot start: no directory can hold gunicorn's worker heartbeat files "
                     "(/dev/shm and the temporary directory %s cannot be written); mount a "
                     "tmpfs at /tmp or set TMPDIR", temporary_directory(),
                     extra={"fields": {"path": temporary_directory()}})
        return 1
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers or settings.workers,
        "worker_class": worker_class(limits(settings)) if http == "buffered" else http,
        "preload_app": True,
        # The worker's event loop beats at each turn; a worker whose request holds it
        # this long is stopped (it answers that request with a JSON 503 first) and
        # replaced.
        "timeout": settings.worker_timeout_s,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "backlog": 2048,
        "worker_connections": 1000,
        "worker_tmp_dir": heartbeat,
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
