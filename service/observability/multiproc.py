"""prometheus-client's multiprocess directory, prepared before prometheus-client is imported.

Under gunicorn each worker writes its metric values to files in
``PROMETHEUS_MULTIPROC_DIR`` and ``GET /metrics`` sums them. prometheus-client reads
the variable when it is imported, so ``ipex-screen serve`` calls
:func:`prepare_multiproc_dir` first. Files left by an earlier run would be summed
into this one's counts: the directory is wiped at start.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiproc_dir(*, environ: dict[str, str] | None = None) -> Path:
    """Use ``PROMETHEUS_MULTIPROC_DIR`` (its ``*.db`` files removed) or a fresh temp directory.

    Sets the variable in ``environ`` (default ``os.environ``) and returns the directory.
    A directory this function created is removed when the process that created it exits.
    """
    env: dict[str, str] | os._Environ[str] = os.environ if environ is None else environ
    given = env.get(ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        # Only prometheus-client's own files: an operator's directory may hold others.
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix="ipex-screen-metrics-"))
        env[ENV] = str(directory)
        owner = os.getpid()

        def remove() -> None:
            # Forked gunicorn workers run atexit too; only the creator removes it.
            if os.getpid() == owner:
                shutil.rmtree(directory, ignore_errors=True)

        atexit.register(remove)
    return directory


def enabled() -> bool:
    """Whether metrics are shared between processes through files."""
    return bool(os.environ.get(ENV))
