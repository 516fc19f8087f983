"""Settings from ``IPEX_`` environment variables; none is needed for a local run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

# What a Bulk Data export for screening needs to read (SMART v1 scopes; v2 servers
# accept ``.rs``: set IPEX_BULK_SCOPE).
BULK_SCOPE = ("system/Patient.read system/Condition.read system/Observation.read "
              "system/ServiceRequest.read")


class ConfigError(ValueError):
    """A setting has a value the service cannot use; it must not start."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every ``IPEX_`` setting, with its default (the README's table lists them)."""

    workers: int = 2
    max_body_mb: float = 64.0
    public_base_url: str | None = None
    cds_auth: str | None = None
    cds_issuers_file: str | None = None
    api_issuers_file: str | None = None
    fhir_timeout_s: float = 3.0
    cds_budget_s: float = 5.0
    fhir_max_pages: int = 20
    fhir_max_mb: float = 6.0
    fhir_max_entries: int = 20_000
    request_timeout_s: float = 10.0
    worker_timeout_s: int = 60
    state_db: str = "./var/ipex-screen.sqlite3"
    state_url: str | None = None
    state_timeout_s: float = 2.0
    feedback_retention_days: int = 365
    cors_origins: tuple[str, ...] = ()
    order_code: tuple[str, str, str] | None = None
    log_level: str = "INFO"
    profiles_dir: str | None = None
    max_json_depth: int = 64
    max_entries: int = 100_000
    bind_host: str | None = None
    smart_client_id: str = "ipex-screen-timeline"
    smart_scope: str = ("launch patient/Patient.rs patient/Condition.rs patient/Observation.rs "
                        "patient/ServiceRequest.rs")
    population_workers: int | None = None
    bulk_client_id: str | None = None
    bulk_key_file: str | None = None
    bulk_key_id: str | None = None
    bulk_scope: str = BULK_SCOPE
    bulk_timeout_s: float = 30.0
    bulk_deadline_s: float = 21600.0

    @property
    def order_coding(self) -> tuple[str, str] | None:
        return (self.order_code[0], self.order_code[1]) if self.order_code else None


def _order_code(value: str) -> tuple[str, str, str]:
    parts = value.split("|")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ConfigError("IPEX_ORDER_CODE must be 'system|code|display'")
    display = "|".join(parts[2:]) if len(parts) > 2 else ""
    return parts[0], parts[1], display


def _state_url(value: str) -> str:
    # Never echo the value: it may hold a password.
    if not value.strip().startswith(("postgresql://", "postgres://")):
        raise ConfigError("IPEX_STATE_URL must be a postgresql:// URL "
                          "(postgresql://user@host:port/database)")
    return value.strip()


