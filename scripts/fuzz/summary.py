#!/usr/bin/env python3
"""What a schemathesis run of scripts/fuzz.sh sent and got, per operation.

    summary.py REPORT_DIR OPENAPI_JSON

Reads the NDJSON report (every case and the answer to it) and prints, for
each operation of the served document, its cases and how many answered 2xx,
4xx and 5xx (cases without an answer: none; requests with a method the
document does not list: one "other methods" row), then the total number of
cases on the last line as `cases: N` for fuzz.sh.

Fails (exit 1) when more than MAX_SILENT operations of ALARM_COM below never
answered 2xx: those reach 2xx only when the seed step's Alarm.com entry works (adc-sim, the
credentials, the ISP account, the import), so a seed that quietly stopped
working shows up here instead of as a run of 404s and 409s. Each name must
be an operation of the document, so a renamed one fails loudly too.
"""

from __future__ import annotations

import collections
import json
import pathlib
import sys

# Operations that need the Alarm.com (and Alarm.net) entries of the seed step
# to answer 2xx, and that must do so at least once per run.
ALARM_COM = (
    "GET /v1/connections/{connection_id}/service-plans",
    "GET /v1/connections/{connection_id}/billing-notifications",
    "GET /v1/connections/{connection_id}/isp-accounts",
    "POST /v1/connections/{connection_id}/isp-accounts",
    "GET /v1/connections/{connection_id}/isp-accounts/{account_id}",
    "POST /v1/connections/{connection_id}/isp-accounts/{account_id}:change-service-plan",
    "POST /v1/imports",
    "GET /v1/imports/filter-choices",
    "GET /v1/imports/{import_id}",
    "GET /v1/imports/{import_id}/items",
    "POST /v1/webhooks/alarm-com/{connection_id}",
    "GET /v1/connections/{connection_id}/callback-health",
    "POST /v1/webhooks/alarmnet/{connection_id}",
)
# How many of them may go without a 2xx in one run: whether a generated case
# of, say, a one-time link gets through is chance (two of 13 did not, of a
# seed that worked, on 2026-12-02). A seed step that stopped working silences
# nearly all of them.
MAX_SILENT = 2
METHODS = ("get", "put", "post", "patch", "delete")


def main() -> int:
    report, document = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    doc = json.loads(document.read_text())
    ops = [f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item if m in METHODS]
    rows: dict[str, collections.Counter] = {op: collections.Counter() for op in ops}
    other = collections.Counter()
    cases = 0
    for path in sorted(report.glob("*.ndjson")):
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            for kind, body in event.items():
                if not (kind.endswith("ScenarioFinished") and isinstance(body, dict)):
                    continue
                recorder = body.get("recorder") or {}
                interactions = recorder.get("interactions") or {}
                for case_id, case in (recorder.get("cases") or {}).items():
                    cases += 1
                    value = case.get("value") or {}
                    row = rows.get(f"{str(value.get('method', '')).upper()} {value.get('path', '')}", other)
                    row["cases"] += 1
                    response = (interactions.get(case_id) or {}).get("response") or {}
                    status = response.get("status_code")
                    row[f"{status // 100}xx" if isinstance(status, int) else "none"] += 1

    width = max(len(op) for op in ops)
    print(f"{'operation':<{width}}  {'cases':>6} {'2xx':>5} {'4xx':>5} {'5xx':>5} {'none':>5}")
    for op in sorted(ops, key=lambda o: (o.split(" ", 1)[1], o)):
        r = rows[op]
        mark = "  (Alarm.com)" if op in ALARM_COM else ""
        print(f"{op:<{width}}  {r['cases']:>6} {r['2xx']:>5} {r['4xx']:>5} {r['5xx']:>5} {r['none']:>5}{mark}")
    if other["cases"]:
        r = other
        print(f"{'other methods':<{width}}  {r['cases']:>6} {r['2xx']:>5} {r['4xx']:>5} {r['5xx']:>5} {r['none']:>5}")
    total = collections.Counter()
    for r in [*rows.values(), other]:
        total.update(r)
    print(f"{'all':<{width}}  {total['cases']:>6} {total['2xx']:>5} {total['4xx']:>5} {total['5xx']:>5} {total['none']:>5}")

    adc = [op for op in ALARM_COM if op in rows]
    print(f"Alarm.com operations: {sum(rows[op]['2xx'] for op in adc)} of {sum(rows[op]['cases'] for op in adc)} "
          f"cases answered 2xx, over {sum(1 for op in adc if rows[op]['2xx'])} of {len(ALARM_COM)} operations")
    never = sorted(op for op in ops if rows[op]["cases"] and not rows[op]["2xx"])
    if never:
        print(f"operations that never answered 2xx ({len(never)}): " + ", ".join(never))
    failed = False
    missing = [op for op in ALARM_COM if op not in rows]
    if missing:
        print(f"fuzz: summary.py names operations the document lacks: {', '.join(missing)}", file=sys.stderr)
        failed = True
    no_2xx = [op for op in adc if not rows[op]["2xx"]]
    if len(no_2xx) > MAX_SILENT:
        print(f"fuzz: {len(no_2xx)} Alarm.com operations never answered 2xx, more than {MAX_SILENT} "
              "(is the seed step's Alarm.com entry working?): " + ", ".join(no_2xx), file=sys.stderr)
        failed = True
    elif no_2xx:
        print("fuzz: by chance of generation, no 2xx this run from: " + ", ".join(no_2xx))
    print(f"cases: {cases}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
