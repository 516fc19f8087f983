"""CDS Hooks feedback: the spec's examples, validation, idempotence and durability in SQLite."""

from __future__ import annotations

import concurrent.futures
import copy
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from service.cds.feedback import FeedbackLog
from service.state.sqlite import SqliteStore

from .cds_support import CDS_DATA, FEEDBACK, cds_app
from .conftest import load_json

EXAMPLES = ["spec-feedback-accepted.json", "spec-feedback-overridden.json",
            "spec-feedback-override-reason.json"]


def _store(tmp_path: Path) -> FeedbackLog:
    return FeedbackLog(SqliteStore(tmp_path / "state.sqlite3", timeout_s=2), retention_days=365)


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_spec_examples_are_stored_once(tmp_path: Path, name: str) -> None:
    client = cds_app(tmp_path).test_client()
    body = load_json(CDS_DATA / name)
    first = client.post(FEEDBACK, json=body)
    assert first.status_code == 200 and first.get_json() == {"stored": 1, "duplicates": 0}
    again = client.post(FEEDBACK, json=body)
    assert again.status_code == 200 and again.get_json() == {"stored": 0, "duplicates": 1}
    (row,) = _store(tmp_path).rows()
    item = body["feedback"][0]
    assert (row["card"], row["outcome"]) == (item["card"], item["outcome"])
    assert row["outcome_timestamp"].startswith(item["outcomeTimestamp"][:19])
    if item["outcome"] == "accepted":
        assert item["acceptedSuggestions"][0]["id"] in row["accepted_suggestions"]
    reason = item.get("overrideReason")
    if reason:
        assert row["override_code"] == reason["reason"]["code"]
        assert row["user_comment"] == reason["userComment"]


def test_accepted_then_overridden_are_two_outcomes_of_one_card(tmp_path: Path) -> None:
    client = cds_app(tmp_path).test_client()
    accepted = load_json(CDS_DATA / "spec-feedback-accepted.json")
    overridden = copy.deepcopy(accepted)
    overridden["feedback"][0] = {"card": accepted["feedback"][0]["card"],
                                 "outcome": "overridden",
                                 "outcomeTimestamp": "2021-12-11T11:00:00+01:00"}
    both = {"feedback": accepted["feedback"] + overridden["feedback"] + accepted["feedback"]}
    assert client.post(FEEDBACK, json=both).get_json() == {"stored": 2, "duplicates": 1}
    rows = _store(tmp_path).rows()
    assert [r["outcome"] for r in rows] == ["accepted", "overridden"]
    assert rows[1]["outcome_timestamp"] == "2021-12-11T10:00:00+00:00"  # kept in UTC


