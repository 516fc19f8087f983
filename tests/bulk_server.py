"""A stand-in FHIR Bulk Data server on a loopback port, strict about every step.

It checks what the client sends (kick-off headers and ``_type``, the client
assertion JWT, the bearer token on status and download calls), records every
request, and can be told to misbehave: a 429 before the kick-off is accepted,
Retry-After on polls, a failed job, a token that expires mid-download, a job that
never finishes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from .jwt_support import Signer

CLIENT_ID = "ipex-population-test"
TYPES = "Patient,Condition,Observation,ServiceRequest"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class Behaviour:
    signer: Signer | None = None          # None: no auth at all (open server)
    requires_access_token: bool = True
    kickoff_429_first: bool = False
    polls_before_done: int = 2
    retry_after: str = "3"
    fail_job: bool = False
    never_done: bool = False
    token_lifetime_s: int = 300
    revoke_first_token_after: int | None = None   # authorised calls before token 1 "expires"
    download_500_first: bool = False
    error_lines: list[bytes] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)


class BulkServer:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.seen: list[Seen] = []
        self.problems: list[str] = []        # every check the client failed
        self.assertions: list[dict[str, Any]] = []
        self.tokens: list[str] = []
        self.revoked: set[str] = set()
        self.polls = 0
        self.deleted = False
        self._kickoffs = 0
        self._downloads_failed = 0
        self._authorised_calls = 0
        self.app = self._app()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.base = f"http://127.0.0.1:{self._server.server_port}/fhir"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> BulkServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    def requests_to(self, path_part: str) -> list[Seen]:
        return [s for s in self.seen if path_part in s.path]

    def _check_token(self) -> Response | None:
        if self.behaviour.signer is None:
            return None
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        if not header.startswith("Bearer ") or token not in self.tokens:
            return Response(status=401)
        if token in self.revoked:
            return Response(status=401)
        self._authorised_calls += 1
        limit = self.behaviour.revoke_first_token_after
        if limit is not None and token == self.tokens[0] and self._authorised_calls >= limit:
            self.revoked.add(token)   # it answers this call, then it has expired
        return None

    def _app(self) -> Flask:
        app = Flask("bulk-stand-in")
        behaviour = self.behaviour

        @app.before_request
        def record() -> None:
            self.seen.append(Seen(request.method, request.path, dict(request.args),
                                  dict(request.headers), dict(request.form)))

        @app.get("/fhir/.well-known/smart-configuration")
        def smart_configuration() -> Any:
            return jsonify({
                "token_endpoint": f"{self.base.removesuffix('/fhir')}/auth/token",
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                "grant_types_supported": ["client_credentials"],
            })

        @app.post("/auth/token")
        def token() -> Any:
            signer = behaviour.signer
            form = request.form
            if signer is None:
                return jsonify({"error": "invalid_client"}), 400
            if form.get("grant_type") != "client_credentials" or form.get(
                    "client_assertion_type") != (
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"):
                self.problems.append("token request form")
                return jsonify({"error": "invalid_request"}), 400
            assertion = form.get("client_assertion", "")
            try:
                header = jwt.get_unverified_header(assertion)
                claims = jwt.decode(assertion, signer.private_key.public_key(),
                                    algorithms=[signer.alg], audience=request.base_url,
                                    issuer=CLIENT_ID, options={"require": [
                                        "iss", "sub", "aud", "exp", "jti"]})
            except jwt.PyJWTError as exc:
                self.problems.append(f"assertion: {exc}")
                return jsonify({"error": "invalid_client",
                                "error_description": "bad assertion"}), 401
            if claims["sub"] != CLIENT_ID or claims["exp"] > time.time() + 300 or any(
                    a["claims"]["jti"] == claims["jti"] for a in self.assertions):
                self.problems.append("assertion claims")
                return jsonify({"error": "invalid_client"}), 401
            if not header.get("kid"):
                self.problems.append("assertion without kid")
            self.assertions.append({"header": header, "claims": claims,
                                    "scope": form.get("scope")})
            issued = f"token-{len(self.tokens) + 1}"
            self.tokens.append(issued)
            return jsonify({"access_token": issued, "token_type": "bearer",
                            "expires_in": behaviour.token_lifetime_s,
                            "scope": form.get("scope")})

        @app.get("/fhir/Group/<gid>/$export")
        def kickoff(gid: str) -> Any:
            if (denied := self._check_token()) is not None:
                return denied
            if request.headers.get("Prefer") != "respond-async" or request.headers.get(
                    "Accept") != "application/fhir+json":
                self.problems.append("kick-off headers")
                return jsonify(_outcome("invalid", "Prefer: respond-async needed")), 400
            if request.args.get("_type") != TYPES:
                self.problems.append(f"_type {request.args.get('_type')!r}")
            self._kickoffs += 1
            if behaviour.kickoff_429_first and self._kickoffs == 1:
                return Response(status=429, headers={"Retry-After": "7"})
            return Response(status=202, headers={"Content-Location": f"/fhir/jobs/{gid}-1"})

        @app.route("/fhir/jobs/<job>", methods=["GET", "DELETE"])
        def status(job: str) -> Any:
            if (denied := self._check_token()) is not None:
                return denied
            if request.method == "DELETE":
                self.deleted = True
                return Response(status=202)
            self.polls += 1
            if behaviour.fail_job and self.polls >= 2:
                return jsonify(_outcome("exception", "export failed: the job ran out of disk")
                               ), 500
            if behaviour.never_done or self.polls <= behaviour.polls_before_done:
                return Response(status=202, headers={
                    "Retry-After": behaviour.retry_after,
                    "X-Progress": f"{self.polls * 30}% complete"})
            host = self.base.removesuffix("/fhir")
            output = [{"type": name.split(".")[0], "url": f"{host}/files/{name}"}
                      for name in behaviour.files]
            error = [{"type": "OperationOutcome", "url": f"{host}/files/errors.ndjson"}] if (
                behaviour.error_lines) else []
            return jsonify({"transactionTime": "2025-09-01T00:00:00Z",
                            "request": f"{self.base}/Group/g/$export?_type={TYPES}",
                            "requiresAccessToken": behaviour.requires_access_token,
                            "output": output, "error": error})

        @app.get("/files/<name>")
        def download(name: str) -> Any:
            if behaviour.requires_access_token and (denied := self._check_token()) is not None:
                return denied
            if not behaviour.requires_access_token and "Authorization" in request.headers:
                self.problems.append("token sent where the manifest says it is not needed")
            if behaviour.download_500_first and self._downloads_failed == 0:
                self._downloads_failed += 1
                return Response(status=503, headers={"Retry-After": "1"})
            body = b"\n".join(behaviour.error_lines) + b"\n" if name == "errors.ndjson" else (
                behaviour.files[name])
            return Response(_chunks(body), mimetype="application/fhir+ndjson")

        return app


def _chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), 4096):
        yield body[start:start + 4096]


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
