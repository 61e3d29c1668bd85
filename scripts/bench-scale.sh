#!/usr/bin/env bash
# `make bench-scale` (B15, B9): builds the release binaries, then one
# PostgreSQL primary with 1,000 dealers x 1,000 links (seeded by SQL in a
# database made for the run and dropped after it) under a mixed load, one
# dealer's 50,000-edit burst and another's reconcile in the middle. Prints the
# table, also in target/bench/scale.md and scale.json. Takes about 6 minutes
# on 2 cores. Extra arguments go to crosslink-bench-scale (e.g. --dealers 100
# --duration 30 --burst-edits 5000 for a quick run; --help for all).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO="${CARGO:-cargo}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

./scripts/ensure-postgres.sh
"$CARGO" build --release --bins -p api -p bench
target/release/crosslink-bench-scale --out target/bench --crosslink-bin target/release/crosslink "$@"
echo "make bench-scale: ${SECONDS} s in all (build included)"
