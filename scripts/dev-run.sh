#!/usr/bin/env bash
# The local demo: seeded Stages and Alarm.com simulators, the service on the
# SQLite default, and demo connections to both. Ctrl-C stops them all.
# Ports: CROSSLINK__SERVER__BIND, STAGES_SIM_BIND, ADC_SIM_BIND (host:port).
# DEMO_DATA=DIR keeps the database, key and logs in DIR instead of ./data
# (scripts/readme-check runs the README against a fresh one).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/debug}
API=${CROSSLINK__SERVER__BIND:-127.0.0.1:8080}
SIM=${STAGES_SIM_BIND:-127.0.0.1:8090}
ADC=${ADC_SIM_BIND:-127.0.0.1:8091}
SIM_USER=demo
SIM_PASSWORD=demo-password
DEALER=demo-dealer
DATA=${DEMO_DATA:-data}
mkdir -p "$DATA"
if [ -n "${DEMO_DATA:-}" ]; then
  export CROSSLINK__DATABASE__URL=${CROSSLINK__DATABASE__URL:-sqlite://$DATA/crosslink.db}
  export CROSSLINK__SECRETS__KEY_FILE=${CROSSLINK__SECRETS__KEY_FILE:-$DATA/secret.key}
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$BIN/stages-sim" --bind "$SIM" --username "$SIM_USER" --password "$SIM_PASSWORD" --seed-sites 50 \
  > "$DATA/stages-sim.log" 2>&1 &
pids+=($!)
"$BIN/adc-sim" --bind "$ADC" --username "$SIM_USER" --password "$SIM_PASSWORD" --seed-customers 200 \
  > "$DATA/adc-sim.log" 2>&1 &
pids+=($!)
# The simulators listen on loopback, which the egress policy refuses unless allowed.
CROSSLINK__SERVER__BIND="$API" CROSSLINK__EGRESS__ALLOW="${CROSSLINK__EGRESS__ALLOW:-127.0.0.0/8}" \
  "$BIN/crosslink" serve > "$DATA/crosslink.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fs "http://$API/readyz" >/dev/null 2>&1 && curl -fs "http://$SIM/healthz" >/dev/null 2>&1 \
    && curl -fs "http://$ADC/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fs "http://$API/readyz" >/dev/null || { echo "crosslink did not become ready; see $DATA/crosslink.log" >&2; tail -20 "$DATA/crosslink.log" >&2; exit 1; }

TOKEN=$("$BIN/crosslink" token --dealer "$DEALER" --sub demo-admin --role admin --ttl 12h)
auth=(-H "Authorization: Bearer $TOKEN")
json=(-H "Content-Type: application/json")

# A demo connection by name: made when missing, moved to the simulator's
# address when the ports changed since the last run (which drops its
# credentials), and its dealer credentials set (Alarm.com checks them).
demo_connection() { # provider name endpoint -> prints the id
  local found
  found=$(curl -fs "${auth[@]}" "http://$API/v1/connections?provider=$1&page_size=500" |
    python3 -c 'import sys, json; items = [c for c in json.load(sys.stdin)["items"] if c["name"] == sys.argv[1]]; print(items[0]["id"], items[0]["endpoint"]) if items else None' "$2")
  local id=${found%% *} endpoint=${found#* }
  if [ -z "$found" ]; then
    id=$(curl -fs "${auth[@]}" "${json[@]}" -X POST "http://$API/v1/connections" \
      -d "{\"provider\":\"$1\",\"name\":\"$2\",\"endpoint\":\"$3\"}" |
      python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')
  elif [ "${endpoint%/}" != "${3%/}" ]; then
    curl -fs "${auth[@]}" "${json[@]}" -X PATCH "http://$API/v1/connections/$id" \
      -d "{\"endpoint\":\"$3\"}" >/dev/null
  fi
  curl -fs "${auth[@]}" "${json[@]}" -X PUT "http://$API/v1/connections/$id/credentials/dealer" \
    -d "{\"username\":\"$SIM_USER\",\"password\":\"$SIM_PASSWORD\"}" >/dev/null
  echo "$id"
}
CID=$(demo_connection stages "Stages demo" "http://$SIM")
AID=$(demo_connection alarm_com "Alarm.com demo" "http://$ADC")

cat <<MSG

crosslink is running on http://$API (SQLite under $DATA/), Stages simulator on http://$SIM,
Alarm.com simulator on http://$ADC.
  docs:        http://$API/docs
  connections: Stages demo ($CID), Alarm.com demo ($AID), dealer credentials set
  logs:        $DATA/crosslink.log, $DATA/stages-sim.log, $DATA/adc-sim.log

An admin token for dealer '$DEALER' (12 h):
export TOKEN=$TOKEN

Try it from another terminal:
  curl -s -X POST -H "Authorization: Bearer \$TOKEN" http://$API/v1/connections/$CID:test

Ctrl-C stops all three.
MSG
wait
