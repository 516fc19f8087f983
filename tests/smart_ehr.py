"""A stand-in EHR for the browser tests: a SMART authorization server and a FHIR server.

On loopback, on a free port, in a thread the test stops. It does what the SMART App
Launch asks of an EHR for an EHR launch and checks what the app sends:

* ``GET /fhir/.well-known/smart-configuration``: the endpoints, ``S256`` PKCE;
* ``GET /auth/authorize``: the client id, redirect URI, ``aud`` (the FHIR base), the
  ``launch`` it issued, a ``state`` and an S256 ``code_challenge``; a launch marked
  refused is answered ``error=access_denied``, as when a user declines;
* ``POST /auth/token``: the code once, the same redirect URI and client id, and a
  ``code_verifier`` whose SHA-256 is the challenge; the token names the patient and
  carries the launch's ``appContext``;
* ``GET /fhir/Patient/{id}`` and ``GET /fhir/{type}?patient={id}`` (two resources a
  page, ``next`` links), only with the token issued for that patient.

Every request is recorded (method, path, query, form, whether it carried the token).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, redirect, request
from werkzeug.serving import make_server

from .cds_support import split_record

PAGE_SIZE = 2
SEARCH_TYPES = ("Condition", "Observation", "ServiceRequest")


@dataclass
class Launch:
    patient_id: str
    app_context: str | None
    refuse: bool


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    bearer: str | None


@dataclass
class StandInEhr:
    client_id: str
    redirect_uri: str
    base_url: str = ""
    patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    launches: dict[str, Launch] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> patient id
    sent: list[Sent] = field(default_factory=list)
    pkce_verified: list[str] = field(default_factory=list)  # codes whose verifier matched

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/fhir"

    def add_record(self, bundle: dict[str, Any]) -> str:
        """Store a scenario's first patient as the FHIR server would; its id."""
        pid, patient, by_key = split_record(bundle)
        self.patients[pid] = patient
        types = {"conditions": "Condition", "observations": "Observation",
                 "orders": "ServiceRequest"}
        for key, found in by_key.items():
            own = [r for r in found
                   if (r.get("subject") or {}).get("reference") == f"Patient/{pid}"]
            self.resources[(types[key], pid)] = own
        return pid

    def launch(self, patient_id: str, *, app_context: str | None = None,
               refuse: bool = False) -> str:
        """Issue an opaque launch id, as the EHR does when a user opens the app."""
        launch_id = secrets.token_urlsafe(12)
        self.launches[launch_id] = Launch(patient_id, app_context, refuse)
        return launch_id

    def reads(self) -> list[Sent]:
        return [s for s in self.sent if s.path.startswith("/fhir/")
                and not s.path.startswith("/fhir/.well-known") and s.method == "GET"]


