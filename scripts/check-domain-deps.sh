#!/usr/bin/env bash
# The domain crate stays free of persistence, web and HTTP-client crates.
set -euo pipefail
tree=$(cargo tree -p domain -e normal --prefix none)
if bad=$(grep -E '^(diesel|actix|reqwest|hyper|libsqlite3-sys|pq-sys)' <<<"$tree"); then
  echo "domain must not depend on these crates:" >&2
  echo "$bad" >&2
  exit 1
fi
# Nor do its texts name a route: the API words a next step (NextStep) as the
# request that takes it, so a route can change in one crate.
if routes=$(grep -rnE '(/v1/|\b(GET|PUT|POST|DELETE|PATCH) (/|\.\.\.))' crates/domain/src --include='*.rs' |
  grep -vE '^[^:]+:[0-9]+:\s*//'); then
  echo "domain texts must not name a route:" >&2
  echo "$routes" >&2
  exit 1
fi
echo "domain dependencies ok"
