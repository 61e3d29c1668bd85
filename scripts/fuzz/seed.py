#!/usr/bin/env python3
"""Records for the fuzzer to find (scripts/fuzz.sh): a Stages connection with
working credentials, a billing customer, site, system and user, the site pushed
to Stages (links, site number, device, contact), a webhook subscription, and
the connection's inbound (callback) credentials.
Prints their ids as JSON, keyed by the path parameter names of the document."""

from __future__ import annotations

import json
import os
import sys

import requests

base = os.environ["CROSSLINK_URL"]
s = requests.Session()
s.headers["Authorization"] = f"Bearer {os.environ['CROSSLINK_TOKEN']}"


def call(method: str, path: str, body=None, want=(200, 201)):
    r = s.request(method, base + path, json=body, timeout=30)
    if r.status_code not in want:
        sys.exit(f"seed: {method} {path} answered {r.status_code}: {r.text[:500]}")
    return r.json() if r.content else None


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
sub = call("POST", "/v1/webhook-subscriptions", {"url": "http://127.0.0.1:9/fuzz-hook"}, want=(200, 201, 422))
seeds = {
    "connection_id": cid,
    "customer_id": "FC-1",
    "site_id": "FS-1",
    "system_id": "FSYS-1",
    "user_id": "FU-1",
    "site_no": site_no,
    "device_id": device_id,
    "link_id": site_link,
    "list": "regions",
    "stages_url": os.environ["STAGES_URL"],
}
items = contacts.get("items") if isinstance(contacts, dict) else contacts
if items:
    seeds["contact_id"] = str(items[0].get("contact_id") or items[0].get("id"))
seeds["inbound_username"] = inbound["username"]
seeds["inbound_secret"] = inbound["secret"]
if isinstance(sub, dict) and "id" in sub:
    seeds["subscription_id"] = sub["id"]
print(json.dumps(seeds))
