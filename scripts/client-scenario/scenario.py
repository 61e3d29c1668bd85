#!/usr/bin/env python3
"""A billing front end's day, through the Python client generated from
openapi/openapi.json (openapi-python-client), against the running service and
a Stages simulator. Run by scripts/client-scenario/run.sh, which generates the
client into target/client, starts the service and the simulator, and passes:

    CROSSLINK_URL    the service's base URL
    CROSSLINK_TOKEN  an admin token of the dealer
    STAGES_URL       the simulator's base URL (also the connection's endpoint)
    STAGES_USER, STAGES_PASSWORD

Steps: create a Stages connection, set the dealer credentials, test it, put a
billing customer, site and system, push the site (a dry run first), change the
site on both sides, read the link's diff, sync (a dry run first), and read the
change feed. Every answer is parsed by the generated models; an answer the
document does not describe fails the run (raise_on_unexpected_status).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Any

import httpx

from crosslink_client import AuthenticatedClient
from crosslink_client.api.billing import get_site as get_billing_site
from crosslink_client.api.billing import put_customer, put_site, put_system
from crosslink_client.api.connections import (
    create_connection,
    get_connection,
    put_dealer_credentials,
    test_connection,
)
from crosslink_client.api.events import list_events
from crosslink_client.api.links import get_link, push
from crosslink_client.api.operations import readyz
from crosslink_client.api.stages import get_stages_site
from crosslink_client.api.sync import diff, sync_link
from crosslink_client.models import (
    ConnectionResponse,
    ConnectionTestResponse,
    CreateConnectionRequest,
    CredentialResponse,
    CustomerResponse,
    EventList,
    LinkDiffResponse,
    LinkResponse,
    ProviderDto,
    PushBody,
    PutCredentialRequest,
    PushResponse,
    PutCustomerRequest,
    PutSiteRequest,
    PutSystemRequest,
    SiteResponse,
    StagesSiteDetail,
    SyncRequest,
    SyncResponse,
    SystemResponse,
)
from crosslink_client.types import Response

STEPS = 0


def step(title: str) -> None:
    global STEPS
    STEPS += 1
    print(f"[{STEPS:2}] {title}", flush=True)


def ok(resp: Response, want_status: int | tuple[int, ...], want_type: type) -> Any:
    """The parsed answer, or a failure that shows what came back."""
    statuses = want_status if isinstance(want_status, tuple) else (want_status,)
    if resp.status_code not in statuses or not isinstance(resp.parsed, want_type):
        body = resp.content.decode("utf-8", "replace")[:800]
        raise SystemExit(
            f"FAILED: wanted {statuses} {want_type.__name__}, got {int(resp.status_code)} "
            f"{type(resp.parsed).__name__}: {body}"
        )
    return resp.parsed


def check(cond: bool, message: str) -> None:
    if not cond:
        raise SystemExit(f"FAILED: {message}")
    print(f"     ok: {message}", flush=True)


def main() -> int:
    base = os.environ["CROSSLINK_URL"]
    token = os.environ["CROSSLINK_TOKEN"]
    stages_url = os.environ["STAGES_URL"]
    stages_auth = (os.environ["STAGES_USER"], os.environ["STAGES_PASSWORD"])
    run = uuid.uuid4().hex[:8]
    client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True, timeout=httpx.Timeout(30.0))

    with client:
        step("the service is ready")
        ready = readyz.sync_detailed(client=client)
        check(int(ready.status_code) == 200, "/readyz answers 200")

        step("create a Stages connection")
        conn = ok(
            create_connection.sync_detailed(
                client=client,
                body=CreateConnectionRequest(
                    provider=ProviderDto.STAGES,
                    endpoint=stages_url,
                    name=f"Stages scenario {run}",
                    auto_sync=False,
                ),
                idempotency_key=f"scenario-{run}-connection",
            ),
            201,
            ConnectionResponse,
        )
        cid = conn.id
        print(f"     connection {cid} ({conn.name})")
        again = ok(get_connection.sync_detailed(cid, client=client), 200, ConnectionResponse)
        check(again.id == cid and again.auto_sync is False, "the connection reads back, Auto Sync off")

        step("set the dealer credentials")
        stored = ok(
            put_dealer_credentials.sync_detailed(
                cid,
                client=client,
                body=PutCredentialRequest(username=stages_auth[0], password=stages_auth[1]),
            ),
            (200, 201),
            CredentialResponse,
        )
        check(
            stored.username == stages_auth[0]
            and stages_auth[1] not in repr(stored.to_dict()),
            "the dealer credentials are stored under their username, the password never echoed",
        )

        step("test the connection")
        tested = ok(test_connection.sync_detailed(cid, client=client), 200, ConnectionTestResponse)
        check(tested.ok is True, f"the test succeeds (outcome {tested.outcome}, {tested.latency_ms} ms)")

        step("put a billing customer, site and system")
        customer_id, site_id, system_id = f"C-{run}", f"S-{run}", f"SYS-{run}"
        ok(
            put_customer.sync_detailed(
                customer_id,
                client=client,
                body=PutCustomerRequest(first_name="Ada", last_name="Lovelace", phone="(614) 555-0101"),
            ),
            (200, 201),
            CustomerResponse,
        )
        site_body = PutSiteRequest(
            customer_id=customer_id,
            name=f"Lovelace home {run}",
            address1="12 Elm St",
            city="Columbus",
            state="OH",
            zip_="43004",
            phone="(614) 555-0101",
        )
        site = ok(put_site.sync_detailed(site_id, client=client, body=site_body), (200, 201), SiteResponse)
        check(site.id == site_id and site.customer_id == customer_id, f"billing site {site_id} stored")
        ok(
            put_system.sync_detailed(
                system_id, client=client, body=PutSystemRequest.from_dict({"site_id": site_id, "panel_type": "VISTA-20P"})
            ),
            (200, 201),
            SystemResponse,
        )

        step("push the site to Stages (a dry run, then for real)")
        code = str(7_000_000 + int(run[:5], 16) % 999_999)
        push_body = PushBody.from_dict(
            {
                "billing_site_id": site_id,
                "site": {"time_zone": "America/New_York", "site_type": "RES"},
                "contacts": [
                    {"name": "Ada Lovelace", "relation": "Owner", "phones": [{"kind": "mobile", "number": "614-555-0101"}]}
                ],
                "systems": [
                    {
                        "billing_system_id": system_id,
                        "device": {"transmitter_code": code, "device_type": "VISTA-20P", "comm_type": "CELL"},
                        "configurations": [{"point": 1, "event_code": "BA", "description": "Front door"}],
                    }
                ],
            }
        )
        dry = ok(push.sync_detailed(cid, client=client, body=push_body, dry_run=True), 200, PushResponse)
        check(dry.dry_run and all(r.action == "would_create" for r in dry.records), f"dry run: {[r.action for r in dry.records]}")
        pushed = ok(
            push.sync_detailed(cid, client=client, body=push_body, idempotency_key=f"scenario-{run}-push"),
            201,
            PushResponse,
        )
        check(all(r.action == "created" for r in pushed.records), f"pushed: {[(str(r.kind), r.action) for r in pushed.records]}")
        site_rec = pushed.records[0]
        site_no, site_link = site_rec.external_id, site_rec.link_id
        print(f"     Stages site {site_no}, link {site_link}")
        link = ok(get_link.sync_detailed(site_link, client=client), 200, LinkResponse)
        check(link.external_id == site_no and link.billing_id == site_id, "the link reads back")
        live = ok(get_stages_site.sync_detailed(cid, site_no, client=client), 200, StagesSiteDetail)
        check(live.billing_id == site_id and len(live.devices) == 1, "Stages holds the site and its device under billing ids")

        step("change the site on both sides: the phone in Stages, the city in billing")
        r = httpx.patch(f"{stages_url}/api/v1/sites/{site_no}", json={"phone": "614-555-0199"}, auth=stages_auth, timeout=10)
        check(r.status_code == 200, f"Stages operator edits the phone (simulator answered {r.status_code})")
        site_body.city = "Dublin"
        ok(put_site.sync_detailed(site_id, client=client, body=site_body), 200, SiteResponse)

        step("read the diff of the site's link")
        d = ok(diff.sync_detailed(site_link, client=client), 200, LinkDiffResponse)
        fields = {f.field: f for f in d.fields}
        for name in sorted(fields):
            f = fields[name]
            print(f"     {name:10} {str(f.status):18} proposed={f.proposed}")
        check(str(fields["phone"].status) == "external_changed", "phone: changed in Stages")
        check(str(fields["city"].status) == "billing_changed", "city: changed in billing")
        check(str(fields["name"].status) == "equal", "name: equal")

        step("sync the link (a dry run, then for real)")
        plan = ok(sync_link.sync_detailed(site_link, client=client, body=SyncRequest(), dry_run=True), 200, SyncResponse)
        to_billing, to_external = plan.to_billing.to_dict(), plan.to_external.to_dict()
        check(plan.dry_run and to_billing.get("phone") == "614-555-0199", f"dry run: to billing {to_billing}")
        check(to_external.get("city") == "Dublin", f"dry run: to Stages {to_external}")
        synced = ok(sync_link.sync_detailed(site_link, client=client, body=SyncRequest()), 200, SyncResponse)
        check(not synced.dry_run and synced.unresolved == [], f"synced: to billing {synced.to_billing.to_dict()}, to Stages {synced.to_external.to_dict()}")
        billing_site = ok(get_billing_site.sync_detailed(site_id, client=client), 200, SiteResponse)
        check(billing_site.phone == "614-555-0199", "billing took Stages' phone")
        live = ok(get_stages_site.sync_detailed(cid, site_no, client=client), 200, StagesSiteDetail)
        check(live.city == "Dublin" and live.phone == "614-555-0199", "Stages took billing's city and kept its phone")
        after = ok(diff.sync_detailed(site_link, client=client), 200, LinkDiffResponse)
        check(all(str(f.status) == "equal" for f in after.fields), "the diff is all equal after the sync")

        step("read the change feed")
        seen = []
        for _ in range(50):
            feed = ok(list_events.sync_detailed(client=client, types="billing.site.updated", page_size=500), 200, EventList)
            seen = [e for e in feed.items if e.subject_id == site_id]
            if seen:
                break
            time.sleep(0.1)
        for e in seen:
            print(f"     #{e.seq} {e.type_} {e.subject_id} {e.data.to_dict()}")
        check(
            any((e.data.to_dict().get("changed") or {}).get("phone") == "614-555-0199" for e in seen),
            "the feed carries billing's new phone for the site",
        )

    print(f"client scenario: {STEPS} steps passed against {base}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            sys.exit(1)
        raise
