"""A tiny record screened once at start, so the FHIR models are loaded before traffic."""

from __future__ import annotations

from typing import Any

WARM_UP_BUNDLE: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"fullUrl": "urn:uuid:5f0c7c1e-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "gender": "male", "birthDate": "2025-01-01"}},
        {"resource": {
            "resourceType": "Condition",
            "subject": {"reference": "urn:uuid:5f0c7c1e-0000-4000-8000-000000000001"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "24079001"}]},
            "onsetDateTime": "2025-03-01"}},
        {"resource": {
            "resourceType": "Observation", "status": "final",
            "subject": {"reference": "urn:uuid:5f0c7c1e-0000-4000-8000-000000000001"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "48018-6"}]},
            "valueCodeableConcept": {"text": "none"}}},
        {"resource": {
            "resourceType": "ServiceRequest", "status": "draft", "intent": "proposal",
            "subject": {"reference": "urn:uuid:5f0c7c1e-0000-4000-8000-000000000001"},
            "code": {"text": "FOXP3 sequencing"}}},
    ],
}
