#!/usr/bin/env python3
"""Records for the fuzzer to find (scripts/fuzz.sh), made through the API:

- Stages: a connection to stages-sim with working credentials, a billing
  customer, site, system and user, the site pushed to Stages (links, site
  number, device, contact), the connection's inbound (callback) credential,
  and a webhook subscription;
- Alarm.com: a provider entry pointing at adc-sim with its credentials
  (checked by the service when saved), billing notifications turned on (which
  asks Alarm.com for the billing permission), its inbound secret, the service
  plans, an ISP account made for the billing customer, a second billing
  customer without one, and a finished customer import;
- Alarm.net: a Total Connect entry and its inbound secret (callbacks and
  callback health have nothing upstream to call).

Every step must answer 2xx: any other answer stops the run with the answer
printed, so a seed that stopped working cannot pass as a fuzz run that only
met 4xx. Prints JSON for scripts/fuzz/hooks.py: per upstream (a "flavour")
the values to give path, query and body fields of that name, and the
secrets that sign callbacks."""

from __future__ import annotations

import json
import os
import sys
import time

import requests

base = os.environ["CROSSLINK_URL"]
s = requests.Session()
s.headers["Authorization"] = f"Bearer {os.environ['CROSSLINK_TOKEN']}"


def call(method: str, path: str, body=None):
    r = s.request(method, base + path, json=body, timeout=60)
    if not 200 <= r.status_code < 300:
        sys.exit(f"seed: {method} {path} answered {r.status_code}: {r.text[:1000]}")
    return r.json() if r.content else None


# ---- Stages -------------------------------------------------------------------------
conn = call("POST", "/v1/connections", {
    "provider": "stages", "name": "Stages fuzz", "endpoint": os.environ["STAGES_URL"], "auto_sync": False})
cid = conn["id"]
call("PUT", f"/v1/connections/{cid}/credentials/dealer",
     {"username": os.environ["STAGES_USER"], "password": os.environ["STAGES_PASSWORD"]})
call("PUT", "/v1/billing/customers/FC-1", {"first_name": "Ada", "last_name": "Lovelace", "phone": "(614) 555-0101"})
call("PUT", "/v1/billing/sites/FS-1", {"customer_id": "FC-1", "name": "Lovelace home", "address1": "12 Elm St",
                                       "city": "Columbus", "state": "OH", "zip": "43004", "phone": "614-555-0101"})
call("PUT", "/v1/billing/systems/FSYS-1", {"site_id": "FS-1", "panel_type": "VISTA-20P"})
call("PUT", "/v1/billing/users/FU-1", {"first_name": "Ada", "last_name": "Lovelace"})
pushed = call("POST", f"/v1/connections/{cid}/push", {
    "billing_site_id": "FS-1",
    "site": {"time_zone": "America/New_York", "site_type": "RES"},
    "contacts": [{"name": "Ada Lovelace", "relation": "Owner", "phones": [{"kind": "mobile", "number": "614-555-0101"}]}],
    "systems": [{"billing_system_id": "FSYS-1",
                 "device": {"transmitter_code": "7123456", "device_type": "VISTA-20P", "comm_type": "CELL"},
                 "configurations": [{"point": 1, "event_code": "BA", "description": "Front door"}]}],
})
records = pushed["records"]
site_no, site_link = records[0]["external_id"], records[0]["link_id"]
device_id = records[1]["external_id"]
contacts = call("GET", f"/v1/connections/{cid}/stages/sites/{site_no}/contacts")
# What Stages uses to call the service back (HTTP Basic on /v1/webhooks/stages/{cid}).
inbound = call("POST", f"/v1/connections/{cid}/inbound-credentials:rotate")
sub = call("POST", "/v1/webhook-subscriptions", {"url": "http://127.0.0.1:9/fuzz-hook"})