def _number(name: str, value: str, kind: type[int] | type[float]) -> int | float:
    try:
        number = kind(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return number


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from the environment; keyword overrides win (tests use them)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    get = env.get
    if get("IPEX_WORKERS"):
        values["workers"] = int(_number("IPEX_WORKERS", get("IPEX_WORKERS", ""), int))
    if get("IPEX_MAX_BODY_MB"):
        values["max_body_mb"] = _number("IPEX_MAX_BODY_MB", get("IPEX_MAX_BODY_MB", ""), float)
    if get("IPEX_PUBLIC_BASE_URL"):
        values["public_base_url"] = get("IPEX_PUBLIC_BASE_URL", "").rstrip("/")
    if get("IPEX_CDS_AUTH"):
        mode = get("IPEX_CDS_AUTH", "").strip().lower()
        if mode not in ("jwt", "off"):
            raise ConfigError("IPEX_CDS_AUTH must be 'jwt' or 'off'")
        values["cds_auth"] = mode
    for name, key in (("IPEX_CDS_ISSUERS_FILE", "cds_issuers_file"),
                      ("IPEX_API_ISSUERS_FILE", "api_issuers_file"),
                      ("IPEX_PROFILES_DIR", "profiles_dir")):
        if get(name):
            values[key] = get(name)
    if get("IPEX_FHIR_TIMEOUT_S"):
        values["fhir_timeout_s"] = _number("IPEX_FHIR_TIMEOUT_S", get("IPEX_FHIR_TIMEOUT_S", ""),
                                           float)
    if get("IPEX_CDS_BUDGET_S"):
        values["cds_budget_s"] = _number("IPEX_CDS_BUDGET_S", get("IPEX_CDS_BUDGET_S", ""), float)
    if get("IPEX_FHIR_MAX_PAGES"):
        values["fhir_max_pages"] = int(_number("IPEX_FHIR_MAX_PAGES",
                                               get("IPEX_FHIR_MAX_PAGES", ""), int))
    if get("IPEX_FHIR_MAX_MB"):
        values["fhir_max_mb"] = _number("IPEX_FHIR_MAX_MB", get("IPEX_FHIR_MAX_MB", ""), float)
    if get("IPEX_FHIR_MAX_ENTRIES"):
        values["fhir_max_entries"] = int(_number("IPEX_FHIR_MAX_ENTRIES",
                                                 get("IPEX_FHIR_MAX_ENTRIES", ""), int))
    if get("IPEX_REQUEST_TIMEOUT_S"):
        values["request_timeout_s"] = _number("IPEX_REQUEST_TIMEOUT_S",
                                              get("IPEX_REQUEST_TIMEOUT_S", ""), float)
    if get("IPEX_WORKER_TIMEOUT_S"):
        values["worker_timeout_s"] = int(_number("IPEX_WORKER_TIMEOUT_S",
                                                  get("IPEX_WORKER_TIMEOUT_S", ""), int))
    if get("IPEX_STATE_DB"):
        values["state_db"] = get("IPEX_STATE_DB")
    if get("IPEX_STATE_URL"):
        values["state_url"] = _state_url(get("IPEX_STATE_URL", ""))
    if get("IPEX_STATE_TIMEOUT_S"):
        values["state_timeout_s"] = _number("IPEX_STATE_TIMEOUT_S",
                                            get("IPEX_STATE_TIMEOUT_S", ""), float)
    if get("IPEX_FEEDBACK_RETENTION_DAYS"):
        values["feedback_retention_days"] = int(_number(
            "IPEX_FEEDBACK_RETENTION_DAYS", get("IPEX_FEEDBACK_RETENTION_DAYS", ""), int))
    if get("IPEX_CORS_ORIGINS"):
        values["cors_origins"] = tuple(
            o.strip().rstrip("/") for o in get("IPEX_CORS_ORIGINS", "").split(",") if o.strip()
        )
    if get("IPEX_ORDER_CODE"):
        values["order_code"] = _order_code(get("IPEX_ORDER_CODE", ""))
    for name, key in (("IPEX_MAX_JSON_DEPTH", "max_json_depth"),
                      ("IPEX_MAX_ENTRIES", "max_entries")):
        if get(name):
            values[key] = int(_number(name, get(name, ""), int))
    for name, key in (("IPEX_SMART_CLIENT_ID", "smart_client_id"),
                      ("IPEX_SMART_SCOPE", "smart_scope")):
        if get(name, "").strip():
            values[key] = " ".join(get(name, "").split())
    values.update(_population(get))
    if get("IPEX_LOG_LEVEL"):
        level = get("IPEX_LOG_LEVEL", "").strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError("IPEX_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        values["log_level"] = level
    known = {f.name for f in fields(Settings)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(f"unknown settings: {sorted(unknown)}")
    values.update(overrides)
    return replace(Settings(), **values)


def _population(get: Any) -> dict[str, Any]:
    """Settings of ``ipex-screen population`` and of its Bulk Data client."""
    values: dict[str, Any] = {}
    if get("IPEX_POPULATION_WORKERS"):
        values["population_workers"] = int(_number(
            "IPEX_POPULATION_WORKERS", get("IPEX_POPULATION_WORKERS"), int))
    for name, key in (("IPEX_BULK_CLIENT_ID", "bulk_client_id"),
                      ("IPEX_BULK_KEY_FILE", "bulk_key_file"),
                      ("IPEX_BULK_KEY_ID", "bulk_key_id"),
                      ("IPEX_BULK_SCOPE", "bulk_scope")):
        if get(name):
            values[key] = get(name).strip()
    for name, key in (("IPEX_BULK_TIMEOUT_S", "bulk_timeout_s"),
                      ("IPEX_BULK_DEADLINE_S", "bulk_deadline_s")):
        if get(name):
            values[key] = _number(name, get(name), float)
    return values


def default_profiles_dir() -> Path:
    """Where the rules live: the installed ``fhir_profiles`` package."""
    import fhir_profiles

    return Path(fhir_profiles.__file__).parent
