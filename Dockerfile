# ipex-screen: production image.
#
#   docker build -t ipex-screen .
#   docker run --rm -p 8080:8080 -v ipex-state:/var/lib/ipex-screen \
#     --read-only --tmpfs /tmp:rw,size=256m,mode=1777 ipex-screen
#
# Runs with a read-only root filesystem: it writes only the state volume
# (/var/lib/ipex-screen) and /tmp (give it a tmpfs: request bodies over 8 MiB
# and the workers' metric files go there; gunicorn's heartbeats go to /dev/shm).
# Without the tmpfs it still starts, logs a JSON line naming /tmp and why,
# and /readyz answers 503.
#
# Build arguments (all optional):
#   BASE_IMAGE         any Debian-like image with python3 >= 3.11 and its venv module
#                      (default: the official python:3.12-slim). Both stages use it,
#                      so the venv's interpreter path matches at run time.
#   PIP_EXTRA_CA_PEM   PEM text of extra CA certificates (e.g. a TLS-intercepting
#                      proxy's) that pip must trust while building. Builder stage
#                      only: it never reaches the runtime image. Pass the extra
#                      certificates, not a whole bundle (a single argument is
#                      limited to 128 KiB):
#                        --build-arg PIP_EXTRA_CA_PEM="$(cat my-proxy-ca.crt)"
#   PIP_INDEX_URL      an alternative package index for the build (builder stage only);
#                      it must serve the same files: the lock files check their hashes.
#
# The Dockerfile uses only instructions the classic builder understands (no
# RUN --mount), so it builds with and without BuildKit.

ARG BASE_IMAGE=python:3.12-slim

# --------------------------------------------------------------------------
# builder: a venv at /opt/venv holding the project's wheel and its dependencies
# --------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

ARG PIP_EXTRA_CA_PEM=""
ARG PIP_INDEX_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120

# Trust store for pip: the image's own bundle (or pip's bundled certifi when
# the image has none) plus the optional extra certificates.
RUN set -eu; \
    python3 -m venv /opt/venv; \
    bundle=/etc/ssl/certs/ca-certificates.crt; \
    if [ ! -s "$bundle" ]; then \
      bundle="$(/opt/venv/bin/python -c 'import pip._vendor.certifi as c; print(c.where())')"; \
    fi; \
    cat "$bundle" > /tmp/build-ca.pem; \
    if [ -n "$PIP_EXTRA_CA_PEM" ]; then printf '\n%s\n' "$PIP_EXTRA_CA_PEM" >> /tmp/build-ca.pem; fi

# Dependencies first, from the lock files (every package pinned, every file's hash
# checked: scripts/lock makes them), so code changes reuse this layer. build.lock holds
# pip and the build backend, service.lock the service's dependencies (no test tools).
WORKDIR /src
COPY requirements/build.lock requirements/service.lock requirements/
RUN set -eu; \
    export PIP_CERT=/tmp/build-ca.pem; \
    if [ -n "$PIP_INDEX_URL" ]; then export PIP_INDEX_URL; else unset PIP_INDEX_URL; fi; \
    /opt/venv/bin/pip install --require-hashes -r requirements/build.lock; \
    /opt/venv/bin/pip install --require-hashes -r requirements/service.lock

# The project itself: build a wheel with the locked build backend (fhir_profiles ships
# as package data) and install it without its source tree.
# README.m[d]: the glob lets the build go on while README.md does not exist yet.
COPY pyproject.toml README.m[d] ./
COPY service/ service/
COPY fhir_profiles/ fhir_profiles/
RUN set -eu; \
    export PIP_CERT=/tmp/build-ca.pem; \
    if [ -n "$PIP_INDEX_URL" ]; then export PIP_INDEX_URL; else unset PIP_INDEX_URL; fi; \
    /opt/venv/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist .; \
    /opt/venv/bin/pip install --no-deps /tmp/dist/ipex_screen-*.whl; \
    /opt/venv/bin/pip check; \
    cd /; \
    want="$(find /src/fhir_profiles -name '*.json' | wc -l)"; \
    got="$(/opt/venv/bin/python -c 'import importlib.resources as r; print(sum(1 for p in r.files("fhir_profiles").rglob("*.json")))')"; \
    echo "fhir_profiles: $got of $want JSON files installed"; \
    test "$got" = "$want"; \
    test -x /opt/venv/bin/ipex-screen; \
    /opt/venv/bin/python -c 'import service.cli'; \
    /opt/venv/bin/python -m pip uninstall -y -q pip setuptools wheel 2>/dev/null || true

# --------------------------------------------------------------------------
# runtime: the venv only, as a non-root user
# --------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    TMPDIR=/tmp \
    IPEX_STATE_DB=/var/lib/ipex-screen/ipex-screen.sqlite3

RUN set -eu; \
    groupadd --gid 10001 ipex; \
    useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home --no-log-init \
            --shell /usr/sbin/nologin ipex; \
    mkdir -p /app /var/lib/ipex-screen; \
    chown 10001:10001 /var/lib/ipex-screen; \
    chmod 0750 /var/lib/ipex-screen

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

# Feedback and JWT-replay store (SQLite). A fresh named volume inherits the
# ownership above.
VOLUME ["/var/lib/ipex-screen"]

EXPOSE 8080
STOPSIGNAL SIGTERM

# No curl in slim images: python's urllib. HEALTHCHECK_PORT follows a --port
# override of the CMD.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HEALTHCHECK_PORT', '8080'), timeout=4); sys.exit(0 if r.status == 200 else 1)"]

CMD ["ipex-screen", "serve", "--host", "0.0.0.0", "--port", "8080"]