stages = {
    "connection_id": cid,
    "customer_id": "FC-1",
    "billing_customer_id": "FC-1",
    "site_id": "FS-1",
    "billing_site_id": "FS-1",
    "system_id": "FSYS-1",
    "user_id": "FU-1",
    "site_no": site_no,
    "stages_site_no": site_no,
    "device_id": device_id,
    "link_id": site_link,
    "list": "regions",
    "subscription_id": sub["id"],
}
items = contacts.get("items") if isinstance(contacts, dict) else contacts
if items:
    stages["contact_id"] = str(items[0].get("contact_id") or items[0].get("id"))

# ---- Alarm.com ------------------------------------------------------------------------
adc = call("POST", "/v1/connections", {
    "provider": "alarm_com", "name": "Alarm.com fuzz", "endpoint": os.environ["ADC_URL"]})
aid = adc["id"]
# Checked against adc-sim when saved: a refusal here is a 4xx and stops the run.
call("PUT", f"/v1/connections/{aid}/credentials/dealer",
     {"username": os.environ["ADC_USER"], "password": os.environ["ADC_PASSWORD"]})
call("PATCH", f"/v1/connections/{aid}", {"settings": {"billing_notifications": True}})
adc_inbound = call("POST", f"/v1/connections/{aid}/inbound-credentials:rotate")
plans = call("GET", f"/v1/connections/{aid}/service-plans")["items"]
if len(plans) < 2:
    sys.exit(f"seed: Alarm.com has fewer than two service plans: {plans}")
account = call("POST", f"/v1/connections/{aid}/isp-accounts", {
    "billing_customer_id": "FC-1", "action": "create_customer", "site_id": "FS-1",
    "package_id": plans[0]["package_id"], "login_name": "ada.lovelace.fuzz"})
call("PUT", "/v1/billing/customers/FC-2", {"first_name": "Grace", "last_name": "Hopper",
                                           "email": "grace.hopper@example.com", "phone": "(614) 555-0102"})
run = call("POST", "/v1/imports", {"connection_id": aid, "kind": "customers"})
for _ in range(600):
    run = call("GET", f"/v1/imports/{run['id']}")
    if run["state"] not in ("queued", "running"):
        break
    time.sleep(0.1)
if run["state"] != "succeeded" or not run["counts"]["imported"]:
    sys.exit(f"seed: the Alarm.com import did not import anything: {json.dumps(run)}")
# An Alarm.com customer the import brought in, to link to a billing customer.
items = call("GET", f"/v1/imports/{run['id']}/items?outcome=imported&page_size=5")["items"]
others = [int(i["external_id"]) for i in items if i["external_id"] != account["external_id"]]
if not others:
    sys.exit(f"seed: the import lists no imported Alarm.com customer: {json.dumps(items)}")

alarm_com = {
    "connection_id": aid,
    "account_id": account["id"],
    "import_id": run["id"],
    # A billing customer without an ISP account, so creating one can succeed.
    "billing_customer_id": "FC-2",
    # Path and billing bodies: the billing id; Alarm.com bodies (a link, a
    # billing notification): an Alarm.com CustomerId.
    "customer_id": ["FC-2", others[0]],
    "site_id": "FS-1",
    "package_id": plans[1]["package_id"],
}

# ---- Alarm.net (Total Connect) --------------------------------------------------------
tc = call("POST", "/v1/connections", {
    "provider": "total_connect", "name": "Total Connect fuzz", "endpoint": os.environ["ADC_URL"]})
tc_inbound = call("POST", f"/v1/connections/{tc['id']}/inbound-credentials:rotate")

print(json.dumps({
    "flavours": {
        "stages": stages,
        "alarm_com": alarm_com,
        "total_connect": {"connection_id": tc["id"]},
    },
    "urls": {"stages": os.environ["STAGES_URL"], "alarm_com": os.environ["ADC_URL"]},
    # Stages calls back with HTTP Basic; Alarm.com and Alarm.net sign with a secret.
    "callbacks": {
        "stages": {"connection_id": cid, "username": inbound["username"], "secret": inbound["secret"]},
        "alarm_com": {"connection_id": aid, "secret": adc_inbound["secret"]},
        "total_connect": {"connection_id": tc["id"], "secret": tc_inbound["secret"]},
    },
}))
