"""Run a Bulk Data export on a FHIR server and download it: kick-off, poll, download.

``fetch_export(url, directory, settings)``:

1. kick-off: ``GET [url]/$export?_type=Patient,Condition,Observation,ServiceRequest``
   with ``Accept: application/fhir+json`` and ``Prefer: respond-async``; the server
   answers 202 with ``Content-Location`` (the status URL);
2. polling: ``GET`` the status URL, waiting what ``Retry-After`` says, showing
   ``X-Progress``, until 200 and the manifest (or 4xx/5xx with an OperationOutcome:
   the export failed, and its diagnostics are the message);
3. download: every output and error file, with the bearer token when the manifest
   says ``requiresAccessToken`` (only to the FHIR server's own origin), into
   ``directory`` with a local ``manifest.json``;
4. ``DELETE`` the status URL so the server can drop the files.

The whole fetch has one deadline (IPEX_BULK_DEADLINE_S); each request a timeout
(IPEX_BULK_TIMEOUT_S). SMART Backend Services authentication is used when
IPEX_BULK_CLIENT_ID and IPEX_BULK_KEY_FILE are set; without them requests go
without a token (an open test server).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urljoin, urlparse

import orjson
import requests

from ...config import Settings
from ..source import SCREENED_TYPES
from .auth import BackendServicesAuth, load_signing_key
from .errors import BulkConfigError, BulkError, BulkExportFailed, BulkHttpError
from .http import Clock, Deadline, Http, SystemClock, json_body, retry_after

__all__ = ["BulkError", "FetchedExport", "fetch_export"]

DEFAULT_POLL_S = 2.0
MAX_POLL_S = 60.0
CHUNK_BYTES = 1 << 20
_SAFE_NAME = re.compile(r"[A-Za-z]{1,64}")
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


@dataclass(slots=True)
class FetchedExport:
    """Where the export was written and what the server said about it."""

    directory: Path
    manifest_path: Path
    transaction_time: str | None
    output_files: int
    error_files: int
    error_issues: Counter[str] = field(default_factory=Counter)
    requires_access_token: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "transactionTime": self.transaction_time,
            "outputFiles": self.output_files,
            "errorFiles": self.error_files,
            "errorIssues": sum(self.error_issues.values()),
        }


def export_urls(url: str) -> tuple[str, str]:
    """(FHIR base, kick-off URL) for a Group, a Patient-level or a system-level export."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if parsed.scheme not in ("http", "https") or not host:
        raise BulkConfigError(f"--from needs an http(s) URL of a FHIR server, got {url!r}")
    if parsed.scheme == "http" and host not in _LOOPBACK:
        raise BulkConfigError("--from must use https (http is allowed on loopback only): "
                              "an access token is sent there")
    trimmed = url.split("?", 1)[0].rstrip("/").removesuffix("/$export")
    match = re.search(r"/(Group/[^/]+|Patient)$", trimmed)
    base = trimmed[:match.start()] if match else trimmed
    return base, trimmed + "/$export"


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = urlparse(url)
    return parsed.scheme, parsed.hostname or "", parsed.port


