"""One ``requests.Session`` for the whole fetch: explicit timeouts, one deadline, retries.

Every request gets ``(connect, read)`` timeouts no longer than the time left before
the deadline. 429 and transient 5xx answers (any 5xx except one whose body is an
OperationOutcome without a ``transient`` issue: that is the server's final word)
and connection errors are retried up to ``MAX_RETRIES`` times, waiting what
``Retry-After`` says (seconds or an HTTP date), else 1, 2, 4 ... 30 s.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from .errors import BulkDeadlineExceeded, BulkHttpError

MAX_RETRIES = 5
MAX_BACKOFF_S = 30.0


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(slots=True)
class Deadline:
    """The time left for the whole fetch, from ``clock.monotonic``."""

    clock: Clock
    seconds: float
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock.monotonic()

    def remaining(self) -> float:
        return self.seconds - (self.clock.monotonic() - self.started)

    def check(self, doing: str) -> float:
        left = self.remaining()
        if left <= 0:
            raise BulkDeadlineExceeded(
                f"the export was not fetched within {self.seconds:g} s "
                f"(IPEX_BULK_DEADLINE_S) while {doing}")
        return left

    def wait(self, seconds: float, doing: str) -> None:
        """Sleep, unless the wait would pass the deadline: then fail now."""
        if seconds >= self.remaining():
            raise BulkDeadlineExceeded(
                f"the export was not fetched within {self.seconds:g} s "
                f"(IPEX_BULK_DEADLINE_S): the server asked to wait {seconds:g} s more "
                f"while {doing}")
        self.clock.sleep(seconds)


def retry_after(response: requests.Response, clock: Clock) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - clock.time())


def is_transient(response: requests.Response) -> bool:
    if response.status_code == 429:
        return True
    if response.status_code < 500:
        return False
    outcome = json_body(response)
    if isinstance(outcome, dict) and outcome.get("resourceType") == "OperationOutcome":
        codes = {i.get("code") for i in outcome.get("issue") or [] if isinstance(i, dict)}
        return "transient" in codes
    return True


def json_body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@dataclass(slots=True)
class Http:
    """Requests with the deadline, retries, and an optional bearer token."""

    session: requests.Session
    deadline: Deadline
    timeout_s: float
    clock: Clock
    token: Callable[[bool], str] | None = None  # token(refresh) -> access token

    def request(self, method: str, url: str, *, doing: str, headers: Mapping[str, str] = {},
                authorised: bool = True, **kwargs: Any) -> requests.Response:
        attempt = 0
        refreshed = False
        while True:
            left = self.deadline.check(doing)
            sent = dict(headers)
            if authorised and self.token is not None:
                sent["Authorization"] = f"Bearer {self.token(False)}"
            timeout = min(self.timeout_s, left)
            try:
                response = self.session.request(method, url, headers=sent,
                                                timeout=(timeout, timeout), **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                attempt = self._backoff(attempt, None, doing,
                                        f"{type(exc).__name__} {_where(url)}")
                continue
            if response.status_code == 401 and authorised and self.token is not None \
                    and not refreshed:
                # An access token that expired mid-fetch: get a new one, once per request.
                response.close()
                refreshed = True
                self.token(True)
                continue
            if is_transient(response):
                wait = retry_after(response, self.clock)
                response.close()
                attempt = self._backoff(attempt, wait, doing,
                                        f"HTTP {response.status_code} {_where(url)}")
                continue
            return response

    def _backoff(self, attempt: int, wait: float | None, doing: str, what: str) -> int:
        if attempt >= MAX_RETRIES:
            raise BulkHttpError(f"{what} while {doing}, still after {MAX_RETRIES} retries")
        self.deadline.wait(wait if wait is not None else min(2.0 ** attempt, MAX_BACKOFF_S),
                           doing)
        return attempt + 1


def _where(url: str) -> str:
    """A URL without its query (signed download URLs carry credentials there)."""
    return "from " + url.split("?", 1)[0]
