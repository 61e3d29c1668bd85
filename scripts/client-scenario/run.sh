#!/usr/bin/env bash
# `make client-scenario`: generates a Python client from openapi/openapi.json
# with openapi-python-client (into target/client, not committed; warnings fail
# the generation), starts stages-sim and `crosslink serve` (SQLite under
# target/client-scenario/) on free loopback ports, and runs scenario.py with
# the generated client. Needs the debug binaries (`cargo build --bins`).
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${BIN:-target/debug}
for b in crosslink stages-sim; do
  [ -x "$BIN/$b" ] || { echo "no $BIN/$b: run cargo build --bins first" >&2; exit 1; }
done
venv=$(scripts/py-venv.sh client)
export PATH="$PWD/$venv/bin:$PATH" # ruff, for the generator's post hooks

# Every operation needs its own operationId (OpenAPI requires it; generators
# and schemathesis' links resolve operations by it).
"$venv/bin/python" - <<'PY'
import collections, json, sys
doc = json.load(open("openapi/openapi.json"))
ids = collections.defaultdict(list)
for path, item in doc["paths"].items():
    for method, op in item.items():
        if isinstance(op, dict) and "operationId" in op:
            ids[op["operationId"]].append(f"{method.upper()} {path}")
dupes = {k: v for k, v in ids.items() if len(v) > 1}
for k, v in dupes.items():
    print(f"openapi.json: operationId {k} is used by {', '.join(v)}", file=sys.stderr)
sys.exit(1 if dupes else 0)
PY

echo "== generating the client from openapi/openapi.json"
rm -rf target/client
"$venv/bin/openapi-python-client" generate --path openapi/openapi.json --output-path target/client \
  --config scripts/client-scenario/generator.yaml --fail-on-warning

work=target/client-scenario
rm -rf "$work" && mkdir -p "$work"
free_port() { "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
API=127.0.0.1:$(free_port)
SIM=127.0.0.1:$(free_port)
SIM_USER=scenario
SIM_PASSWORD=scenario-password-$RANDOM

# The service's settings for this run: its own database, key and JWT secret.
export CROSSLINK__DATABASE__URL="sqlite://$work/crosslink.db"
export CROSSLINK__SECRETS__KEY_FILE="$work/secret.key"
export CROSSLINK__AUTH__HS256_SECRET="client-scenario-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export CROSSLINK__SERVER__BIND="$API"
export CROSSLINK__JOBS__RETRY_BASE_MS=50
export CROSSLINK__JOBS__RETRY_CAP_MS=500
# One scripted dealer at full speed: not what the rate limit is for.
export CROSSLINK__RATE_LIMIT__REQUESTS_PER_SECOND=0
# The simulators listen on loopback, which the egress policy refuses unless allowed.
export CROSSLINK__EGRESS__ALLOW=127.0.0.0/8

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$BIN/stages-sim" --bind "$SIM" --username "$SIM_USER" --password "$SIM_PASSWORD" > "$work/stages-sim.log" 2>&1 &
pids+=($!)
"$BIN/crosslink" serve > "$work/crosslink.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do
  curl -fs "http://$API/readyz" >/dev/null 2>&1 && curl -fs "http://$SIM/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
if ! curl -fs "http://$API/readyz" >/dev/null; then
  echo "crosslink did not become ready:" >&2
  tail -30 "$work/crosslink.log" >&2
  exit 1
fi

echo "== scenario against http://$API (Stages simulator on http://$SIM)"
TOKEN=$("$BIN/crosslink" token --dealer "scenario-dealer" --sub scenario-admin --role admin --ttl 30m)
status=0
CROSSLINK_URL="http://$API" CROSSLINK_TOKEN="$TOKEN" STAGES_URL="http://$SIM" \
  STAGES_USER="$SIM_USER" STAGES_PASSWORD="$SIM_PASSWORD" \
  PYTHONPATH="$PWD/target/client" "$venv/bin/python" scripts/client-scenario/scenario.py || status=$?
if [ "$status" -ne 0 ]; then
  echo "== the scenario failed; the service's last log lines ($work/crosslink.log):" >&2
  tail -30 "$work/crosslink.log" >&2
fi
exit "$status"
