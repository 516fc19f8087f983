"""The bodies of the OpenAPI document: as strict as the validation behind each endpoint.

A request the document calls valid is not refused as malformed: the CDS Hooks envelope
and feedback follow ``service/cds/schemas.py`` (same enums, lengths, patterns and
bounds; ``tests/test_openapi_fuzz.py`` checks the numbers match), the FHIR operation's
input follows ``service/screening/record.py`` (Bundle or Parameters, the accepted
Bundle types). What no OpenAPI 3.0 schema can say is left to the FHIR R4
specification: whether a Patient, Condition or Observation inside a Bundle is valid
FHIR (a 400 naming ``Bundle.entry[n].resource``).
"""

from __future__ import annotations

from typing import Any

_REF = "#/components/schemas/"

# service/cds/schemas.py: FHIR_ID, MAX_FEEDBACK_ITEMS, MAX_ID_CHARS, ... (kept equal by a test)
FHIR_ID_PATTERN = r"^[A-Za-z0-9\-.]{1,64}$"
# The largest integer every JSON reader keeps exact (I-JSON, RFC 7493): beyond it a
# token lifetime arrives as a float, which is not an integer (either sign).
MAX_JSON_INTEGER = 2**53 - 1
MAX_FEEDBACK_ITEMS = 100
MAX_ID_CHARS = 128
MAX_ACCEPTED_SUGGESTIONS = 20
MAX_URI_CHARS = 1024
MAX_CODE_CHARS = 256
MAX_COMMENT_CHARS = 4096
# An http(s) base URL: a host name (the last label two or more characters), an optional
# port, a path. Narrower than what the service reads, never wider.
HTTP_URL_PATTERN = (r"^https?://(?:[a-z0-9]{1,20}\.){0,4}[a-z][a-z0-9]{1,20}"
                    r"(?::[1-9][0-9]{0,3})?(?:/[A-Za-z0-9._~-]+)*/?$")
# A date-time that can be placed in UTC: not 0001-01-01 east of UTC, nor 9999-12-31 west.
UTC_PLACEABLE_PATTERN = r"^(?!0001-01-01T[^Z]*\+)(?!9999-12-31T[^Z]*-[0-9]{2}:[0-9]{2}$)"
# service/screening/record.py ACCEPTED_BUNDLE_TYPES
BUNDLE_TYPES = ["batch", "collection", "document", "searchset", "transaction"]


def ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _text(max_length: int, *, min_length: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length}


_ENTRY = {
    "type": "object",
    "properties": {"fullUrl": {"type": "string"}, "resource": ref("Resource")},
}

