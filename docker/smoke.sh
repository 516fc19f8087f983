#!/usr/bin/env bash
# Smoke test of the production image: build it, run it (read-only root filesystem,
# a tmpfs at /tmp, the state volume), call it, stop it; then start it read-only
# without the tmpfs and check that it names /tmp in a JSON log line and is not ready.
#
#   docker/smoke.sh [BASE_IMAGE]
#
# Needs a running Docker daemon, bash, curl and python3 on the host. One
# PASS/FAIL line per check; exits 1 when any check fails, 2 on a usage error.
#
# Environment (all optional):
#   BASE_IMAGE       base image for the build (default python:3.12-slim; the
#                    first argument wins). On a machine with no registry use a
#                    local one, e.g. local/bookworm-python:base.
#   IMAGE            tag to build and run (default ipex-screen:smoke)
#   SKIP_BUILD=1     run an already built $IMAGE
#   SMOKE_PORT       host port the server listens on (default: the first free
#                    port from 18080)
#   SMOKE_NETWORK    "host" (default: works where the daemon has no bridge) or
#                    "bridge" (publishes 127.0.0.1:$SMOKE_PORT -> 8080)
#   SYNTHEA_BUNDLE   a FHIR Bundle expected to screen as tier low (default
#                    ../shared/data/synthea/Clemente_Kreiger_....json, relative to
#                    the repository root)
#   BUILD_CA_FILE    extra CA certificates (PEM) pip must trust inside the build,
#                    e.g. a TLS-intercepting proxy's. Default: the files in
#                    /usr/local/share/ca-certificates/ when there are any. Passed
#                    as the builder-stage-only build arg PIP_EXTRA_CA_PEM; it never
#                    reaches the runtime image.
#   STOP_TIMEOUT     grace period for `docker stop`, seconds (default 30; the
#                    server's own graceful timeout is 20)
#   READY_TIMEOUT    seconds to wait for /readyz (default 90)
#   SMOKE_SKIP_CDS=1 skip the CDS Hooks check (prints SKIP)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="${1:-${BASE_IMAGE:-python:3.12-slim}}"
IMAGE="${IMAGE:-ipex-screen:smoke}"
SKIP_BUILD="${SKIP_BUILD:-0}"
SMOKE_NETWORK="${SMOKE_NETWORK:-host}"
SYNTHEA_BUNDLE="${SYNTHEA_BUNDLE:-../shared/data/synthea/Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json}"
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"
READY_TIMEOUT="${READY_TIMEOUT:-90}"
SMOKE_SKIP_CDS="${SMOKE_SKIP_CDS:-0}"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
case "${1:-}" in -h | --help) usage; exit 0 ;; -*) usage >&2; exit 2 ;; esac
if [[ $# -gt 1 ]]; then usage >&2; exit 2; fi
case "$SMOKE_NETWORK" in host | bridge) ;; *) echo "SMOKE_NETWORK must be host or bridge" >&2; exit 2 ;; esac
case "$SYNTHEA_BUNDLE" in /*) ;; *) SYNTHEA_BUNDLE="$REPO_ROOT/$SYNTHEA_BUNDLE" ;; esac

PASSED=0
FAILED=0
CONTAINER=""
VOLUME=""
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ipex-smoke.XXXXXX")"

pass() { PASSED=$((PASSED + 1)); printf 'PASS  %-16s %s\n' "$1" "${2:-}"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %-16s %s\n' "$1" "${2:-}"; }
skip() { printf 'SKIP  %-16s %s\n' "$1" "${2:-}"; }
note() { printf '      %s\n' "$*"; }

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  set +e
  if [[ -n "$CONTAINER" ]]; then docker rm -f "$CONTAINER" >/dev/null 2>&1; fi
  if [[ -n "$VOLUME" ]]; then docker volume rm -f "$VOLUME" >/dev/null 2>&1; fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

finish() {
  echo "smoke: $PASSED passed, $FAILED failed"
  if [[ $FAILED -gt 0 ]]; then exit 1; fi
  exit 0
}

show_logs() {
  if [[ -n "$CONTAINER" ]]; then
    note "last container log lines:"
    docker logs --tail 30 "$CONTAINER" 2>&1 | sed 's/^/      | /' || true
  fi
}

# ---------------------------------------------------------------- prerequisites
for tool in docker curl python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    fail prerequisites "$tool is not installed"
    finish
  fi
done
if ! docker info >/dev/null 2>&1; then
  fail prerequisites "no Docker daemon answers (docker info failed)"
  finish
fi
if [[ ! -r "$SYNTHEA_BUNDLE" ]]; then
  fail prerequisites "cannot read SYNTHEA_BUNDLE=$SYNTHEA_BUNDLE"
  finish
fi

free_port() {
  python3 - "$1" <<'PY'
import socket, sys
start = int(sys.argv[1])
for port in range(start, start + 200):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
else:
    sys.exit("no free port")
PY
}
SMOKE_PORT="${SMOKE_PORT:-$(free_port 18080)}"
BASE_URL="http://127.0.0.1:$SMOKE_PORT"

# HTTP helper: http METHOD PATH [BODY_FILE [CONTENT_TYPE]] -> sets CODE, BODY file,
# CTYPE (response content type).
BODY="$WORK/body"
http() {
  local method="$1" path="$2" data="${3:-}" ctype="${4:-application/json}"
  local args=(-sS -X "$method" -o "$BODY" -D "$WORK/headers" -w '%{http_code}' --max-time 30)
  if [[ -n "$data" ]]; then args+=(-H "Content-Type: $ctype" --data-binary "@$data"); fi
  : >"$BODY"
  : >"$WORK/headers"
  CODE="$(curl "${args[@]}" "$BASE_URL$path" 2>"$WORK/curl.err" || true)"
  CODE="${CODE:-000}"
  CTYPE="$(tr -d '\r' <"$WORK/headers" | awk 'tolower($1) == "content-type:" { sub(/^[^:]*:[ \t]*/, ""); print }' | tail -1 || true)"
}

