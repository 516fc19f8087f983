"""Two replicas, one truth: two ``ipex-screen serve`` instances on one PostgreSQL database.

Each replica is its own gunicorn master (two workers each) on its own port, started
at the same moment on an empty database (so they also race to migrate it), with the
same issuers file and public base URL, as README "Several replicas" asks.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bench.postgres_cluster import Cluster
from service.state.postgres import PostgresStore

from .cds_support import prefetch_call
from .conftest import SCENARIOS, load_json
from .jwt_support import Signer, jwks, write_issuers
from .service_process import ServiceProcess

PUBLIC = "https://ipex.example.org"
SERVICE = "/cds-services/ipex-foxp3-screen"
FEEDBACK = SERVICE + "/feedback"
CALL = prefetch_call(load_json(SCENARIOS / "classic-infant-boy-triad.json")["bundle"])


@pytest.fixture(scope="module")
def database(postgres: Cluster) -> Iterator[str]:
    with postgres.database() as url:
        yield url


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, database: str, es384: Signer
             ) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    directory = tmp_path_factory.mktemp("replicas")
    issuers = write_issuers(directory / "cds-issuers.json", inline=jwks(es384))
    env = {"IPEX_STATE_URL": database, "IPEX_CDS_ISSUERS_FILE": str(issuers),
           "IPEX_PUBLIC_BASE_URL": PUBLIC}
    hosts = [directory / "host-a", directory / "host-b"]  # nothing shared on disk
    for host in hosts:
        host.mkdir()
    first, second = ServiceProcess(hosts[0], env), ServiceProcess(hosts[1], env)
    try:
        for replica in (first, second):
            replica.wait_listening()
            assert replica.wait_status("/readyz", 200)["state"] == "postgresql"
        yield first, second
    finally:
        first.stop()
        second.stop()


def _bearer(signer: Signer, path: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.token(aud=PUBLIC + path)}"}


def _feedback(card: str) -> dict[str, Any]:
    return {"feedback": [{"card": card, "outcome": "overridden",
                          "outcomeTimestamp": "2026-03-01T10:00:00Z"}]}


def _stored_cards(database: str) -> list[str]:
    store = PostgresStore(database, timeout_s=5)
    try:
        return [row["card"] for row in store.feedback_rows()]
    finally:
        store.close()


def test_a_token_accepted_by_one_replica_is_a_replay_at_the_other(
        replicas: tuple[ServiceProcess, ServiceProcess], es384: Signer) -> None:
    for first, second in (replicas, replicas[::-1]):
        token = _bearer(es384, SERVICE)
        status, body = first.call("POST", SERVICE, CALL, headers=token)
        assert status == 200 and isinstance(body["cards"], list)
        status, body = second.call("POST", SERVICE, CALL, headers=token)
        assert (status, body) == (401, None), "the replay must be refused, bare"
        status, _ = first.call("POST", SERVICE, CALL, headers=token)
        assert status == 401


def test_feedback_posted_to_both_is_all_there_once_each(
        replicas: tuple[ServiceProcess, ServiceProcess], es384: Signer, database: str) -> None:
    cards = [f"both-{uuid.uuid4()}" for _ in range(20)]
    answers: list[tuple[int, Any]] = []

    def send(replica: ServiceProcess) -> None:
        for card in cards:
            answers.append(replica.call("POST", FEEDBACK, _feedback(card),
                                        headers=_bearer(es384, FEEDBACK)))

    threads = [threading.Thread(target=send, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [status for status, _ in answers] == [200] * 40
    assert sum(body["stored"] for _, body in answers) == 20
    assert sum(body["duplicates"] for _, body in answers) == 20
    stored = [card for card in _stored_cards(database) if card.startswith("both-")]
    assert sorted(stored) == sorted(cards)


def test_killing_one_replica_loses_nothing_the_other_acknowledged(
        replicas: tuple[ServiceProcess, ServiceProcess], es384: Signer, database: str) -> None:
    doomed, survivor = replicas
    accepted_by_doomed = _bearer(es384, SERVICE)
    assert doomed.call("POST", SERVICE, CALL, headers=accepted_by_doomed)[0] == 200
    acknowledged: list[str] = []
    stop = threading.Event()

    def send(replica: ServiceProcess, prefix: str) -> None:
        while not stop.is_set():
            card = f"{prefix}-{uuid.uuid4()}"
            try:
                status, _ = replica.call("POST", FEEDBACK, _feedback(card),
                                         headers=_bearer(es384, FEEDBACK), timeout_s=10)
            except OSError:
                continue  # the killed replica: nothing was acknowledged
            if status == 200:
                acknowledged.append(card)

    threads = [threading.Thread(target=send, args=(r, p))
               for r, p in ((doomed, "doomed"), (survivor, "survivor"))]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    doomed.kill()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    by_survivor = [c for c in acknowledged if c.startswith("survivor-")]
    assert len(by_survivor) > 5 and any(c.startswith("doomed-") for c in acknowledged)
    stored = set(_stored_cards(database))
    assert [c for c in acknowledged if c not in stored] == []
    assert survivor.call("GET", "/readyz")[0] == 200
    status, _ = survivor.call("POST", SERVICE, CALL, headers=accepted_by_doomed)
    assert status == 401, "the crashed replica's accepted token stays used"