SCHEMAS: dict[str, Any] = {
    "Resource": {
        "description": "a FHIR R4 resource; Patient, Condition, Observation and "
        "ServiceRequest entries must be valid FHIR R4",
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "pattern": "^[A-Z][A-Za-z]{1,63}$"},
                       "id": {"type": "string", "pattern": FHIR_ID_PATTERN}},
        "additionalProperties": True,
    },
    "OperationOutcome": {
        "type": "object",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
            "issue": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["severity", "code"],
                    "properties": {
                        "severity": {"type": "string"},
                        "code": {"type": "string"},
                        "diagnostics": {"type": "string"},
                    },
                },
            },
        },
    },
    "ScreenResult": {
        "description": "a RiskAssessment (one patient) or a collection Bundle of them",
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": ["RiskAssessment", "Bundle"]}},
    },
    "Bundle": {
        "description": "a FHIR R4 Bundle of one of the types the operation reads",
        "type": "object",
        "required": ["resourceType", "type"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["Bundle"]},
            "type": {"type": "string", "enum": BUNDLE_TYPES},
            "entry": {"type": "array", "items": _ENTRY},
        },
    },
    "ScreenParameters": {
        "description": "a Parameters resource: 'bundle' (required, a Bundle) and optionally "
        "'asOf' (a valueDate, YYYY-MM-DD), the date to screen as of",
        "type": "object",
        "required": ["resourceType", "parameter"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["Parameters"]},
            # OpenAPI 3.0 cannot say "one of the items is 'bundle'": the document lists the
            # 'bundle' parameter alone, and 'asOf' in the description.
            "parameter": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1,
                "items": {
                    "type": "object",
                    "required": ["name", "resource"],
                    "properties": {"name": {"type": "string", "enum": ["bundle"]},
                                   "resource": ref("Bundle")},
                },
            },
        },
    },
    "ScreenInput": {
        "description": "a FHIR R4 Bundle, or a Parameters resource whose parameter 'bundle' "
        "holds one (and optionally 'asOf', a valueDate)",
        "oneOf": [ref("Bundle"), ref("ScreenParameters")],
    },
    "TimelineConfig": {
        "type": "object",
        "required": ["clientId", "scope", "maxPages"],
        "properties": {"clientId": {"type": "string"}, "scope": {"type": "string"},
                       "maxPages": {"type": "integer", "minimum": 1}},
    },
    "TimelineAccounts": {
        "description": "the rule set (id, version, the Library with its source attributes, "
        "the categories in lane order) and one account per patient screened, in entry order",
        "type": "object",
        "required": ["rules", "results"],
        "properties": {
            "rules": {
                "type": "object",
                "required": ["id", "version", "library", "categories"],
                "properties": {"id": {"type": "string"}, "version": {"type": "string"},
                               "library": {"type": "string"},
                               "categories": {"type": "array", "items": {"type": "object"}}},
            },
            "results": {"type": "array", "items": ref("TimelineAccount")},
        },
    },
    "TimelineAccount": {
        "description": "the explain account of one patient (criteria and supporting features "
        "with evidence, onset and age at onset; explained, not counted and not read, each with "
        "its reason; the tier row and recommendation) plus birthDate, supportingCounted, "
        "supportingOnsetBefore and firedRow (each requirement's age limits with the date the "
        "child reaches them)",
        "type": "object",
        "required": ["patient", "tier", "tierRow", "rulesVersion", "criteria", "supporting",
                     "explained", "notCounted", "notRead", "birthDate", "firedRow"],
        "properties": {
            "patient": {"type": "string"},
            "tier": {"type": "string", "enum": ["low", "moderate", "high"]},
            "tierRow": {"type": "integer"},
            "rulesVersion": {"type": "string"},
            "birthDate": {"type": "string", "nullable": True},
            "criteria": {"type": "object"},
            "supporting": {"type": "object"},
            "explained": {"type": "array", "items": {"type": "object"}},
            "notCounted": {"type": "array", "items": {"type": "object"}},
            "notRead": {"type": "array", "items": {"type": "object"}},
            "firedRow": {"type": "object", "required": ["row", "tier", "rule", "requirements"]},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "NotReady": {
        "type": "object",
        "required": ["status", "reason"],
        "properties": {"status": {"type": "string", "enum": ["not ready"]},
                       "reason": {"type": "string"}},
    },
    "Discovery": {
        "type": "object",
        "required": ["services"],
        "properties": {
            "services": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["hook", "id", "description"],
                    "properties": {
                        "hook": {"type": "string"},
                        "id": {"type": "string"},
                        "title": {"type": "string"},
                        "description": {"type": "string"},
                        "prefetch": {"type": "object",
                                     "additionalProperties": {"type": "string"}},
                    },
                },
            }
        },
    },
    "FhirAuthorization": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in", "scope", "subject"],
        "properties": {
            "access_token": {"type": "string", "minLength": 1},
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer", "minimum": -MAX_JSON_INTEGER,
                           "maximum": MAX_JSON_INTEGER},
            "scope": {"type": "string"},
            "subject": {"type": "string"},
            "patient": {"type": "string", "nullable": True},
        },
    },
    "PatientViewContext": {
        "type": "object",
        "required": ["patientId"],
        "properties": {
            "patientId": {"type": "string", "pattern": FHIR_ID_PATTERN},
            "userId": {"type": "string", "nullable": True},
            "encounterId": {"type": "string", "nullable": True},
        },
    },
    "Prefetch": {
        "description": "the four prefetch keys of the discovery document; each may be null "
        "(the data does not exist) or an OperationOutcome (treated as missing)",
        "type": "object",
        "nullable": True,
        "properties": {
            "patient": {"nullable": True, "allOf": [ref("Resource")], "properties": {
                "resourceType": {"type": "string", "enum": ["Patient", "OperationOutcome"]}}},
            **{key: {"nullable": True, "allOf": [ref("Resource")], "properties": {
                "resourceType": {"type": "string", "enum": ["Bundle", "OperationOutcome"]},
                "entry": {"type": "array", "items": _ENTRY}}}
               for key in ("conditions", "observations", "orders")},
        },
    },
    "HookRequest": {
        "type": "object",
        "required": ["hook", "hookInstance", "context"],
        "properties": {
            "hook": {"type": "string", "enum": ["patient-view"]},
            "hookInstance": {"type": "string", "minLength": 1},
            "fhirServer": {"type": "string", "nullable": True, "pattern": HTTP_URL_PATTERN},
            "fhirAuthorization": {"nullable": True, "allOf": [ref("FhirAuthorization")]},
            "context": ref("PatientViewContext"),
            "prefetch": ref("Prefetch"),
        },
        # fhirAuthorization needs a fhirServer to be used on
        "anyOf": [
            {"not": {"required": ["fhirAuthorization"]}},
            {"required": ["fhirServer"], "properties": {"fhirServer": {"type": "string"}}},
        ],
    },
    "CardsResponse": {
        "type": "object",
        "required": ["cards"],
        "properties": {"cards": {"type": "array", "items": {"type": "object"}}},
    },
    "Coding": {
        "type": "object",
        "required": ["system", "code"],
        "properties": {
            "system": _text(MAX_URI_CHARS),
            "code": _text(MAX_CODE_CHARS),
            "display": {**_text(MAX_URI_CHARS, min_length=0), "nullable": True},
        },
    },
    "FeedbackItem": {
        "type": "object",
        "required": ["card", "outcome", "outcomeTimestamp"],
        "properties": {
            "card": _text(MAX_ID_CHARS),
            "outcome": {"type": "string", "enum": ["accepted", "overridden"]},
            "acceptedSuggestions": {
                "type": "array", "nullable": True, "maxItems": MAX_ACCEPTED_SUGGESTIONS,
                "items": {"type": "object", "required": ["id"],
                          "properties": {"id": _text(MAX_ID_CHARS)}},
            },
            "overrideReason": {
                "type": "object", "nullable": True,
                "properties": {
                    "reason": {"nullable": True, "allOf": [ref("Coding")]},
                    "userComment": {**_text(MAX_COMMENT_CHARS, min_length=0), "nullable": True},
                },
            },
            "outcomeTimestamp": {"type": "string", "format": "date-time",
                                 "pattern": UTC_PLACEABLE_PATTERN},
        },
        # an accepted card names the suggestion(s) accepted
        "anyOf": [
            {"properties": {"outcome": {"enum": ["overridden"]}}},
            {"required": ["acceptedSuggestions"],
             "properties": {"acceptedSuggestions": {"type": "array", "minItems": 1}}},
        ],
    },
    "Feedback": {
        "type": "object",
        "required": ["feedback"],
        "properties": {"feedback": {"type": "array", "minItems": 1,
                                    "maxItems": MAX_FEEDBACK_ITEMS,
                                    "items": ref("FeedbackItem")}},
    },
    "FeedbackStored": {
        "type": "object",
        "required": ["stored", "duplicates"],
        "properties": {"stored": {"type": "integer", "minimum": 0},
                       "duplicates": {"type": "integer", "minimum": 0}},
    },
}