# json_check FILE PYTHON_EXPR: evaluates EXPR with `j` bound to the parsed JSON;
# prints what it returns, exits non-zero if it raises or returns something falsy.
json_check() {
  python3 - "$1" "$2" <<'PY'
import json, sys
try:
    with open(sys.argv[1], "rb") as f:
        j = json.load(f)
except Exception as exc:
    print(f"response is not JSON: {exc}")
    sys.exit(1)
try:
    ok, text = eval(sys.argv[2], {"j": j})
except Exception as exc:
    print(f"unexpected shape: {type(exc).__name__}: {exc}")
    sys.exit(1)
print(text)
sys.exit(0 if ok else 1)
PY
}

# ---------------------------------------------------------------- build
if [[ "$SKIP_BUILD" == "1" ]]; then
  skip build "SKIP_BUILD=1: using the existing $IMAGE"
else
  build_args=(--network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" -f "$REPO_ROOT/Dockerfile")
  if [[ -z "${BUILD_CA_FILE:-}" ]]; then
    shopt -s nullglob
    local_cas=(/usr/local/share/ca-certificates/*.crt)
    shopt -u nullglob
    if [[ ${#local_cas[@]} -gt 0 ]]; then
      cat "${local_cas[@]}" >"$WORK/extra-ca.pem"
      BUILD_CA_FILE="$WORK/extra-ca.pem"
    fi
  fi
  if [[ -n "${BUILD_CA_FILE:-}" ]]; then
    build_args+=(--build-arg "PIP_EXTRA_CA_PEM=$(cat "$BUILD_CA_FILE")")
  fi
  started=$(date +%s)
  if docker build "${build_args[@]}" "$REPO_ROOT" >"$WORK/build.log" 2>&1; then
    pass build "$IMAGE from $BASE_IMAGE in $(($(date +%s) - started)) s"
  else
    fail build "docker build failed after $(($(date +%s) - started)) s; last lines:"
    tail -25 "$WORK/build.log" | sed 's/^/      | /'
    finish
  fi
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  fail image "$IMAGE does not exist"
  finish
fi
size_mb=$(( $(docker image inspect -f '{{.Size}}' "$IMAGE") / 1000000 ))
image_user="$(docker image inspect -f '{{.Config.User}}' "$IMAGE")"
if [[ "$image_user" == 10001* ]]; then
  pass image "$size_mb MB, USER $image_user"
else
  fail image "$size_mb MB, USER is '$image_user', expected 10001"
fi

# ---------------------------------------------------------------- run
VOLUME="ipex-smoke-state-$$"
CONTAINER="ipex-smoke-$$"
docker volume create "$VOLUME" >/dev/null
run_args=(
  -d --name "$CONTAINER"
  --read-only --tmpfs /tmp:rw,size=256m,mode=1777
  -v "$VOLUME:/var/lib/ipex-screen"
  -e IPEX_CDS_AUTH=off
  -e IPEX_WORKERS=2
  --health-interval 2s --health-timeout 5s --health-start-period 60s --health-retries 3
)
if [[ "$SMOKE_NETWORK" == "host" ]]; then
  # The daemon may have no bridge: share the host's network and listen on the
  # chosen port instead of 8080 (the CMD is overridden, the healthcheck follows).
  run_args+=(--network host -e "HEALTHCHECK_PORT=$SMOKE_PORT")
  cmd=(ipex-screen serve --host 0.0.0.0 --port "$SMOKE_PORT")
else
  run_args+=(-p "127.0.0.1:$SMOKE_PORT:8080")
  cmd=()
fi
if ! docker run "${run_args[@]}" "$IMAGE" "${cmd[@]}" >/dev/null 2>"$WORK/run.err"; then
  fail start "docker run failed: $(head -c 400 "$WORK/run.err")"
  finish
fi

deadline=$(($(date +%s) + READY_TIMEOUT))
ready=0
while [[ $(date +%s) -lt $deadline ]]; do
  if [[ "$(docker inspect -f '{{.State.Running}}' "$CONTAINER")" != "true" ]]; then
    break
  fi
  http GET /readyz
  if [[ "$CODE" == "200" ]]; then ready=1; break; fi
  sleep 1
done
if [[ $ready == 1 ]]; then
  pass readyz "200 after $((READY_TIMEOUT - (deadline - $(date +%s)))) s on $BASE_URL"
else
  state="$(docker inspect -f '{{.State.Status}} (exit {{.State.ExitCode}})' "$CONTAINER")"
  fail readyz "no 200 from /readyz within ${READY_TIMEOUT}s (last status $CODE; container $state)"
  show_logs
  finish
fi

http GET /healthz
if [[ "$CODE" == "200" ]]; then pass healthz "200"; else fail healthz "status $CODE"; fi

uid="$(docker exec "$CONTAINER" python3 -c 'import os; print(os.getuid())' 2>&1 || true)"
if [[ "$uid" == "10001" ]]; then
  pass non-root "the server runs as uid 10001"
else
  fail non-root "the server runs as uid '$uid'"
fi

# ---------------------------------------------------------------- FHIR operation
# shellcheck disable=SC2016  # a literal $ in the path
http POST '/fhir/$ipex-screen' "$SYNTHEA_BUNDLE" application/fhir+json
if [[ "$CODE" != "200" ]]; then
  fail fhir-operation "POST /fhir/\$ipex-screen: status $CODE, expected 200: $(head -c 300 "$BODY")"
elif out="$(json_check "$BODY" '(j["resourceType"] == "RiskAssessment" and j["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "low", "%s, qualitativeRisk %s" % (j["resourceType"], j["prediction"][0]["qualitativeRisk"]["coding"][0]["code"]))')"; then
  pass fhir-operation "200 $CTYPE: $out ($(basename "$SYNTHEA_BUNDLE"))"
else
  fail fhir-operation "expected a RiskAssessment with qualitativeRisk low: $out"
fi

# ---------------------------------------------------------------- conformance resources
# Served from the installed package's data: proves fhir_profiles made it into the wheel.
http GET /fhir/metadata
if [[ "$CODE" == "200" ]] && out="$(json_check "$BODY" '(j["resourceType"] == "CapabilityStatement", j["resourceType"])')"; then
  http GET /fhir/OperationDefinition/ipex-screen
  if [[ "$CODE" == "200" ]] && out2="$(json_check "$BODY" '(j["resourceType"] == "OperationDefinition" and j["url"].startswith("https://ipex-screen.org/fhir/"), j["url"])')"; then
    pass fhir-conformance "/fhir/metadata: $out; OperationDefinition $out2"
  else
    fail fhir-conformance "GET /fhir/OperationDefinition/ipex-screen: status $CODE ${out2:-}"
  fi
else
  fail fhir-conformance "GET /fhir/metadata: status $CODE ${out:-}"
fi

# ---------------------------------------------------------------- CDS Hooks
if [[ "$SMOKE_SKIP_CDS" == "1" ]]; then
  skip cds-hooks "SMOKE_SKIP_CDS=1"
else
  python3 - "$WORK/cds-request.json" <<'PY'
import datetime as dt, json, sys, uuid

def add_months(day, months):
    y, m = divmod(day.month - 1 + months, 12)
    return day.replace(year=day.year + y, month=m + 1, day=min(day.day, 28))

today = dt.date.today()
birth = add_months(today, -12).replace(day=1)
pid = "smoke-ipex-infant"
patient = {"resourceType": "Patient", "id": pid, "gender": "male",
           "birthDate": birth.isoformat(), "name": [{"family": "Smoke", "given": ["Test"]}]}

def condition(n, code, display, months):
    return {
        "resourceType": "Condition", "id": f"smoke-cond-{n}",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": add_months(birth, months).isoformat(),
        "recordedDate": add_months(birth, months).isoformat(),
    }

def searchset(resources):
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"http://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                       "resource": r, "search": {"mode": "match"}} for r in resources]}

conditions = [
    condition(1, "236071009", "Chronic diarrhea", 2),
    condition(2, "46635009", "Diabetes mellitus type 1", 3),
    condition(3, "24079001", "Atopic dermatitis", 4),
]
request = {
    "hook": "patient-view",
    "hookInstance": str(uuid.uuid4()),
    "context": {"userId": "Practitioner/smoke", "patientId": pid},
    "prefetch": {
        "patient": patient,
        "conditions": searchset(conditions),
        "observations": searchset([]),
        "orders": searchset([]),
    },
}
with open(sys.argv[1], "w") as f:
    json.dump(request, f)
PY
  http POST /cds-services/ipex-foxp3-screen "$WORK/cds-request.json" application/json
  if [[ "$CODE" != "200" ]]; then
    fail cds-hooks "POST /cds-services/ipex-foxp3-screen: status $CODE, expected 200: $(head -c 300 "$BODY")"
  elif out="$(json_check "$BODY" '(len(j["cards"]) == 1 and j["cards"][0]["indicator"] == "warning", "%d card(s), indicator %s: %s" % (len(j["cards"]), j["cards"][0]["indicator"] if j["cards"] else "-", j["cards"][0].get("summary", "") if j["cards"] else ""))')"; then
    pass cds-hooks "200: $out"
    cp "$BODY" "$WORK/cds-response.json"
  else
    fail cds-hooks "expected one card with indicator warning: $out"
  fi
fi

# ---------------------------------------------------------------- metrics
http GET /metrics
if [[ "$CODE" == "200" ]] && grep -q '^# TYPE ' "$BODY"; then
  pass metrics "200 $CTYPE, $(grep -c '^# TYPE ' "$BODY") metric families"
else
  fail metrics "status $CODE, content type '${CTYPE:-}', $(grep -c '^# TYPE ' "$BODY" || true) '# TYPE' lines"
fi

# ---------------------------------------------------------------- docker health
health=""
for _ in $(seq 1 20); do
  health="$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$CONTAINER")"
  [[ "$health" == "starting" ]] || break
  sleep 1
done
if [[ "$health" == "healthy" ]]; then
  pass healthcheck "docker reports the container healthy (image HEALTHCHECK)"
else
  fail healthcheck "docker health status '$health'"
  docker inspect -f '{{range .State.Health.Log}}{{.ExitCode}} {{.Output}}{{end}}' "$CONTAINER" 2>/dev/null \
    | tail -3 | sed 's/^/      | /' || true
fi

# ---------------------------------------------------------------- state volume
# CDS feedback on the card above is stored in IPEX_STATE_DB, on the volume.
if [[ -s "$WORK/cds-response.json" ]]; then
  python3 - "$WORK/cds-response.json" "$WORK/feedback.json" <<'PY'
import datetime as dt, json, sys
card = json.load(open(sys.argv[1]))["cards"][0]
item = {"card": card["uuid"], "outcome": "accepted",
        "outcomeTimestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
if card.get("suggestions"):
    item["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
json.dump({"feedback": [item]}, open(sys.argv[2], "w"))
PY
  http POST /cds-services/ipex-foxp3-screen/feedback "$WORK/feedback.json" application/json
  if [[ "$CODE" == "200" ]] && docker exec "$CONTAINER" test -s /var/lib/ipex-screen/ipex-screen.sqlite3; then
    pass state-volume "feedback 200, stored in /var/lib/ipex-screen/ipex-screen.sqlite3"
  else
    fail state-volume "feedback status $CODE: $(head -c 200 "$BODY"); state file: $(docker exec "$CONTAINER" ls -la /var/lib/ipex-screen 2>&1 | tr '\n' ' ')"
  fi
elif docker exec "$CONTAINER" python3 -c 'import os, sys; sys.exit(0 if os.access("/var/lib/ipex-screen", os.W_OK) else 1)'; then
  pass state-volume "/var/lib/ipex-screen is writable by the server user (no card to send feedback on)"
else
  fail state-volume "/var/lib/ipex-screen is not writable by the server user"
fi

# ---------------------------------------------------------------- stop
started=$(date +%s.%N)
docker stop -t "$STOP_TIMEOUT" "$CONTAINER" >/dev/null 2>&1 || true
elapsed="$(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$started" "$(date +%s.%N)")"
exit_code="$(docker inspect -f '{{.State.ExitCode}}' "$CONTAINER")"
too_slow="$(python3 -c "import sys; print(int(float(sys.argv[1]) >= float(sys.argv[2]) - 0.5))" "$elapsed" "$STOP_TIMEOUT")"
if [[ "$exit_code" == "0" && "$too_slow" == "0" ]]; then
  pass stop "exited 0 ${elapsed}s after SIGTERM (grace period ${STOP_TIMEOUT}s)"
else
  fail stop "exit code $exit_code ${elapsed}s after SIGTERM (grace period ${STOP_TIMEOUT}s; 137 means it had to be killed)"
  show_logs
fi

# ---------------------------------------------------------------- logs
docker logs "$CONTAINER" >"$WORK/container.log" 2>&1 || true
if out="$(python3 - "$WORK/container.log" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines() if l.strip()]
bad = []
for l in lines:
    try:
        if not isinstance(json.loads(l), dict):
            bad.append(l)
    except ValueError:
        bad.append(l)
if not lines:
    print("no log lines at all")
    sys.exit(1)
if bad:
    print(f"{len(bad)} of {len(lines)} lines are not JSON objects, e.g. {bad[0][:160]!r}")
    sys.exit(1)
print(f"{len(lines)} lines, all JSON objects")
PY
)"; then
  pass json-logs "$out"
else
  fail json-logs "$out"
fi
# A clean start, a few calls and a stop log nothing at level ERROR or above.
if out="$(python3 - "$WORK/container.log" <<'PY'
import json, sys
errors = []
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        record = json.loads(line)
    except ValueError:  # not JSON (the json-logs check reports that): look for words
        if "ERROR" in line or "CRITICAL" in line or "Traceback" in line:
            errors.append(line.strip()[:200])
        continue
    if isinstance(record, dict) and str(record.get("level", "")).upper() in ("ERROR", "CRITICAL"):
        errors.append(str(record.get("msg", line.strip()))[:200])
if errors:
    print(f"{len(errors)} error line(s), e.g. {errors[0]!r}")
    sys.exit(1)
print("no ERROR lines")
PY
)"; then
  pass log-errors "$out"
else
  fail log-errors "$out"
fi


# ---------------------------------------------------------------- read-only, no tmpfs
# As a hardened cluster might run it by mistake: nothing writable but the volume.
# Expect: it starts, a JSON line names /tmp and why, /readyz 503, /healthz 200.
docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
ro_args=(-d --name "$CONTAINER" --read-only -v "$VOLUME:/var/lib/ipex-screen"
         -e IPEX_CDS_AUTH=off -e IPEX_WORKERS=1)
if [[ "$SMOKE_NETWORK" == "host" ]]; then
  ro_args+=(--network host -e "HEALTHCHECK_PORT=$SMOKE_PORT")
else
  ro_args+=(-p "127.0.0.1:$SMOKE_PORT:8080")
fi
if docker run "${ro_args[@]}" "$IMAGE" "${cmd[@]}" >/dev/null 2>"$WORK/run.err"; then
  code=""
  for _ in $(seq 1 "$READY_TIMEOUT"); do
    http GET /healthz
    code="$CODE"
    [[ "$code" == "200" ]] && break
    [[ "$(docker inspect -f '{{.State.Running}}' "$CONTAINER")" == "true" ]] || break
    sleep 1
  done
  http GET /readyz
  ready_code="$CODE"
  cp "$BODY" "$WORK/readyz.json"
  docker logs "$CONTAINER" >"$WORK/ro.log" 2>&1 || true
  if out="$(python3 - "$WORK/ro.log" "$WORK/readyz.json" "$code" "$ready_code" <<'PY'
import json, sys
log, ready, health, ready_code = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
lines = [l for l in open(log, encoding="utf-8", errors="replace").read().splitlines() if l.strip()]
try:
    records = [json.loads(l) for l in lines]
except ValueError as exc:
    print(f"a log line is not JSON: {exc}")
    sys.exit(1)
named = [r for r in records if r.get("path") == "/tmp" and r.get("level") == "ERROR"]
if not named:
    print("no JSON log line names /tmp")
    sys.exit(1)
body = json.load(open(ready))
paths = [u.get("path") for u in body.get("unwritable", [])]
if health != "200" or ready_code != "503" or "/tmp" not in paths:
    print(f"/healthz {health}, /readyz {ready_code} naming {paths}; expected 200 and 503 naming /tmp")
    sys.exit(1)
print(f"/healthz 200, /readyz 503 naming {paths}; log: {named[0]['msg'][:90]}")
PY
)"; then
    pass read-only "$out"
  else
    fail read-only "$out"
    show_logs
  fi
else
  fail read-only "docker run --read-only failed: $(head -c 400 "$WORK/run.err")"
fi

finish
