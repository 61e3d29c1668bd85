#!/usr/bin/env bash
# `make browser-check`: opens the service's /docs (Swagger UI, served offline)
# in headless Chromium from Debian's `chromium` package (apt-get installs it
# when missing; CI runs as root), driven by Playwright from PyPI with
# executable_path=/usr/bin/chromium, so no browser is downloaded. Starts
# `crosslink serve` on a scratch SQLite (target/browser-check/) on a free
# loopback port and runs check.py: every operation of openapi/openapi.json
# listed, authorise with a minted token, "Try it out" -> "Execute" on
# GET /v1/connections rendering a 200. Then, unless BROWSER_SELF_TEST=0,
# check.py --self-test breaks the page on purpose (spec missing an operation,
# the Swagger UI script not loading, /openapi.json answering 500, "Try it out"
# off, a wrong token, a page that is not /docs) and fails when the check passes
# any of them. BROWSER_DOCS_PATH=/elsewhere points the check at another page
# (it must then fail).
# Needs the debug binaries (`cargo build --bins`).
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${BIN:-target/debug}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$BIN/crosslink" ] || { echo "no $BIN/crosslink: run cargo build --bins first" >&2; exit 1; }
if [ ! -x "$CHROMIUM" ]; then
  echo "installing Debian's chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends chromium >&2
fi
venv=$(scripts/py-venv.sh browser)

work=target/browser-check
rm -rf "$work" && mkdir -p "$work"
API=127.0.0.1:$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# The service's settings for this run: its own database, key and JWT secret.
export CROSSLINK__DATABASE__URL="sqlite://$work/crosslink.db"
export CROSSLINK__SECRETS__KEY_FILE="$work/secret.key"
export CROSSLINK__AUTH__HS256_SECRET="browser-check-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export CROSSLINK__SERVER__BIND="$API"
# One page loading its assets and the document at once: not what the rate limit is for.
export CROSSLINK__RATE_LIMIT__REQUESTS_PER_SECOND=0

pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$BIN/crosslink" serve > "$work/crosslink.log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do
  curl -fs "http://$API/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
if ! curl -fs "http://$API/readyz" >/dev/null; then
  echo "crosslink did not become ready:" >&2
  tail -30 "$work/crosslink.log" >&2
  exit 1
fi

TOKEN=$("$BIN/crosslink" token --dealer browser-dealer --sub browser-viewer --role viewer --ttl 30m)
args=()
[ "${BROWSER_SELF_TEST:-1}" = 0 ] || args+=(--self-test)
status=0
CROSSLINK_URL="http://$API" CROSSLINK_TOKEN="$TOKEN" "$venv/bin/python" -u scripts/browser-check/check.py \
  --chromium "$CHROMIUM" --docs-path "${BROWSER_DOCS_PATH:-/docs}" --screenshots "$work" "${args[@]}" || status=$?
if [ "$status" -ne 0 ]; then
  echo "== the browser check failed; screenshots in $work/, the service's last log lines ($work/crosslink.log):" >&2
  tail -20 "$work/crosslink.log" >&2
fi
exit "$status"
