"""The directories ``ipex-screen serve`` must write, checked at start and by ``/readyz``.

In a hardened container the root filesystem is read-only and only what is mounted for
it is writable (README, "Docker"). The server needs:

- the **temporary directory** (``TMPDIR``, else ``/tmp``): a request body or an answer
  over 8 MiB is kept there while it is sent, and the default metrics directory is
  made there;
- the **metrics directory** (``PROMETHEUS_MULTIPROC_DIR``, else a fresh one in the
  temporary directory): each worker's metric values, summed by ``GET /metrics``;
- one directory for gunicorn's worker heartbeat files: ``/dev/shm`` (a tmpfs in every
  container) when it can be written, else the temporary directory.

(The state store, ``IPEX_STATE_DB``, is checked by the store itself.)

At start each directory that cannot be written is named in one JSON log line with the
reason (``Read-only file system``, ``Permission denied``...), never a traceback; the
service still starts, and ``/readyz`` answers 503 naming it for as long as it cannot
be written. Only when no directory at all can hold the heartbeat files does the start
stop (exit code 1), since gunicorn cannot run a worker then.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass

log = logging.getLogger("ipex_screen.server")

SHM = "/dev/shm"


@dataclass(frozen=True, slots=True)
class Unwritable:
    """A directory the server needs and cannot write, and why."""

    what: str  # "temporary directory", "metrics directory"
    path: str
    reason: str
    consequence: str

    def text(self) -> str:
        return f"cannot write the {self.what} {self.path}: {self.reason}; {self.consequence}"


def why_unwritable(directory: str) -> str | None:
    """None when a file can be made (and removed) in ``directory``; else the reason."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def temporary_directory() -> str:
    """The directory Python's ``tempfile`` uses (``TMPDIR``, else the first of ``/tmp``,
    ``/var/tmp``, ``/usr/tmp`` and the working directory that can be written), or, when
    none can, the one it would have used first."""
    try:
        return tempfile.gettempdir()
    except OSError:  # "No usable temporary directory found"
        for name in ("TMPDIR", "TEMP", "TMP"):
            if os.environ.get(name):
                return os.environ[name]
        return "/tmp"


class Paths:
    """What was found at start, and the live check ``/readyz`` makes."""

    def __init__(self) -> None:
        self.metrics_dir: str | None = None  # in use (multiprocess metrics on)
        self.metrics_failed: Unwritable | None = None  # could not be prepared at start
        self.checked = False

    def start(self, *, metrics_dir: str | None, metrics_error: Unwritable | None) -> None:
        self.metrics_dir = metrics_dir
        self.metrics_failed = metrics_error
        self.checked = True
        for problem in self.problems():
            log.error(problem.text(), extra={"fields": {
                "path": problem.path, "reason": problem.reason, "needed_for": problem.what}})

    def problems(self) -> list[Unwritable]:
        """Every needed directory that cannot be written now (empty when not serving)."""
        if not self.checked:
            return []
        found: list[Unwritable] = []
        temporary = temporary_directory()
        reason = why_unwritable(temporary)
        if reason:
            found.append(Unwritable("temporary directory", temporary, reason,
                                    "request bodies over 8 MiB cannot be received; mount a "
                                    "tmpfs there or set TMPDIR"))
        if self.metrics_failed is not None:
            found.append(self.metrics_failed)
        elif self.metrics_dir is not None:
            reason = why_unwritable(self.metrics_dir)
            if reason:
                found.append(Unwritable("metrics directory", self.metrics_dir, reason,
                                        "metric values cannot be recorded"))
        return found


PATHS = Paths()


def heartbeat_directory() -> str | None:
    """Where gunicorn keeps its worker heartbeat files: /dev/shm, else the temp directory."""
    for candidate in (SHM, temporary_directory()):
        if os.path.isdir(candidate) and why_unwritable(candidate) is None:
            return candidate
    return None


def prepare_metrics() -> None:
    """Prepare the metrics directory (before prometheus-client is imported); never raise.

    When it cannot be written, metrics stay in each worker (``GET /metrics`` then shows
    the values of the worker that answers) and the start logs why.
    """
    from ..observability.multiproc import ENV, prepare_multiproc_dir

    wanted = os.environ.get(ENV) or os.path.join(temporary_directory(),
                                                 "ipex-screen-metrics-XXXXXXXX")
    try:
        directory: str | None = str(prepare_multiproc_dir())
        reason = why_unwritable(directory) if directory else None
    except OSError as exc:
        directory = None
        reason = why_unwritable(temporary_directory()) if ENV not in os.environ else None
        reason = reason or exc.strerror or type(exc).__name__
    if reason is None:
        PATHS.start(metrics_dir=directory, metrics_error=None)
        return
    os.environ.pop(ENV, None)
    PATHS.start(metrics_dir=None, metrics_error=Unwritable(
        "metrics directory", directory or wanted, reason,
        "GET /metrics shows the answering worker's values only; make it writable "
        "(PROMETHEUS_MULTIPROC_DIR, or a tmpfs at the temporary directory) and restart"))
