"""Every Prometheus metric of the service, the ``record_*`` functions that feed them, and
the ``GET /metrics`` text.

Labels are closed sets (the Flask url rule, never the raw path; a fixed list of
outcomes), so no patient id or token can become a label and the number of series
stays small. Recording never raises: a metrics failure must not cost a clinical answer.

Under gunicorn, values live in ``PROMETHEUS_MULTIPROC_DIR`` (see :mod:`.multiproc`)
and :func:`render` sums every worker's; without it (tests, ``flask run``) the
process's own registry is rendered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from .multiproc import enabled as multiproc_enabled

log = logging.getLogger("ipex_screen.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CHANNELS = frozenset({"fhir", "cds"})
TIERS = frozenset({"low", "moderate", "high"})
#: What one outbound FHIR fetch (one HTTP GET, one page) ended in.
FHIR_FETCH_OUTCOMES = frozenset({
    "ok",            # 2xx with a usable resource or Bundle
    "not_found",     # 404 / 410
    "http_error",    # any other non-2xx status
    "timeout",       # connect or read timeout (IPEX_FHIR_TIMEOUT_S)
    "connection",    # DNS, refused, TLS, reset
    "invalid",       # the answer is not JSON / not the FHIR expected
    "over_budget",   # not started or cut because IPEX_CDS_BUDGET_S ran out
    "too_large",     # over IPEX_FHIR_MAX_MB or IPEX_FHIR_MAX_ENTRIES for the call
    "refused",       # not sent: e.g. a next link to another origin
})
#: CDS Hooks feedback outcomes (2.0.1: ``accepted`` or ``overridden``).
FEEDBACK_OUTCOMES = frozenset({"accepted", "overridden"})
OTHER = "other"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "ipex_http_requests", "HTTP requests answered, by endpoint (url rule), method and status.",
    ["endpoint", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "ipex_http_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint (url rule), method and status.",
    ["endpoint", "method", "status"], buckets=_LATENCY_BUCKETS,
)
SCREENINGS = Counter(
    "ipex_screenings",
    "Patients screened, by channel (fhir or cds), tier and whether testing was suppressed "
    "(already tested or diagnosed).",
    ["channel", "tier", "suppressed"],
)
FHIR_FETCH_LATENCY = Histogram(
    "ipex_fhir_fetch_duration_seconds",
    "Time of each outbound FHIR fetch (one HTTP request) of a CDS call, by outcome.",
    ["outcome"], buckets=_LATENCY_BUCKETS,
)
FHIR_FETCH_FAILURES = Counter(
    "ipex_fhir_fetch_failures",
    "Outbound FHIR fetches that did not give usable data, by outcome.",
    ["outcome"],
)
CDS_FEEDBACK = Counter(
    "ipex_cds_feedback", "CDS Hooks feedback entries received, by outcome.", ["outcome"],
)


class Screened(Protocol):
    """What :func:`record_screenings` reads of a ``ScreeningResult``."""

    @property
    def tier(self) -> str: ...

    @property
    def suppressed(self) -> bool: ...


def _closed(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER


def record_request(*, endpoint: str, method: str, status: int, seconds: float) -> None:
    """Count one answered HTTP request; ``endpoint`` is the url rule (or ``<unmatched>``)."""
    labels = (endpoint, method if method in METHODS else OTHER, str(status))
    try:
        HTTP_REQUESTS.labels(*labels).inc()
        HTTP_LATENCY.labels(*labels).observe(max(seconds, 0.0))
    except Exception as exc:  # metrics must never fail a request
        log.warning("metrics: cannot record a request: %s", type(exc).__name__)


def record_screenings(results: Iterable[Screened], *, channel: str) -> None:
    """Count the patients of one screening call (``channel`` is ``fhir`` or ``cds``)."""
    try:
        for result in results:
            SCREENINGS.labels(_closed(channel, CHANNELS), _closed(result.tier, TIERS),
                              "true" if result.suppressed else "false").inc()
    except Exception as exc:
        log.warning("metrics: cannot record a screening: %s", type(exc).__name__)


def record_fhir_fetch(seconds: float, outcome: str) -> None:
    """Record one outbound FHIR fetch: its duration and outcome (one of FHIR_FETCH_OUTCOMES).

    Any outcome but ``ok`` also counts as a failure. An unknown outcome is recorded as
    ``other`` rather than raising.
    """
    label = _closed(outcome, FHIR_FETCH_OUTCOMES)
    try:
        FHIR_FETCH_LATENCY.labels(label).observe(max(seconds, 0.0))
        if label != "ok":
            FHIR_FETCH_FAILURES.labels(label).inc()
    except Exception as exc:
        log.warning("metrics: cannot record a FHIR fetch: %s", type(exc).__name__)


def record_feedback(outcome: str) -> None:
    """Count one CDS Hooks feedback entry (``accepted`` or ``overridden``; else ``other``)."""
    try:
        CDS_FEEDBACK.labels(_closed(outcome, FEEDBACK_OUTCOMES)).inc()
    except Exception as exc:
        log.warning("metrics: cannot record feedback: %s", type(exc).__name__)


def render() -> bytes:
    """The Prometheus text exposition: summed over every worker under gunicorn."""
    if multiproc_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
