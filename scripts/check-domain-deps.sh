#!/usr/bin/env bash
# The domain crate stays free of persistence, web and HTTP-client crates.
set -euo pipefail
tree=$(cargo tree -p domain -e normal --prefix none)
if bad=$(grep -E '^(diesel|actix|reqwest|hyper|libsqlite3-sys|pq-sys)' <<<"$tree"); then
  echo "domain must not depend on these crates:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "domain dependencies ok"
