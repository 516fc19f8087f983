"""A throwaway PostgreSQL server for the tests and benchmarks: ``initdb`` in a temp directory.

One cluster per test session (started on first use, stopped at the end), listening on
a free loopback port and on a unix socket in its own directory; each test gets a fresh
database. PostgreSQL refuses to run as root, so as root the cluster runs as the
``postgres`` user (Debian's package creates it) or ``nobody``. The server binaries come
from Debian's ``postgresql`` package, which ``scripts/test`` installs when missing.
Durability is switched off (``fsync``): these databases live for seconds.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

SUPERUSER = "ipex"


def server_bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: the newest /usr/lib/postgresql/N/bin, or PATH."""
    def version(path: Path) -> int:
        return int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Cluster:
    """One PostgreSQL server in a temporary directory; :meth:`stop` removes it all."""

    def __init__(self) -> None:
        bin_dir = server_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: run "
                               "scripts/test, which installs Debian's postgresql package")
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="ipex-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = _unprivileged_account()
            self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.started = False

    def _run(self, *args: str, timeout_s: float = 60) -> None:
        result = subprocess.run([str(self.bin_dir / args[0]), *args[1:]], capture_output=True,
                                text=True, timeout=timeout_s, cwd=self.root, check=False,
                                **self._as)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr}{log}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
                   " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
                   " -c shared_buffers=16MB -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", options, "start")
        self.started = True

    def stop(self) -> None:
        try:
            if self.started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
                self.started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def version(self) -> int:
        with psycopg.connect(self.url(), autocommit=True) as connection:
            return connection.info.server_version // 10_000

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh, empty database for one test (dropped after it); yields its URL."""
        name = "t_" + uuid.uuid4().hex[:16]
        assert re.fullmatch(r"t_[0-9a-f]{16}", name)
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.url(name)
        finally:
            with psycopg.connect(self.url(), autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _unprivileged_account() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists "
                       "to run PostgreSQL as")
