"""The HTTP edge: what every endpoint shares between the wire and the runtime.

    errors.py     the error tree: every status the service answers, the OperationOutcome
    handlers.py   the app's error handlers: one shape per caller (FHIR or CDS Hooks)
    limits.py     the JSON depth and Bundle-entry caps, walked once per request body
    fhir_json.py  reading a JSON body (media type, size, limits) and writing one
    headers.py    the security headers on every answer
    openapi.py    the OpenAPI 3 document at ``GET /openapi.json``
    running.py    the one accessor for the running service's :class:`Runtime`

Imports run downward: the endpoints (``fhir_api``, ``operations``, ``cds``) use this
package; nothing here imports an endpoint, and trust (``service.security``) stays apart.
This package's face imports none of its modules, so ``errors`` loads without Flask.
"""
