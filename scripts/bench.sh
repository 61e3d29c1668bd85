#!/usr/bin/env bash
# `make bench`: builds the release binaries, runs every benchmark against the
# real service (SQLite and PostgreSQL) and prints the table of figures beside
# their same-run baselines (also in target/bench/results.md and results.json).
# Extra arguments go to crosslink-bench (e.g. --sites 10000 --duration 3).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO="${CARGO:-cargo}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

./scripts/ensure-postgres.sh
"$CARGO" build --release --bins -p api -p bench
target/release/crosslink-bench --out target/bench --crosslink-bin target/release/crosslink "$@"
cat target/bench/results.md
echo "make bench: ${SECONDS} s in all (build included)"
