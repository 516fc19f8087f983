"""Trust: who may call, checked by signed JWTs from trusted issuers.

    issuers.py     the trusted-issuer files (``IPEX_CDS_ISSUERS_FILE``, ``IPEX_API_ISSUERS_FILE``)
    jwt_verify.py  signed-JWT verification (CDS Hooks "Trusting CDS Clients"), JWKS, replay store
    guard.py       the Flask side: read the bearer token, pick the audience, answer 401
"""
