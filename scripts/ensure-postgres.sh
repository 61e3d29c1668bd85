#!/usr/bin/env bash
# Makes sure the PostgreSQL at TEST_DATABASE_URL answers, starting the local
# cluster when it is stopped. Fails loudly: the PostgreSQL suite is never skipped.
set -euo pipefail
url="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

answers() { psql "$url" -qtAc 'select 1' >/dev/null 2>&1; }

if answers; then exit 0; fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  done
  for _ in $(seq 1 30); do answers && exit 0; sleep 1; done
fi
echo "PostgreSQL does not answer at $url; start it (pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start) or set TEST_DATABASE_URL" >&2
exit 1