def _cors(response: Response) -> Response:
    origin = request.headers.get("Origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Accept"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Vary"] = "Origin"
    return response


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _bundle(ehr: StandInEhr, kind: str, pid: str, page: int) -> dict[str, Any]:
    found = ehr.resources.get((kind, pid), [])
    chunk = found[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    links = [{"relation": "self",
              "url": f"{ehr.fhir_base}/{kind}?{urlencode({'patient': pid, '_page': page})}"}]
    if page * PAGE_SIZE < len(found):
        links.append({"relation": "next", "url": f"{ehr.fhir_base}/{kind}?"
                      f"{urlencode({'patient': pid, '_page': page + 1})}"})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(found), "link": links,
            "entry": [{"fullUrl": f"{ehr.fhir_base}/{kind}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in chunk]}


def _app(ehr: StandInEhr) -> Flask:
    app = Flask("stand-in-ehr")
    app.after_request(_cors)

    @app.before_request
    def record() -> Response | None:
        header = request.headers.get("Authorization", "")
        ehr.sent.append(Sent(request.method, request.path, dict(request.args),
                             dict(request.form), header.removeprefix("Bearer ") or None))
        if request.method == "OPTIONS":
            return _cors(Response(status=204))
        return None

    @app.get("/fhir/.well-known/smart-configuration")
    def smart_configuration() -> Response:
        return jsonify({
            "authorization_endpoint": f"{ehr.base_url}/auth/authorize",
            "token_endpoint": f"{ehr.base_url}/auth/token",
            "capabilities": ["launch-ehr", "client-public", "context-ehr-patient",
                             "permission-v2"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code"],
        })

    @app.get("/auth/authorize")
    def authorize() -> Response:
        q = request.args
        problems = [name for name, ok in (
            ("response_type", q.get("response_type") == "code"),
            ("client_id", q.get("client_id") == ehr.client_id),
            ("redirect_uri", q.get("redirect_uri") == ehr.redirect_uri),
            ("aud", q.get("aud") == ehr.fhir_base),
            ("launch", q.get("launch") in ehr.launches),
            ("state", bool(q.get("state"))),
            ("code_challenge_method", q.get("code_challenge_method") == "S256"),
            ("code_challenge", bool(q.get("code_challenge"))),
        ) if not ok]
        if problems:
            return Response(f"bad authorization request: {problems}", status=400)
        launch = ehr.launches[q["launch"]]
        if launch.refuse:
            return redirect(f"{ehr.redirect_uri}?" + urlencode({
                "error": "access_denied", "state": q["state"],
                "error_description": "The user declined the timeline's request"}))
        code = secrets.token_urlsafe(16)
        ehr.codes[code] = {"launch": launch, "challenge": q["code_challenge"],
                           "redirect_uri": q["redirect_uri"], "scope": q.get("scope", "")}
        return redirect(f"{ehr.redirect_uri}?" + urlencode({"code": code, "state": q["state"]}))

    @app.post("/auth/token")
    def token() -> Response:
        form = request.form
        grant = ehr.codes.pop(form.get("code", ""), None)
        if (grant is None or form.get("grant_type") != "authorization_code"
                or form.get("redirect_uri") != grant["redirect_uri"]
                or form.get("client_id") != ehr.client_id):
            return _cors(Response('{"error": "invalid_grant"}', status=400,
                                  mimetype="application/json"))
        if _challenge(form.get("code_verifier", "")) != grant["challenge"]:
            return _cors(Response('{"error": "invalid_grant", "error_description": "PKCE"}',
                                  status=400, mimetype="application/json"))
        ehr.pkce_verified.append(form["code"])
        launch: Launch = grant["launch"]
        access = secrets.token_urlsafe(24)
        ehr.tokens[access] = launch.patient_id
        answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                                  "expires_in": 300, "scope": grant["scope"],
                                  "patient": launch.patient_id}
        if launch.app_context is not None:
            answer["appContext"] = launch.app_context
        response = jsonify(answer)
        response.headers["Cache-Control"] = "no-store"
        return response

    def _allowed(pid: str) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and ehr.tokens.get(header[7:]) == pid

    @app.get("/fhir/Patient/<pid>")
    def read_patient(pid: str) -> Response:
        if not _allowed(pid):
            return Response(status=401)
        if pid not in ehr.patients:
            return Response(status=404)
        return jsonify(ehr.patients[pid])

    @app.get("/fhir/<kind>")
    def search(kind: str) -> Response:
        pid = request.args.get("patient", "")
        if kind not in SEARCH_TYPES:
            return Response(status=404)
        if not _allowed(pid):
            return Response(status=401)
        return jsonify(_bundle(ehr, kind, pid, int(request.args.get("_page", "1"))))

    return app


@contextmanager
def stand_in_ehr(*, client_id: str, redirect_uri: str) -> Iterator[StandInEhr]:
    """Run the stand-in EHR on a free loopback port until the block ends."""
    ehr = StandInEhr(client_id=client_id, redirect_uri=redirect_uri)
    server = make_server("127.0.0.1", 0, _app(ehr), threaded=True)
    ehr.base_url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ehr
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve a Flask app on a free loopback port in a thread; its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