def test_feedback_survives_a_restart_and_stays_idempotent(tmp_path: Path) -> None:
    body = load_json(CDS_DATA / "spec-feedback-override-reason.json")
    assert cds_app(tmp_path).test_client().post(FEEDBACK, json=body).status_code == 200
    restarted = cds_app(tmp_path).test_client()
    assert restarted.post(FEEDBACK, json=body).get_json() == {"stored": 0, "duplicates": 1}
    assert len(_store(tmp_path).rows()) == 1
    with sqlite3.connect(tmp_path / "state.sqlite3") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_workers_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    apps = [cds_app(tmp_path).test_client() for _ in range(4)]
    cards = [str(uuid.uuid4()) for _ in range(40)]

    def send(index: int) -> int:
        body = {"feedback": [{"card": cards[index % len(cards)], "outcome": "overridden",
                              "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
        return int(apps[index % len(apps)].post(FEEDBACK, json=body).status_code)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, range(len(cards) * 2)))  # each card twice
    assert statuses == [200] * len(cards) * 2
    assert sorted(r["card"] for r in _store(tmp_path).rows()) == sorted(cards)


def _item(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"card": str(uuid.uuid4()), "outcome": "accepted",
                            "acceptedSuggestions": [{"id": "s-1"}],
                            "outcomeTimestamp": "2021-12-11T10:05:31Z"}
    for key, value in changes.items():
        if value is KeyError:
            item.pop(key)
        else:
            item[key] = value
    return item


@pytest.mark.parametrize(("body", "named"), [
    ({}, "feedback"),
    ({"feedback": []}, "feedback"),
    ({"feedback": {"card": "x"}}, "feedback"),
    ({"feedback": [_item(card=KeyError)]}, "card"),
    ({"feedback": [_item(card="")]}, "card"),
    ({"feedback": [_item(outcome="dismissed")]}, "outcome"),
    ({"feedback": [_item(acceptedSuggestions=KeyError)]}, "acceptedSuggestions"),
    ({"feedback": [_item(acceptedSuggestions=[{}])]}, "acceptedSuggestions"),
    ({"feedback": [_item(outcomeTimestamp=KeyError)]}, "outcomeTimestamp"),
    ({"feedback": [_item(outcomeTimestamp="yesterday")]}, "outcomeTimestamp"),
    ({"feedback": [_item(outcomeTimestamp="2021-12-11T10:05:31")]}, "outcomeTimestamp"),
    ({"feedback": [_item(outcome="overridden", acceptedSuggestions=KeyError,
                         overrideReason={"reason": {"code": "x"}})]}, "overrideReason"),
    # the bounds (docs/security.md, "Feedback")
    ({"feedback": [_item(card="c" * 129)]}, "card"),
    ({"feedback": [_item(card="c" * 1_000_000)]}, "card"),
    ({"feedback": [_item(acceptedSuggestions=[{"id": "s" * 129}])]}, "acceptedSuggestions"),
    ({"feedback": [_item(acceptedSuggestions=[{"id": f"s-{i}"} for i in range(21)])]},
     "acceptedSuggestions"),
    ({"feedback": [_item(outcome="overridden", acceptedSuggestions=KeyError,
                         overrideReason={"userComment": "x" * 4097})]}, "userComment"),
    ({"feedback": [_item(outcome="overridden", acceptedSuggestions=KeyError,
                         overrideReason={"reason": {"system": "s" * 1025, "code": "c"}})]},
     "system"),
    ({"feedback": [_item(outcome="overridden", acceptedSuggestions=KeyError,
                         overrideReason={"reason": {"system": "http://x", "code": ""}})]},
     "code"),
    ({"feedback": [_item(outcomeTimestamp="0001-01-01T00:00:00+14:00")]}, "outcomeTimestamp"),
    ({"feedback": [_item(outcomeTimestamp="9999-12-31T23:59:59-01:00")]}, "outcomeTimestamp"),
], ids=lambda v: str(v)[:60] if isinstance(v, str) else None)
def test_invalid_feedback_is_400_and_nothing_is_stored(
        tmp_path: Path, body: dict[str, Any], named: str) -> None:
    client = cds_app(tmp_path).test_client()
    good = _item()
    mixed = {**body, "feedback": [good, *body["feedback"]]} if isinstance(
        body.get("feedback"), list) and body["feedback"] else body
    response = client.post(FEEDBACK, json=mixed)
    assert response.status_code == 400
    assert named in response.get_json()["error"]
    assert _store(tmp_path).rows() == []  # all or nothing


def test_unknown_fields_in_feedback_are_tolerated(tmp_path: Path) -> None:
    client = cds_app(tmp_path).test_client()
    body = {"feedback": [_item(extension={"x": 1})], "extra": True}
    assert client.post(FEEDBACK, json=body).status_code == 200


def test_a_store_that_cannot_be_written_is_503_not_500(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    client = cds_app(tmp_path).test_client()
    client.application.extensions["ipex_cds"] = type(
        client.application.extensions["ipex_cds"])(
        mode="off", feedback=FeedbackLog(SqliteStore(blocker / "state.sqlite3", timeout_s=2),
                                         retention_days=365))
    response = client.post(FEEDBACK, json=load_json(CDS_DATA / EXAMPLES[1]))
    assert response.status_code == 503 and "again" in response.get_json()["error"]


def test_the_state_directory_is_created_on_first_write(tmp_path: Path) -> None:
    store = FeedbackLog(SqliteStore(tmp_path / "var" / "nested" / "state.sqlite3", timeout_s=2),
                        retention_days=365)
    item = {"card": "c", "outcome": "overridden", "outcomeTimestamp":
            __import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").UTC)}
    assert store.add([item]).new == 1
    assert [r["card"] for r in store.rows()] == ["c"]


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00Z", "0001-01-01T23:59:59+14:00",
                                       "9999-12-31T23:59:59Z", "9999-12-31T00:00:00-12:00"])
def test_timestamps_at_the_ends_of_the_range_are_stored(tmp_path: Path, timestamp: str) -> None:
    client = cds_app(tmp_path).test_client()
    response = client.post(FEEDBACK, json={"feedback": [_item(outcomeTimestamp=timestamp)]})
    assert response.status_code == 200 and response.get_json()["stored"] == 1


def test_the_most_items_and_the_longest_fields_are_accepted(tmp_path: Path) -> None:
    client = cds_app(tmp_path).test_client()
    longest = _item(card="c" * 128, acceptedSuggestions=[{"id": "s" * 128}] * 20)
    override = _item(outcome="overridden", acceptedSuggestions=KeyError, overrideReason={
        "reason": {"system": "s" * 1024, "code": "c" * 256, "display": "d" * 1024},
        "userComment": "u" * 4096})
    items = [longest, override] + [_item() for _ in range(98)]
    response = client.post(FEEDBACK, json={"feedback": items})
    assert response.status_code == 200 and response.get_json()["stored"] == 100


def test_more_items_than_one_call_may_hold_is_413_and_nothing_is_stored(tmp_path: Path) -> None:
    client = cds_app(tmp_path).test_client()
    response = client.post(FEEDBACK, json={"feedback": [_item() for _ in range(101)]})
    assert response.status_code == 413
    assert "at most 100" in response.get_json()["error"]
    assert _store(tmp_path).rows() == []
