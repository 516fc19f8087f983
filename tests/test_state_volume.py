"""A SQLite state volume the service cannot write: foreign-owned, read-only, or full.

Permissions do not stop root, so when the suite runs as root the service runs under
``setpriv`` without the capabilities that bypass them (``CAP_DAC_OVERRIDE``,
``CAP_DAC_READ_SEARCH``): a mode-0555 directory is then what a root-owned volume is
to the image's non-root user. The service must say where and why, in the log and in
``/readyz``, answer 503 where it needs the store, and recover once the volume is fixed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.state.sqlite import SqliteStore

from .service_process import served

FEEDBACK = "/cds-services/ipex-foxp3-screen/feedback"
# As root: no capability that ignores file modes (else the suite's user already obeys them).
AS_SERVICE = (["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
              if os.geteuid() == 0 else [])
SERVICE_UID = os.geteuid()

PROBE = """
import json, resource, signal, sys
from service.state import state_problem
from service.state.sqlite import SqliteStore
if len(sys.argv) > 2:  # a file that cannot grow past this size, as on a full disk
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
print(json.dumps(state_problem(SqliteStore(sys.argv[1], timeout_s=1))))
"""


def _probe(path: Path, *extra: str) -> str | None:
    """What the service's own readiness check says about a store, from a separate process."""
    done = subprocess.run([*AS_SERVICE, sys.executable, "-c", PROBE, str(path), *extra],
                          capture_output=True, text=True, timeout=60, check=True)
    found: str | None = json.loads(done.stdout)
    return found


@pytest.fixture()
def volume(tmp_path: Path) -> Path:
    directory = tmp_path / "volume"
    directory.mkdir()
    return directory


def test_a_foreign_owned_directory_is_named_with_the_user_who_cannot_write(volume: Path) -> None:
    volume.chmod(0o555)
    problem = _probe(volume / "state.sqlite3")
    assert problem is not None
    assert str(volume / "state.sqlite3") in problem
    assert f"the directory {volume} is not writable by uid {SERVICE_UID}" in problem
    volume.chmod(0o755)
    assert _probe(volume / "state.sqlite3") is None


def test_a_read_only_store_file_is_named_with_the_cause(volume: Path) -> None:
    path = volume / "state.sqlite3"
    assert SqliteStore(path, timeout_s=1).start()
    path.chmod(0o444)
    problem = _probe(path)
    assert problem is not None and str(path) in problem
    assert "attempt to write a readonly database" in problem
    assert f"its -wal and -shm files must be writable by uid {SERVICE_UID}" in problem
    for file in volume.iterdir():  # SQLite made them read-only like the database
        file.chmod(0o644)
    assert _probe(path) is None


def test_a_store_file_that_cannot_grow_is_named_with_the_cause(volume: Path) -> None:
    path = volume / "state.sqlite3"
    assert SqliteStore(path, timeout_s=1).start()
    problem = _probe(path, "4096")
    assert problem is not None and str(path) in problem
    assert "disk I/O error" in problem
    assert _probe(path) is None


def test_the_service_on_a_foreign_owned_volume_says_so_and_recovers(
        tmp_path: Path, volume: Path) -> None:
    volume.chmod(0o555)
    state = volume / "state.sqlite3"
    env = {"IPEX_STATE_DB": str(state), "IPEX_CDS_AUTH": "off"}
    with served(tmp_path, env, workers=1, wrapper=AS_SERVICE) as service:
        reason = service.wait_status("/readyz", 503)["reason"]
        assert str(state) in reason and f"not writable by uid {SERVICE_UID}" in reason
        feedback = {"feedback": [{"card": "c", "outcome": "overridden",
                                  "outcomeTimestamp": "2026-03-01T10:00:00Z"}]}
        status, body = service.call("POST", FEEDBACK, feedback)
        assert status == 503 and "nothing was stored" in body["error"]
        assert service.call("GET", "/cds-services")[0] == 200
        errors = [line for line in service.log_lines() if line.get("level") == "ERROR"]
        assert errors and errors[0]["state_store"] == str(state)
        assert f"not writable by uid {SERVICE_UID}" in errors[0]["cause"]
        volume.chmod(0o755)
        service.wait_status("/readyz", 200)
        status, body = service.call("POST", FEEDBACK, feedback)
        assert status == 200 and body == {"stored": 1, "duplicates": 0}
