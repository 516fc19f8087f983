"""Gather one patient's resources for a ``patient-view`` call: prefetch first, else the FHIR server.

Per key (CDS Hooks 2.0 "Prefetch Template" and the contract):

- present and a resource or searchset Bundle: used as given (a Bundle's ``next``
  pages are fetched, same origin only);
- present as ``null``: the client's query found nothing; nothing is fetched;
- present holding an ``OperationOutcome``, or absent: fetched from ``fhirServer``
  with ``fhirAuthorization.access_token``;
- anything that cannot be obtained within ``IPEX_CDS_BUDGET_S``: 412.

Resources of another type or whose subject is another patient are dropped, so the
screening sees exactly this patient's Conditions, Observations and ServiceRequests.
An entry that cannot be read (no resource, no ``resourceType``, a subject that is no
Reference) is passed on to the screening, which names it as not read; each resource
keeps where it came from (``prefetch.conditions.entry[3].resource``) so that a
problem is reported in the caller's terms, not as a place in a Bundle it never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..edge.errors import BadRequest, PreconditionFailed
from .fhir_client import Deadline, FhirClient, FhirError, next_link

log = logging.getLogger("ipex_screen.cds")

#: key -> (the template EHRs are asked to run, resource type, search parameter or None for a read)
TEMPLATES: dict[str, tuple[str, str, str | None]] = {
    "patient": ("Patient/{{context.patientId}}", "Patient", None),
    "conditions": ("Condition?patient={{context.patientId}}", "Condition", "patient"),
    "observations": ("Observation?patient={{context.patientId}}", "Observation", "patient"),
    "orders": ("ServiceRequest?patient={{context.patientId}}", "ServiceRequest", "patient"),
}


@dataclass(frozen=True, slots=True)
class Found:
    """One resource of the record (or an entry that could not be read), and where it was:
    ``origin`` with ``{i}`` standing for its position (formatted only when a problem is
    reported, so a call with nothing to report formats nothing)."""

    resource: Any
    origin_template: str
    index: int = 0

    @property
    def origin(self) -> str:
        return self.origin_template.replace("{i}", str(self.index))


@dataclass(slots=True)
class PrefetchedResources:
    """The prefetched (or fetched) resources of one patient-view call, ready to screen."""

    patient_id: str
    patient: Found | None
    resources: dict[str, list[Found]] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)
    ignored: int = 0

    def _found(self) -> list[Found]:
        found = [self.patient] if self.patient is not None else []
        for key in ("conditions", "observations", "orders"):
            found += self.resources.get(key, [])
        return found

    def bundle(self) -> dict[str, Any]:
        """A collection Bundle of the Patient and its resources, for :meth:`Runtime.screen`."""
        return {"resourceType": "Bundle", "type": "collection",
                "entry": [{"resource": f.resource} for f in self._found()]}

    def origin_of(self, location: str) -> str:
        """A location in :meth:`bundle` (``Bundle.entry[3].resource.code``), in the caller's
        terms (``prefetch.conditions.entry[1].resource.code``)."""
        found = self._found()
        head, _, rest = location.partition("]")
        if not head.startswith("Bundle.entry["):
            return location
        index = int(head.removeprefix("Bundle.entry["))
        rest = rest.removeprefix(".resource")
        return found[index].origin + rest if 0 <= index < len(found) else location


def _is_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def _reference_names(reference: Any, patient_id: str) -> bool:
    """Whether a Reference points at ``Patient/{patient_id}`` (relative, absolute or versioned)."""
    if not isinstance(reference, dict):
        return False
    value = reference.get("reference")
    if not isinstance(value, str):
        return False
    if value == "Patient/" + patient_id:
        return True  # the usual form, without splitting
    parts = value.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] == patient_id


def about_patient(resource: Any, resource_type: str, patient_id: str) -> Any | None:
    """The resource when it is this patient's, None when it is another type or patient.

    What cannot be read (not a resource, no resourceType, no usable subject) is kept as
    it is: the screening names it rather than this filter dropping it unseen. The
    subject is not rewritten: the screening resolves relative, absolute and versioned
    references to ``Patient/{id}`` the same way this filter does.
    """
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return resource
    if resource["resourceType"] != resource_type:
        return None
    subject = resource.get("subject")
    if subject is None or not isinstance(subject, dict) \
            or not isinstance(subject.get("reference"), str):
        return resource
    return resource if _reference_names(subject, patient_id) else None


def _unique(found: list[Found]) -> list[Found]:
    """Each resource once: a server may return one on two pages."""
    seen: set[str] = set()
    kept = []
    for item in found:
        rid = item.resource.get("id") if isinstance(item.resource, dict) else None
        if isinstance(rid, str):
            if rid in seen:
                continue  # the same resource on two pages
            seen.add(rid)
        kept.append(item)
    return kept


class Gatherer:
    """Resolve the four prefetch keys of one call, fetching what is missing."""

    def __init__(self, call: Mapping[str, Any], settings: Settings) -> None:
        self._call = call
        self._settings = settings
        self.patient_id: str = call["context"]["patientId"]
        self._prefetch: Mapping[str, Any] = call.get("prefetch") or {}
        self._client: FhirClient | None = None
        self._deadline = Deadline(settings.cds_budget_s)

    def _fhir(self, key: str) -> FhirClient:
        if self._client is None:
            server = self._call.get("fhirServer")
            if not server:
                raise PreconditionFailed(
                    f"prefetch '{key}' is missing and the call has no fhirServer to fetch it from")
            authorization = self._call.get("fhirAuthorization") or {}
            self._client = FhirClient(
                server,
                access_token=authorization.get("access_token"),
                timeout_s=self._settings.fhir_timeout_s,
                deadline=self._deadline,
                max_pages=self._settings.fhir_max_pages,
                max_bytes=int(self._settings.fhir_max_mb * 1024 * 1024),
                max_entries=self._settings.fhir_max_entries,
            )
        return self._client

    def gather(self) -> PrefetchedResources:
        try:
            return self._gather()
        finally:
            if self._client is not None:
                self._client.close()

    def _gather(self) -> PrefetchedResources:
        gathered = PrefetchedResources(self.patient_id, None)
        for key, (_, resource_type, parameter) in TEMPLATES.items():
            try:
                if parameter is None:
                    gathered.patient = self._patient(key, gathered)
                else:
                    found = self._search(key, resource_type, parameter, gathered)
                    kept = [f for f in found
                            if about_patient(f.resource, resource_type,
                                             self.patient_id) is not None]
                    gathered.ignored += len(found) - len(kept)
                    gathered.resources[key] = _unique(kept)
            except FhirError as error:
                # The reason only: never the URL (it holds the patient id) nor the token.
                log.warning("CDS prefetch '%s' could not be obtained: %s", key, error.message)
                raise PreconditionFailed(
                    f"prefetch '{key}' could not be obtained from fhirServer: {error.message}"
                ) from None
        if gathered.ignored:
            log.info("CDS call: %d resources of another type or patient ignored", gathered.ignored)
        return gathered

    def _patient(self, key: str, gathered: PrefetchedResources) -> Found:
        if key in self._prefetch:
            given = self._prefetch[key]
            if given is None:
                # The client's read found no Patient: there is nobody to screen.
                raise PreconditionFailed("prefetch 'patient' is null: there is no Patient to "
                                         "screen")
            if isinstance(given, dict) and given.get("resourceType") == "Patient":
                if given.get("id") in (None, self.patient_id):
                    return Found({**given, "id": self.patient_id}, "prefetch.patient")
                log.warning("CDS prefetch 'patient' is another patient: fetched instead")
                if not self._call.get("fhirServer"):
                    raise PreconditionFailed(
                        f"prefetch 'patient' is Patient/{str(given.get('id'))[:64]}, not the "
                        f"context's patient Patient/{self.patient_id}, and the call has no "
                        "fhirServer to read the right one from")
            elif not _is_outcome(given):
                shown = given.get("resourceType") if isinstance(given, dict) else None
                raise BadRequest(
                    "prefetch.patient must be a Patient, an OperationOutcome or null; got "
                    + (f"a {shown}" if isinstance(shown, str) else type(given).__name__))
        gathered.fetched.append(key)
        return Found(self._fhir(key).read("Patient", self.patient_id), "Patient read from "
                     "fhirServer")

    def _search(self, key: str, resource_type: str, parameter: str,
                gathered: PrefetchedResources) -> list[Found]:
        if key in self._prefetch:
            given = self._prefetch[key]
            if given is None:
                return []
            if isinstance(given, dict) and given.get("resourceType") == "Bundle":
                entries = given.get("entry")
                if entries is not None and not isinstance(entries, list):
                    raise BadRequest(f"prefetch.{key}.entry must be an array")
                if next_link(given) is None:
                    entry_at = f"prefetch.{key}.entry[{{i}}].resource"
                    return [Found(e.get("resource"), entry_at, i) if type(e) is dict
                            else Found(e, f"prefetch.{key}.entry[{{i}}]", i)
                            for i, e in enumerate(entries or [])
                            if not (type(e) is dict and e.get("resource") is None
                                    and "request" in e)]
                gathered.fetched.append(key)
                continued = (f"{resource_type} search result {{i}} from fhirServer "
                             f"(prefetch.{key} continued)")
                return [Found(r, continued, i + 1)
                        for i, r in enumerate(self._fhir(key).entries_from(given))]
            if not _is_outcome(given):
                shown = given.get("resourceType") if isinstance(given, dict) else None
                raise BadRequest(
                    f"prefetch.{key} must be a searchset Bundle, an OperationOutcome or null; "
                    "got " + (f"a {shown}" if isinstance(shown, str) else type(given).__name__))
        gathered.fetched.append(key)
        searched = f"{resource_type} search result {{i}} from fhirServer"
        return [Found(r, searched, i + 1)
                for i, r in enumerate(self._fhir(key).search(resource_type,
                                                             {parameter: self.patient_id}))]


def gather(call: Mapping[str, Any], settings: Settings) -> PrefetchedResources:
    """The patient's resources for a validated ``patient-view`` call (412 when incomplete)."""
    return Gatherer(call, settings).gather()
