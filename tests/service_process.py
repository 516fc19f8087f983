"""``ipex-screen serve`` as a hospital runs it, in its own process group, always stopped.

    with served(tmp_path, {"IPEX_STATE_URL": url}) as service:
        status, body = service.call("GET", "/readyz")
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.postgres_cluster import free_port

CLI = Path(sys.executable).with_name("ipex-screen")


class ServiceProcess:
    def __init__(self, directory: Path, env: Mapping[str, str], *, workers: int = 2,
                 wrapper: Sequence[str] = ()) -> None:
        assert CLI.exists(), f"{CLI}: install the project into .venv first"
        self.port = free_port()
        self.log = directory / f"serve-{self.port}.log"
        self._log_file = self.log.open("wb")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("IPEX_")}
        self.process = subprocess.Popen(
            [*wrapper, str(CLI), "serve", "--port", str(self.port), "--workers", str(workers)],
            env={**clean, "PYTHONDONTWRITEBYTECODE": "1", "IPEX_LOG_LEVEL": "WARNING", **env},
            cwd=directory, stdout=subprocess.DEVNULL, stderr=self._log_file,
            start_new_session=True,
        )

    def call(self, method: str, path: str, body: Any = None, *,
             headers: Mapping[str, str] | None = None, timeout_s: float = 30
             ) -> tuple[int, Any]:
        """The status and the JSON body (None when empty) of one request."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            sent = dict(headers or {})
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                sent["Content-Type"] = "application/json"
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
        finally:
            connection.close()

    def wait_listening(self, *, timeout_s: float = 60) -> None:
        """Until the server answers /healthz (ready or not)."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process.poll() is None, f"the server exited: {self.log_text()[-2000:]}"
            try:
                if self.call("GET", "/healthz", timeout_s=2)[0] == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"not listening in {timeout_s:.0f} s"
            time.sleep(0.1)

    def wait_status(self, path: str, status: int, *, timeout_s: float = 30) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            found, body = self.call("GET", path, timeout_s=5)
            if found == status:
                return body
            assert time.monotonic() < deadline, f"{path} stayed {found}: {body}"
            time.sleep(0.2)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"unparsed": line})
        return lines

    def kill(self) -> None:
        """SIGKILL to the master and every worker: a crash, nothing is flushed."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log_file.close()


@contextmanager
def served(directory: Path, env: Mapping[str, str], **options: Any) -> Iterator[ServiceProcess]:
    service = ServiceProcess(directory, env, **options)
    try:
        service.wait_listening()
        yield service
    finally:
        service.stop()
