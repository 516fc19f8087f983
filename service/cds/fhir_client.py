"""Read a CDS Client's FHIR server for one CDS call: bounded in time, pages and origin.

One :class:`FhirClient` serves one call: one ``requests.Session``, the bearer token the
client gave (``fhirAuthorization.access_token``), connect and read timeouts of
``IPEX_FHIR_TIMEOUT_S`` each, one deadline for the whole call (``IPEX_CDS_BUDGET_S``)
that every socket read obeys (see :mod:`.deadline_http`: a server sending a byte a
second cannot stretch it), at most ``IPEX_FHIR_MAX_PAGES`` pages per search, at most
``IPEX_FHIR_MAX_MB`` read and ``IPEX_FHIR_MAX_ENTRIES`` search entries kept over all the
reads of the call (what a worker's memory can hold), ``next`` links on the server's own
origin only and never to a page already read, and no redirects (a redirect could carry
the token elsewhere).

    FhirError             (metric outcome)  every failure; the CDS call answers 412
    ├── FhirUnauthorized      http_error    401: the token was refused
    ├── FhirForbidden         http_error    403: the token does not allow this read
    ├── FhirNotFound          not_found     404 / 410
    ├── FhirServerError       http_error    5xx
    ├── FhirHttpError         http_error    any other non-2xx (3xx included)
    ├── FhirTimeout           timeout       connect or read took over IPEX_FHIR_TIMEOUT_S
    ├── FhirConnectionError   connection    DNS, refused, TLS, reset
    ├── FhirInvalidResponse   invalid       not JSON, or not the resource type asked for
    ├── FhirBudgetExceeded    over_budget   IPEX_CDS_BUDGET_S ran out
    ├── FhirTooLarge          too_large     over IPEX_FHIR_MAX_MB or IPEX_FHIR_MAX_ENTRIES
    └── FhirRefused           refused       not sent: a next link to another origin or
        │                                   back to a page already read,
        └── FhirPageCapExceeded             or more pages than IPEX_FHIR_MAX_PAGES

Messages name the failure, never the token or a URL (URLs hold patient ids).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import orjson
import requests

from ..edge.fhir_json import FHIR_JSON, parse_json
from ..observability import metrics
from .deadline_http import deadline_session


class FhirError(Exception):
    """A FHIR read or search that gave no usable data."""

    outcome = "http_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class FhirUnauthorized(FhirError):
    outcome = "http_error"


class FhirForbidden(FhirError):
    outcome = "http_error"


class FhirNotFound(FhirError):
    outcome = "not_found"


class FhirServerError(FhirError):
    outcome = "http_error"


class FhirHttpError(FhirError):
    outcome = "http_error"


class FhirTimeout(FhirError):
    outcome = "timeout"


class FhirConnectionError(FhirError):
    outcome = "connection"


class FhirInvalidResponse(FhirError):
    outcome = "invalid"


class FhirBudgetExceeded(FhirError):
    outcome = "over_budget"


class FhirTooLarge(FhirError):
    outcome = "too_large"


class FhirRefused(FhirError):
    outcome = "refused"


class FhirPageCapExceeded(FhirRefused):
    pass


def _by_status(status: int) -> FhirError:
    if status == 401:
        return FhirUnauthorized("the FHIR server refused the access token (401)", status=status)
    if status == 403:
        return FhirForbidden("the access token does not allow this read (403)", status=status)
    if status in (404, 410):
        return FhirNotFound(f"the FHIR server has no such resource ({status})", status=status)
    if status >= 500:
        return FhirServerError(f"the FHIR server failed ({status})", status=status)
    return FhirHttpError(f"the FHIR server answered {status}", status=status)


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class Deadline:
    """The time left for one CDS call's fetching."""

    def __init__(self, seconds: float, *, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._ends = clock() + seconds

    def remaining(self) -> float:
        return float(self._ends - self._clock())


class FhirClient:
    """Reads and searches on one FHIR server for one CDS call."""

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str | None,
        timeout_s: float,
        deadline: Deadline,
        max_pages: int,
        max_bytes: int,
        max_entries: int,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = origin(self.base_url)
        self._timeout_s = timeout_s
        self._deadline = deadline
        self._max_pages = max_pages
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        self._bytes_read = 0  # over every read of this call
        self._entries = 0  # search entries fetched over every search of this call
        # trust_env stays on: an operator's HTTPS_PROXY and REQUESTS_CA_BUNDLE apply.
        self._session = session or deadline_session(deadline.remaining, read_timeout=timeout_s)
        self._headers = {"Accept": FHIR_JSON}
        if access_token:
            self._headers["Authorization"] = f"Bearer {access_token}"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """``GET [base]/{type}/{id}``: the resource, of that type."""
        url = f"{self.base_url}/{resource_type}/{quote(resource_id, safe='')}"
        resource = self._get(url, params=None)
        if resource.get("resourceType") != resource_type:
            raise FhirInvalidResponse(f"a read of a {resource_type} returned something else")
        return resource

    def search(self, resource_type: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """``GET [base]/{type}?params``, following ``next`` pages: every entry's resource."""
        url = f"{self.base_url}/{resource_type}"
        page = self._get(url, params=params)
        first = requests.Request("GET", url, params=params).prepare().url or url
        return self._collect(page, pages_read=1, read=[first], current=first)

    def entries_from(self, bundle: Mapping[str, Any], *, pages_read: int = 0
                     ) -> list[dict[str, Any]]:
        """The resources of a searchset and of every page its ``next`` links lead to."""
        return self._collect(bundle, pages_read=pages_read, read=[],
                             current=self.base_url + "/", fetched=False)

    def _collect(self, bundle: Mapping[str, Any], *, pages_read: int, read: list[str],
                 current: str, fetched: bool = True) -> list[dict[str, Any]]:
        resources: list[dict[str, Any]] = []
        page: Mapping[str, Any] = bundle
        pages = pages_read
        seen = set(read)
        while True:
            if page.get("resourceType") != "Bundle":
                raise FhirInvalidResponse("a search returned something other than a Bundle")
            entries = page.get("entry") or []
            if fetched:
                self._count_entries(entries)
            for entry in entries:
                if isinstance(entry, Mapping) and isinstance(entry.get("resource"), Mapping):
                    resources.append(dict(entry["resource"]))
            following = next_link(page)
            if following is None:
                return resources
            target = urljoin(current, following)
            if origin(target) != self._origin:
                metrics.record_fhir_fetch(0.0, "refused")
                raise FhirRefused("a next link points to another origin than fhirServer")
            if target in seen:
                metrics.record_fhir_fetch(0.0, "refused")
                raise FhirRefused("a next link points back to a page already read")
            if pages >= self._max_pages:
                metrics.record_fhir_fetch(0.0, "refused")
                raise FhirPageCapExceeded(
                    f"the search has more than {self._max_pages} pages (IPEX_FHIR_MAX_PAGES)"
                )
            seen.add(target)
            page = self._get(target, params=None)
            pages += 1
            current = target
            fetched = True

    def _count_entries(self, entries: Any) -> None:
        self._entries += len(entries) if isinstance(entries, list) else 0
        if self._entries > self._max_entries:
            metrics.record_fhir_fetch(0.0, "too_large")
            raise FhirTooLarge(f"the searches returned more than {self._max_entries} entries "
                               "(IPEX_FHIR_MAX_ENTRIES)")

    def _get(self, url: str, *, params: Mapping[str, str] | None) -> dict[str, Any]:
        remaining = self._deadline.remaining()
        if remaining <= 0:
            metrics.record_fhir_fetch(0.0, "over_budget")
            raise FhirBudgetExceeded("the time budget for fetching (IPEX_CDS_BUDGET_S) ran out")
        limit = min(self._timeout_s, remaining)
        started = time.perf_counter()
        try:
            document = self._fetch(url, params=params, timeout=limit)
        except FhirError as error:
            metrics.record_fhir_fetch(time.perf_counter() - started, error.outcome)
            raise
        metrics.record_fhir_fetch(time.perf_counter() - started, "ok")
        return document

    def _fetch(self, url: str, *, params: Mapping[str, str] | None, timeout: float
               ) -> dict[str, Any]:
        try:
            with self._session.get(url, params=params, headers=self._headers,
                                   timeout=(timeout, timeout), allow_redirects=False,
                                   stream=True) as response:
                if not 200 <= response.status_code < 300:
                    raise _by_status(response.status_code)
                body = self._body(response)
        except requests.RequestException as exc:
            # Whatever the read was doing when the deadline passed, the budget is why.
            if self._deadline.remaining() <= 0:
                raise FhirBudgetExceeded(
                    "the time budget for fetching (IPEX_CDS_BUDGET_S) ran out") from None
            if isinstance(exc, requests.Timeout):
                raise FhirTimeout(
                    f"the FHIR server did not answer within {self._timeout_s:g} s") from None
            raise FhirConnectionError(
                f"the FHIR server could not be reached ({type(exc).__name__})") from None
        try:
            document = parse_json(body)
        except orjson.JSONDecodeError:
            raise FhirInvalidResponse("the FHIR server's answer is not JSON") from None
        if not isinstance(document, dict):
            raise FhirInvalidResponse("the FHIR server's answer is not a FHIR resource")
        return document

    def _too_large(self) -> FhirTooLarge:
        return FhirTooLarge(f"the FHIR server's answers are larger than "
                            f"{self._max_bytes / 1048576:g} MB in all (IPEX_FHIR_MAX_MB)")

    def _body(self, response: requests.Response) -> bytes:
        allowed = self._max_bytes - self._bytes_read
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > allowed:
            raise self._too_large()  # refused before a byte of it is read
        chunks: list[bytes] = []
        for chunk in response.iter_content(chunk_size=65536):
            chunks.append(chunk)
            self._bytes_read += len(chunk)
            if self._bytes_read > self._max_bytes:
                raise self._too_large()
            if self._deadline.remaining() <= 0:  # a session without deadline sockets
                raise FhirBudgetExceeded(
                    "the time budget for fetching (IPEX_CDS_BUDGET_S) ran out")
        return b"".join(chunks)


def next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, Mapping) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url.strip():
                return url.strip()
    return None