def _outcome_text(body: Any) -> str:
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        texts = [str(i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code"))
                 for i in body.get("issue") or [] if isinstance(i, dict)]
        if texts:
            return "; ".join(t[:300] for t in texts[:5])
    return "no OperationOutcome in the answer"


def _progress_text(value: str | None) -> str:
    return "".join(c for c in (value or "") if c.isprintable())[:100]


@dataclass(slots=True)
class BulkClient:
    http: Http
    base_url: str
    kickoff_url: str
    stream: TextIO = sys.stderr

    def say(self, text: str) -> None:
        self.stream.write(f"export: {text}\n")
        self.stream.flush()

    def kick_off(self) -> str:
        response = self.http.request(
            "GET", self.kickoff_url, doing="starting the export",
            params={"_type": ",".join(SCREENED_TYPES)},
            headers={"Accept": "application/fhir+json", "Prefer": "respond-async"})
        location = response.headers.get("Content-Location")
        if response.status_code != 202 or not location:
            raise BulkExportFailed(
                f"the server did not start the export (HTTP {response.status_code}): "
                f"{_outcome_text(json_body(response))}")
        status_url = urljoin(self.kickoff_url, location)
        self.say("started; waiting for the server to prepare the files")
        return status_url

    def poll(self, status_url: str) -> dict[str, Any]:
        interval = DEFAULT_POLL_S
        while True:
            response = self.http.request("GET", status_url, doing="waiting for the export",
                                         headers={"Accept": "application/json"})
            if response.status_code == 202:
                progress = _progress_text(response.headers.get("X-Progress"))
                self.say(f"in progress{f' ({progress})' if progress else ''}")
                wait = retry_after(response, self.http.clock)
                if wait is None:
                    wait, interval = interval, min(interval * 2, MAX_POLL_S)
                self.http.deadline.wait(wait, "waiting for the export")
                continue
            body = json_body(response)
            if response.status_code == 200 and isinstance(body, dict) and isinstance(
                    body.get("output"), list):
                return body
            if response.status_code >= 400:
                raise BulkExportFailed(f"the export failed (HTTP {response.status_code}): "
                                       f"{_outcome_text(body)}")
            raise BulkHttpError(f"the export status answer is not a manifest "
                                f"(HTTP {response.status_code})")

    def download(self, manifest: dict[str, Any], directory: Path) -> FetchedExport:
        directory.mkdir(parents=True, exist_ok=True)
        needs_token = manifest.get("requiresAccessToken") is True
        local: dict[str, Any] = {k: manifest.get(k) for k in (
            "transactionTime", "request", "requiresAccessToken")}
        counts: Counter[str] = Counter()
        issues: Counter[str] = Counter()
        for section in ("output", "error"):
            entries = manifest.get(section) or []
            local[section] = []
            for item in entries if isinstance(entries, list) else []:
                name = self._download_one(item, section, counts, directory, needs_token)
                local[section].append({"type": item.get("type"), "url": name})
                if section == "error":
                    issues.update(_issue_codes(directory / name))
        (directory / "manifest.json").write_bytes(
            orjson.dumps(local, option=orjson.OPT_INDENT_2) + b"\n")
        self.say(f"downloaded {len(local['output'])} output and {len(local['error'])} "
                 f"error files ({sum(issues.values())} error issues)")
        return FetchedExport(directory, directory / "manifest.json",
                             manifest.get("transactionTime"), len(local["output"]),
                             len(local["error"]), issues, needs_token)

    def _download_one(self, item: Any, section: str, counts: Counter[str], directory: Path,
                      needs_token: bool) -> str:
        url = item.get("url") if isinstance(item, dict) else None
        kind = item.get("type") if isinstance(item, dict) else None
        if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https"):
            raise BulkHttpError(f"the manifest's {section} list has an entry without an "
                                "http(s) url")
        if needs_token and _origin(url) != _origin(self.base_url):
            raise BulkHttpError("the manifest asks for the access token on another origin "
                                f"({urlparse(url).hostname}); refusing to send it there")
        label = kind if isinstance(kind, str) and _SAFE_NAME.fullmatch(kind) else "output"
        if section == "error":
            label = f"{label}.error"
        counts[label] += 1
        name = f"{label}.{counts[label]}.ndjson"
        target = directory / name
        partial = target.with_suffix(".part")
        doing = f"downloading {name}"
        for attempt in range(2):
            response = self.http.request("GET", url, doing=doing, stream=True,
                                         authorised=needs_token,
                                         headers={"Accept": "application/fhir+ndjson"})
            if response.status_code != 200:
                raise BulkHttpError(f"HTTP {response.status_code} {doing}")
            try:
                with response, open(partial, "wb") as handle:
                    for chunk in response.iter_content(CHUNK_BYTES):
                        self.http.deadline.check(doing)
                        handle.write(chunk)
                break
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt:
                    raise BulkHttpError(f"{type(exc).__name__} {doing}") from None
        partial.replace(target)
        return name

    def delete(self, status_url: str) -> None:
        """Tell the server the files may go (best effort: a failure here changes nothing)."""
        try:
            self.http.request("DELETE", status_url, doing="cleaning up").close()
        except BulkError:
            pass


def _issue_codes(path: Path) -> Counter[str]:
    codes: Counter[str] = Counter()
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                outcome = orjson.loads(line)
            except orjson.JSONDecodeError:
                codes["unreadable"] += 1
                continue
            issues = outcome.get("issue") if isinstance(outcome, dict) else None
            for issue in issues if isinstance(issues, list) else [None]:
                code = issue.get("code") if isinstance(issue, dict) else None
                codes[code if isinstance(code, str) else "unknown"] += 1
    return codes


def fetch_export(url: str, directory: Path, settings: Settings, *,
                 clock: Clock | None = None, session: requests.Session | None = None,
                 stream: TextIO = sys.stderr) -> FetchedExport:
    """Kick off, poll and download an export into ``directory``; see the module docstring."""
    base, kickoff = export_urls(url)
    clock = clock or SystemClock()
    http = Http(session or requests.Session(), Deadline(clock, settings.bulk_deadline_s),
                settings.bulk_timeout_s, clock)
    if bool(settings.bulk_client_id) != bool(settings.bulk_key_file):
        raise BulkConfigError("set both IPEX_BULK_CLIENT_ID and IPEX_BULK_KEY_FILE for SMART "
                              "Backend Services, or neither for an open server")
    if settings.bulk_client_id and settings.bulk_key_file:
        auth = BackendServicesAuth(http, base, settings.bulk_client_id,
                                   load_signing_key(settings.bulk_key_file,
                                                    settings.bulk_key_id),
                                   settings.bulk_scope)
        http.token = auth.token
    client = BulkClient(http, base, kickoff, stream)
    status_url = client.kick_off()
    manifest = client.poll(status_url)
    fetched = client.download(manifest, directory)
    client.delete(status_url)
    return fetched
