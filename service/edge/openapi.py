"""The OpenAPI 3.0 document at ``GET /openapi.json``: every endpoint, schemas kept truthful.

The bodies are in :mod:`.openapi_schemas`, as strict as the validation behind each
endpoint; FHIR resources inside them are objects with a ``resourceType`` (their full
shape is the FHIR R4 specification's and the profiles' in ``fhir_profiles/``). Errors
are an OperationOutcome under ``/fhir`` and ``{"error": ...}`` elsewhere; every operation
also lists the answers the HTTP server gives before or instead of the app (408, 414,
431, 501, and 503 for a stuck worker). Paths whose
endpoint this app does not register are left out, so the document never promises
what the running service cannot do.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app

from .fhir_json import FHIR_JSON, JSON, json_response
from .openapi_schemas import SCHEMAS, ref
from .running import runtime

bp = Blueprint("openapi", __name__)


def _fhir_content(schema: str) -> dict[str, Any]:
    return {FHIR_JSON: {"schema": ref(schema)}, JSON: {"schema": ref(schema)}}


def _outcome(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {FHIR_JSON: {"schema": ref("OperationOutcome")}}}


def _cds_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref("Error")}}}


_HTML_PAGE = {"description": "an HTML page",
              "content": {"text/html": {"schema": {"type": "string"}}}}

_BARE_401 = {"description": "no valid signed JWT from a trusted issuer (bare: no body promised)"}

_FHIR_ERRORS = {
    "400": _outcome("not JSON, not a Bundle or Parameters, or an entry read is not valid FHIR; "
                    "or JSON nested too deep"),
    "401": _outcome("IPEX_API_ISSUERS_FILE is set and the caller's JWT was not accepted"),
    "413": _outcome("body larger than IPEX_MAX_BODY_MB, or too many Bundle entries"),
    "415": _outcome("Content-Type is not application/fhir+json or application/json"),
    "422": _outcome("valid FHIR but nothing to screen (no Patient)"),
    "503": _outcome("IPEX_API_ISSUERS_FILE is set and the JWT replay check cannot be made: "
                    "the state store is unavailable (issue.code transient); try again"),
}

_CDS_ERRORS = {
    "400": _cds_error("the request is not a valid CDS Hooks request"),
    "401": _BARE_401,
    "404": _cds_error("unknown service"),
    "412": _cds_error("prefetch missing and the FHIR server could not supply it in time"),
    "413": _cds_error("body too large or too many entries"),
    "415": _cds_error("Content-Type is not application/json"),
    "422": _cds_error("the request is well formed but cannot be screened"),
    "503": _cds_error("the JWT replay check cannot be made: the state store is unavailable; "
                      "nothing was screened or stored; try again"),
}

_PATHS: dict[str, Any] = {
    "/fhir/$ipex-screen": {
        "post": {
            "operationId": "ipexScreen",
            "summary": "Screen every patient in a Bundle for IPEX syndrome",
            "security": [{}, {"bearerJwt": []}],
            "requestBody": {"required": True, "content": _fhir_content("ScreenInput")},
            "responses": {
                "200": {"description": "a RiskAssessment, or a collection Bundle of them",
                        "content": {FHIR_JSON: {"schema": ref("ScreenResult")}}},
                **_FHIR_ERRORS,
            },
        }
    },
    "/fhir/metadata": {
        "get": {
            "operationId": "capabilityStatement",
            "summary": "The CapabilityStatement",
            "responses": {
                "200": {"description": "CapabilityStatement",
                        "content": {FHIR_JSON: {"schema": ref("Resource")}}},
                "404": _outcome("no CapabilityStatement is published"),
            },
        }
    },
    "/fhir/{type}/{id}": {
        "get": {
            "operationId": "readConformanceResource",
            "summary": "Read a published conformance resource (ValueSet, StructureDefinition, ...)",
            "parameters": [
                {"name": "type", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "the resource",
                        "content": {FHIR_JSON: {"schema": ref("Resource")}}},
                "404": _outcome("not a resource this server publishes"),
            },
        }
    },
    "/cds-services": {
        "get": {
            "operationId": "cdsDiscovery",
            "summary": "CDS Hooks discovery (open to all)",
            "responses": {"200": {"description": "the services",
                                  "content": {JSON: {"schema": ref("Discovery")}}}},
        }
    },
    "/cds-services/ipex-foxp3-screen": {
        "post": {
            "operationId": "cdsIpexFoxp3Screen",
            "summary": "patient-view: a card recommending FOXP3 testing when IPEX is suspected",
            "security": [{"bearerJwt": []}],
            "requestBody": {"required": True,
                            "content": {JSON: {"schema": ref("HookRequest")}}},
            "responses": {
                "200": {"description": "cards (empty for low tier or suppressed)",
                        "content": {JSON: {"schema": ref("CardsResponse")}}},
                **_CDS_ERRORS,
            },
        }
    },
    "/cds-services/ipex-foxp3-screen/feedback": {
        "post": {
            "operationId": "cdsFeedback",
            "summary": "CDS Hooks feedback on a card (stored, idempotent)",
            "security": [{"bearerJwt": []}],
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("Feedback")}}},
            "responses": {
                "200": {"description": "feedback stored (items already stored count as "
                        "duplicates)", "content": {JSON: {"schema": ref("FeedbackStored")}}},
                **_CDS_ERRORS,
                "400": _cds_error("not valid CDS Hooks feedback, or a field past its length "
                                  "(docs/security.md)"),
                "413": _cds_error("more than 100 feedback items, or a body too large"),
                "503": _cds_error("the state store is unavailable (the replay check or the "
                                  "write could not be made): nothing was stored; send it again"),
            },
        }
    },
    "/timeline/explain": {
        "post": {
            "operationId": "timelineExplain",
            "summary": "The evidence timeline's account of every patient in a Bundle: what "
                       "counted and when, what did not and why, the fired row's age limits",
            "description": "The same input, limits and caller check as POST /fhir/$ipex-screen "
                           "(open unless IPEX_API_ISSUERS_FILE is set); nothing is stored. "
                           "The account is the one `ipex-screen screen --explain` prints, plus "
                           "the birth date, the supporting features that counted and each age "
                           "limit of the fired row as the date the child reaches it.",
            "security": [{}, {"bearerJwt": []}],
            "requestBody": {"required": True, "content": {
                FHIR_JSON: {"schema": ref("ScreenInput")}, JSON: {"schema": ref("ScreenInput")}}},
            "responses": {
                "200": {"description": "the rule set and one account per patient",
                        "content": {JSON: {"schema": ref("TimelineAccounts")}}},
                "400": _cds_error("not JSON, not a Bundle or Parameters, an entry read is not "
                                  "valid FHIR, or JSON nested too deep"),
                "401": _cds_error("IPEX_API_ISSUERS_FILE is set and the caller's JWT was not "
                                  "accepted"),
                "413": _cds_error("body larger than IPEX_MAX_BODY_MB, or too many entries"),
                "415": _cds_error("Content-Type is not application/fhir+json or "
                                  "application/json"),
                "422": _cds_error("valid FHIR but nothing to screen (no Patient)"),
                "503": _cds_error("IPEX_API_ISSUERS_FILE is set and the JWT replay check "
                                  "cannot be made: the state store is unavailable"),
            },
        }
    },
    "/timeline/config.json": {
        "get": {
            "operationId": "timelineConfig",
            "summary": "The SMART client id and scopes the timeline app asks the EHR for",
            "responses": {"200": {"description": "IPEX_SMART_CLIENT_ID, IPEX_SMART_SCOPE and "
                                  "IPEX_FHIR_MAX_PAGES", "content": {JSON: {"schema": ref(
                                      "TimelineConfig")}}}},
        }
    },
    "/timeline/": {
        "get": {
            "operationId": "timelineApp",
            "summary": "The evidence timeline app (the same page as /timeline/index.html)",
            "responses": {"200": _HTML_PAGE, "404": _cds_error("the app is not built")},
        }
    },
    "/timeline/{name}": {
        "get": {
            "operationId": "timelineFile",
            "summary": "A file of the evidence timeline app: launch.html (the SMART launch "
                       "URL an EHR opens with iss and launch), index.html (the redirect URI) "
                       "and assets/",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the file (HTML, JavaScript or CSS)"},
                          "404": _cds_error("no such file")},
        }
    },
    "/source-attributes": {
        "get": {
            "operationId": "sourceAttributes",
            "summary": "The rule set's evidence-based DSI source attributes "
                       "(45 CFR 170.315(b)(11)(iv)(A)) as a page; as FHIR: "
                       "GET /fhir/Library/ipex-screening-rules",
            "responses": {"200": _HTML_PAGE},
        }
    },
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness",
            "responses": {"200": {"description": "alive", "content": {JSON: {"schema": {
                "type": "object", "required": ["status"],
                "properties": {"status": {"type": "string"}}}}}}},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "Readiness: rules loaded and the state store writable",
            "responses": {
                "200": {"description": "ready", "content": {JSON: {"schema": {
                    "type": "object", "required": ["status"],
                    "properties": {"status": {"type": "string"},
                                   "state": {"type": "string",
                                             "enum": ["sqlite", "postgresql"]}}}}}},
                "503": {"description": "not ready: the rules are not loaded, or the state "
                        "store cannot be written (the reason names it)",
                        "content": {JSON: {"schema": ref("NotReady")}}},
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics, summed across workers",
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.0 document",
                                  "content": {JSON: {"schema": {"type": "object"}}}}},
        }
    },
}


def _server_answers(path: str) -> dict[str, Any]:
    """What the HTTP server itself answers on any path, before or instead of the app
    (``service/serving/answers.py``): an OperationOutcome under ``/fhir``, else an error
    object. A request line too long has no path that can be trusted, so its 414 is
    always the error object."""
    fhir = path.startswith("/fhir/")
    answer = _outcome if fhir else _cds_error
    return {
        "408": answer("the request did not arrive whole within IPEX_REQUEST_TIMEOUT_S"),
        "414": _cds_error("the request line is longer than 8190 bytes"),
        "431": answer("the request headers are larger than the server's limit"),
        "501": answer("a Transfer-Encoding other than chunked"),
        "503": answer("the request ran past IPEX_WORKER_TIMEOUT_S; the worker is replaced; "
                      "try again"),
    }


def _documented(path: str, operation: dict[str, Any]) -> dict[str, Any]:
    """The operation with the server's own answers added to those the app gives; where
    both can give one status (503), the descriptions are joined."""
    responses = dict(operation["responses"])
    for status, answer in _server_answers(path).items():
        own = responses.get(status)
        if own is None:
            responses[status] = answer
        elif own.get("content") == answer["content"]:
            responses[status] = {**own, "description": f"{own['description']}; or "
                                 f"{answer['description']}"}
    return {**operation, "responses": responses}


def _rule_to_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


_FLASK_NAMES = {"/fhir/{resource_type}/{resource_id}": "/fhir/{type}/{id}"}


def registered_paths(app: Flask) -> dict[str, set[str]]:
    """The app's routes as OpenAPI paths, with their methods (HEAD and OPTIONS left out)."""
    paths: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = _rule_to_path(rule.rule)
        path = _FLASK_NAMES.get(path, path)
        methods = {m.lower() for m in (rule.methods or set())} - {"head", "options"}
        paths.setdefault(path, set()).update(methods)
    return paths


def openapi_document(app: Flask, *, server_url: str | None = None) -> dict[str, Any]:
    """The document for this app: the endpoints it registers, as described above."""
    registered = registered_paths(app)
    paths = {
        path: {m: _documented(path, op) for m, op in operations.items()
               if m in registered.get(path, set())}
        for path, operations in _PATHS.items()
        if path in registered
    }
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "ipex-screen",
            "version": "0.1.0",
            "description": "FHIR R4 and CDS Hooks 2.0 screening for IPEX syndrome.",
        },
        "paths": {path: ops for path, ops in paths.items() if ops},
        "components": {
            "schemas": copy.deepcopy(SCHEMAS),
            "securitySchemes": {
                "bearerJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                              "description": "a JWT signed by a trusted issuer (CDS Hooks "
                              "'Trusting CDS Clients'); see docs/security.md"},
            },
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


@bp.get("/openapi.json")
def openapi_json() -> Response:
    base = runtime().settings.public_base_url
    return json_response(openapi_document(current_app, server_url=base), mimetype=JSON)
