"""What operators see: Prometheus metrics, JSON log lines, a request id per call.

- :mod:`.multiproc` sets up prometheus-client's multiprocess directory. It imports
  nothing from prometheus-client, so ``ipex-screen serve`` can call it before
  anything else does (the directory is read when prometheus-client is imported).
- :mod:`.metrics` holds every metric and the ``record_*`` functions the endpoints
  call, and renders ``GET /metrics`` (summed across gunicorn workers).
- :mod:`.logs` formats log records as JSON lines and configures logging at start.
- :mod:`.hooks` times each request, gives it a request id, counts it and logs one
  line for it.

This package imports none of its modules on purpose: see :mod:`.multiproc`.
"""
