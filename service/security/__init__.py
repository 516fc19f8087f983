"""Trust and hardening at the HTTP edge: who may call, and what a body may look like.

    issuers.py     the trusted-issuer files (``IPEX_CDS_ISSUERS_FILE``, ``IPEX_API_ISSUERS_FILE``)
    jwt_verify.py  signed-JWT verification (CDS Hooks "Trusting CDS Clients"), JWKS, replay store
    guard.py       the Flask side: read the bearer token, pick the audience, answer 401
    openapi.py     the OpenAPI 3 document at ``GET /openapi.json``
"""
