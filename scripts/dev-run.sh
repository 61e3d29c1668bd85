#!/usr/bin/env bash
# The local demo: seeded Stages and Alarm.com simulators, the service on the
# SQLite default, and demo connections to both. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/debug}
API=${CROSSLINK__SERVER__BIND:-127.0.0.1:8080}
SIM=${STAGES_SIM_BIND:-127.0.0.1:8090}
ADC=${ADC_SIM_BIND:-127.0.0.1:8091}
SIM_USER=demo
SIM_PASSWORD=demo-password
DEALER=demo-dealer
mkdir -p data

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$BIN/stages-sim" --bind "$SIM" --username "$SIM_USER" --password "$SIM_PASSWORD" --seed-sites 50 \
  > data/stages-sim.log 2>&1 &
pids+=($!)
"$BIN/adc-sim" --bind "$ADC" --username "$SIM_USER" --password "$SIM_PASSWORD" --seed-customers 200 \
  > data/adc-sim.log 2>&1 &
pids+=($!)
# The simulators listen on loopback, which the egress policy refuses unless allowed.
CROSSLINK__SERVER__BIND="$API" CROSSLINK__EGRESS__ALLOW="${CROSSLINK__EGRESS__ALLOW:-127.0.0.0/8}" \
  "$BIN/crosslink" serve > data/crosslink.log 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fs "http://$API/readyz" >/dev/null 2>&1 && curl -fs "http://$SIM/healthz" >/dev/null 2>&1 \
    && curl -fs "http://$ADC/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fs "http://$API/readyz" >/dev/null || { echo "crosslink did not become ready; see data/crosslink.log" >&2; tail -20 data/crosslink.log >&2; exit 1; }

TOKEN=$("$BIN/crosslink" token --dealer "$DEALER" --sub demo-admin --role admin --ttl 12h)
auth=(-H "Authorization: Bearer $TOKEN")
json=(-H "Content-Type: application/json")

CID=$(curl -fs "${auth[@]}" "http://$API/v1/connections?provider=stages" |
  python3 -c 'import sys, json; items = [c for c in json.load(sys.stdin)["items"] if c["name"] == "Stages demo"]; print(items[0]["id"] if items else "")')
if [ -z "$CID" ]; then
  CID=$(curl -fs "${auth[@]}" "${json[@]}" -X POST "http://$API/v1/connections" \
    -d "{\"provider\":\"stages\",\"name\":\"Stages demo\",\"endpoint\":\"http://$SIM\"}" |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')
fi
curl -fs "${auth[@]}" "${json[@]}" -X PUT "http://$API/v1/connections/$CID/credentials/dealer" \
  -d "{\"username\":\"$SIM_USER\",\"password\":\"$SIM_PASSWORD\"}" >/dev/null

# The demo Alarm.com provider entry, its credentials checked against the simulator.
AID=$(curl -fs "${auth[@]}" "http://$API/v1/connections?provider=alarm_com" |
  python3 -c 'import sys, json; items = [c for c in json.load(sys.stdin)["items"] if c["name"] == "Alarm.com demo"]; print(items[0]["id"] if items else "")')
if [ -z "$AID" ]; then
  AID=$(curl -fs "${auth[@]}" "${json[@]}" -X POST "http://$API/v1/connections" \
    -d "{\"provider\":\"alarm_com\",\"name\":\"Alarm.com demo\",\"endpoint\":\"http://$ADC\"}" |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')
fi
curl -fs "${auth[@]}" "${json[@]}" -X PUT "http://$API/v1/connections/$AID/credentials/dealer" \
  -d "{\"username\":\"$SIM_USER\",\"password\":\"$SIM_PASSWORD\"}" >/dev/null

cat <<MSG

crosslink is running on http://$API (SQLite under ./data), Stages simulator on http://$SIM,
Alarm.com simulator on http://$ADC.
  docs:        http://$API/docs
  connections: Stages demo ($CID), Alarm.com demo ($AID), dealer credentials set
  logs:        data/crosslink.log, data/stages-sim.log, data/adc-sim.log

An admin token for dealer '$DEALER' (12 h):
export TOKEN=$TOKEN

Try it from another terminal:
  curl -s -X POST -H "Authorization: Bearer \$TOKEN" http://$API/v1/connections/$CID:test

Ctrl-C stops all three.
MSG
wait
