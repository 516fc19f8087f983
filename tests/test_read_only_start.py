"""``ipex-screen serve`` on a read-only filesystem: JSON lines naming each path, /readyz 503.

As ``docker run --read-only`` without its tmpfs (Kubernetes' ``readOnlyRootFilesystem``)
and without Docker: in a private mount namespace (``unshare -m``, as root, which CI is)
the directory given as ``TMPDIR``, ``/tmp``, ``/var/tmp`` and the working directory are
read-only bind mounts, so Python finds no usable temporary directory at all, as in the
issue's crash, and the state file (under ``/tmp`` here) cannot be written either.
Without root, a directory without write permission stands in for the metrics
directory. Every line the server writes must be a JSON object (no traceback).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT.parent / "shared" / "data" / "synthea"


def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind -o ro / /mnt"],
                           capture_output=True, timeout=10, check=False)
    return probe.returncode == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str, body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers={"Content-Type": "application/fhir+json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _serve(tmp_path: Path, *, hide_shm: bool = False) -> tuple[subprocess.Popen[bytes], Path,
                                                                  int]:
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    port = _free_port()
    serve = [str(Path(sys.executable).with_name("ipex-screen")), "serve", "--port", str(port)]
    env = dict(os.environ, IPEX_CDS_AUTH="off", IPEX_STATE_DB=str(state / "s.sqlite3"))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if _can_unshare():
        # /tmp last: the read-only source itself lies under /tmp.
        mounts = [f"mount --bind -o ro {readonly} {target}" for target in
                  (*(["/dev/shm"] if hide_shm else []), "/var/tmp", "/tmp")]
        env["TMPDIR"] = "/tmp"
        command = ["unshare", "-m", "sh", "-c",
                   " && ".join([*mounts, "cd /var/tmp", 'exec "$@"']), "sh", *serve]
    else:
        readonly.chmod(0o555)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(readonly / "metrics")
        command = serve
    log = tmp_path / "server.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=handle,
                                   start_new_session=True)
    return process, log, port


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    return int(process.returncode)


def _lines(log: Path) -> list[dict[str, Any]]:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    assert all(isinstance(p, dict) for p in parsed)
    assert "Traceback" not in log.read_text(errors="replace")
    return parsed


def test_a_read_only_start_names_each_path_and_is_not_ready(tmp_path: Path) -> None:
    process, log, port = _serve(tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if _get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        status, ready = _get(port, "/readyz")
        record = (SYNTHEA / "Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json"
                  ).read_bytes()
        screened, result = _get(port, "/fhir/$ipex-screen", record)
    finally:
        exit_code = _stop(process)
    lines = _lines(log)
    named = {line["needed_for"]: line for line in lines if "needed_for" in line}
    assert named["metrics directory"]["level"] == "ERROR"
    if _can_unshare():
        assert named["temporary directory"]["path"] == "/tmp"
        assert named["temporary directory"]["reason"] == "Read-only file system"
        assert "Read-only file system" in named["metrics directory"]["reason"]
        # The state file lies under the read-only /tmp too: the store names it itself.
        state_file = str(tmp_path / "state" / "s.sqlite3")
        assert any(line["level"] == "ERROR" and state_file in line["msg"]
                   and "Read-only file system" in line["msg"] for line in lines)
        assert state_file in ready["reason"]
    else:
        assert named["metrics directory"]["reason"] == "Permission denied"
    assert status == 503
    assert {u["neededFor"] for u in ready["unwritable"]} == set(named)
    assert {u["path"] for u in ready["unwritable"]} == {n["path"] for n in named.values()}
    # Still serving: the record (under 8 MiB) is screened.
    assert screened == 200 and result["resourceType"] == "RiskAssessment"
    assert exit_code == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare to hide /dev/shm")
def test_with_no_writable_directory_at_all_the_start_stops_with_one_json_line(
        tmp_path: Path) -> None:
    process, log, _ = _serve(tmp_path, hide_shm=True)
    try:
        exit_code = process.wait(timeout=60)
    finally:
        _stop(process)
    lines = _lines(log)
    assert exit_code == 1
    (fatal,) = [line for line in lines if line["level"] == "CRITICAL"]
    assert "heartbeat" in fatal["msg"] and fatal["path"] == "/tmp"
