"""Verify the signed JWT a caller presents (CDS Hooks 2.0 "Trusting CDS Clients").

A token is accepted only when every check passes, in this order (cheap and local first,
the replay mark last so a forged token can never burn a real ``jti``):

1. shape: three parts, at most ``MAX_TOKEN_CHARS``; header ``alg`` on the allowlist
   (never ``none``, never HMAC), ``typ`` JWT when given, ``kid`` present;
2. ``iss`` is a trusted issuer; a ``jku`` header is one that issuer may send (its
   ``jwks_uri`` or its ``jku`` list). A ``jku`` is only ever compared, never fetched;
3. the key named by ``kid`` is in the issuer's keys (:mod:`.key_sets`: pinned inline,
   or fetched from its ``jwks_uri``) and fits ``alg``;
4. signature, ``aud`` (string or array) holding exactly the URL called, ``exp``/``iat``
   required, ``exp``/``iat``/``nbf`` within ``LEEWAY_S``, ``jti`` required;
5. ``tenant`` on the issuer's list when it has one; ``fhirServer`` under one of the
   issuer's ``fhir_servers`` when it lists them;
6. ``jti`` never seen before from this issuer (:mod:`.replay`, shared by every replica).

Every failure raises :class:`TokenRejected`; its ``reason`` is for the log and never
holds the token. When step 6 cannot be made (the state store is down) the verifier
raises :class:`~service.state.StateUnavailable` instead: the caller is not to blame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .issuers import Issuer
from .key_sets import KeySets, TrustedKey
from .replay import ReplayStore

LEEWAY_S = 60
MAX_TOKEN_CHARS = 16_384
MIN_RSA_BITS = 2048
# The spec recommends ES384 and RS384; the rest of the ECDSA and RSA families are as
# strong or stronger. HMAC (shared secret) and "none" are refused by the spec.
ALLOWED_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
_CURVE_FOR = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


class TokenRejected(Exception):
    """The caller's token is not trusted; ``reason`` says why (safe to log, never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VerifiedClient:
    """Who called, as a verified token says."""

    issuer: Issuer
    jti: str
    tenant: str | None
    expires_at: int


def _shown(value: Any) -> str:
    """A short, printable rendering of a caller-controlled header value for the log."""
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:40] + "..."
        return repr(text)
    return type(value).__name__


def _key_fits(key: TrustedKey, alg: str) -> bool:
    """True when the key is declared for ``alg`` (or for nothing) and of its family and size."""
    if key.declared_alg not in (None, alg):
        return False
    public = key.public_key
    if alg.startswith("ES"):
        return isinstance(public, ec.EllipticCurvePublicKey) and isinstance(
            public.curve, _CURVE_FOR[alg]
        )
    return isinstance(public, rsa.RSAPublicKey) and public.key_size >= MIN_RSA_BITS


_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not yet valid (iat or nbf in the future)"),
    (jwt.InvalidAudienceError, "aud does not hold the URL called"),
    (jwt.InvalidIssuerError, "iss does not match"),
    (jwt.MissingRequiredClaimError, "a required claim is missing"),
    (jwt.InvalidSignatureError, "the signature does not verify"),
    (jwt.InvalidIssuedAtError, "iat is not a number"),
    (jwt.InvalidAlgorithmError, "the algorithm is not allowed"),
)


def _reason(error: jwt.PyJWTError) -> str:
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            if isinstance(error, jwt.MissingRequiredClaimError):
                return f"the required claim {error.claim!r} is missing"
            return reason
    return f"the token is not valid ({type(error).__name__})"


class JwtVerifier:
    """Check bearer tokens against one set of trusted issuers."""

    def __init__(
        self,
        issuers: Mapping[str, Issuer],
        *,
        replay: ReplayStore,
        key_sets: KeySets,
        leeway_s: int = LEEWAY_S,
    ) -> None:
        self.issuers = dict(issuers)
        self.replay = replay
        self.key_sets = key_sets
        self.leeway_s = min(leeway_s, LEEWAY_S)

    def verify(self, token: str, *, audience: str, fhir_server: str | None = None
               ) -> VerifiedClient:
        """Return the verified caller, or raise :class:`TokenRejected`.

        Raises :class:`~service.state.StateUnavailable` when the replay check cannot be made.
        """
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise TokenRejected("the bearer value is not a compact JWS")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRejected("the token header or payload cannot be decoded") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise TokenRejected(f"algorithm {_shown(alg)} is not allowed")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise TokenRejected(f"typ {_shown(typ)} is not JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the header has no kid")
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise TokenRejected(f"iss {_shown(iss)} is not a trusted issuer")
        if "jku" in header and not issuer.allows_jku(header["jku"]):
            raise TokenRejected(f"jku {_shown(header['jku'])} is not one {issuer.iss} may send")
        key = self.key_sets.key(issuer, kid)
        if key is None:
            raise TokenRejected(f"kid {_shown(kid)} is not in the key set of {issuer.iss}")
        if not _key_fits(key, alg):
            raise TokenRejected(f"key {_shown(kid)} does not fit algorithm {alg}")
        try:
            claims = jwt.decode(
                token,
                key=key.public_key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer.iss,
                leeway=self.leeway_s,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "strict_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(_reason(exc)) from None
        return self._check_claims(claims, issuer, fhir_server=fhir_server)

    def _check_claims(self, claims: Mapping[str, Any], issuer: Issuer, *,
                      fhir_server: str | None) -> VerifiedClient:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 512:
            raise TokenRejected("jti must be a non-empty string")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise TokenRejected("exp must be a number")
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise TokenRejected("tenant must be a string")
        if issuer.tenants is not None and tenant not in issuer.tenants:
            raise TokenRejected(f"tenant {_shown(tenant)} is not allowed for {issuer.iss}")
        if fhir_server is not None and not issuer.allows_fhir_server(fhir_server):
            raise TokenRejected(f"fhirServer is not one of the servers listed for {issuer.iss}")
        keep_until = int(exp) + self.leeway_s
        # Fail closed: without the store a replay could not be told from a first use.
        fresh = self.replay.first_use(iss=issuer.iss, jti=jti, keep_until=keep_until)
        if not fresh:
            raise TokenRejected(f"jti already used (replay) for {issuer.iss}")
        return VerifiedClient(issuer=issuer, jti=jti, tenant=tenant, expires_at=int(exp))
