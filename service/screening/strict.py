"""Strict handling (FHIR ``Prefer: handling=strict``): everything that was not read, and
everything the FHIR R4 validator finds wrong in the entries the rules read.

Lenient reading (the default) reads what it can and reports the rest as not read;
a caller that would rather have the request refused than screened on a partly read
record asks for strict handling, and gets every problem with its location.
``fhir.resources`` (R4B, identical to R4 for these resources) is the validator; it
is loaded only when a strict request comes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .facts import NotRead
from .record import entries_read, read_bundle
from .ruleset import RuleSet

_MODELS: dict[str, Any] = {}


def _model(kind: str) -> Any:
    if not _MODELS:
        from fhir.resources.R4B.condition import Condition
        from fhir.resources.R4B.observation import Observation
        from fhir.resources.R4B.patient import Patient
        from fhir.resources.R4B.servicerequest import ServiceRequest

        _MODELS.update(Patient=Patient, Condition=Condition, Observation=Observation,
                       ServiceRequest=ServiceRequest)
    return _MODELS[kind]


def _validation(where: str, resource: Mapping[str, Any]) -> list[NotRead]:
    try:
        _model(str(resource["resourceType"])).model_validate(resource)
    except ValidationError as exc:
        return [NotRead(".".join([where, *(str(p) for p in err["loc"])]),
                        f"not valid FHIR R4: {err['msg']}") for err in exc.errors()]
    except (TypeError, ValueError, KeyError) as exc:
        return [NotRead(where, f"not valid FHIR R4: {exc}")]
    return []


def strict_problems(
    bundle: Mapping[str, Any],
    rules: RuleSet,
    *,
    as_of: dt.date,
    order_code: tuple[str, str] | None = None,
) -> list[NotRead]:
    """Every problem of a Bundle the screen would have read past, each once, in order."""
    found: dict[tuple[str, str], NotRead] = {}
    for record in read_bundle(bundle, rules, as_of=as_of, order_code=order_code):
        for problem in record.not_read:
            found.setdefault((problem.location, problem.reason), problem)
    for where, resource in entries_read(bundle, rules, order_code=order_code):
        for problem in _validation(where, resource):
            found.setdefault((problem.location, problem.reason), problem)
    return list(found.values())
