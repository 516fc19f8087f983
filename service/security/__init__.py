"""Trust: who may call, checked by signed JWTs from trusted issuers.

    issuers.py     the trusted-issuer files (``IPEX_CDS_ISSUERS_FILE``, ``IPEX_API_ISSUERS_FILE``)
    key_sets.py    the issuers' public keys: pinned inline, or fetched from their jwks_uri
    replay.py      each jti used once, across replicas (on the state store, ``service.state``)
    jwt_verify.py  signed-JWT verification (CDS Hooks "Trusting CDS Clients")
    guard.py       the Flask side: read the bearer token, pick the audience, answer 401 or 503
"""
