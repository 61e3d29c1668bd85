//! Examples in the OpenAPI document (B1): a body for every operation that
//! takes one, and the answers of the main operations, by operation id. They
//! are written once here rather than in the handlers' annotations so that a
//! test can check each against its schema (see `tests/api_document.rs`).

use serde_json::{json, Value};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::Modify;

const CONNECTION: &str = "0192f3a4-5b6c-7d8e-9f00-112233445566";
const LINK: &str = "0192f3a4-6a00-7b11-8c22-334455667788";
const SYSTEM_LINK: &str = "0192f3a4-6a01-7b11-8c22-334455667799";
const JOB: &str = "0192f3a5-0000-7abc-8def-001122334455";
const WHEN: &str = "2026-11-27T14:05:09Z";

fn device(transmitter: &str) -> Value {
    json!({
        "transmitter_code": transmitter,
        "device_type": "BURG",
        "comm_type": "CELL",
        "timer_test_type": "DAILY",
        "timer_test_hours": 24,
        "location": "Basement utility room",
        "info": "Qolsys IQ4 panel"
    })
}

fn contact() -> Value {
    json!({
        "name": "Ada Lovelace",
        "relation": "Owner",
        "phones": [{"kind": "mobile", "number": "614-555-0101"}],
        "email": "ada@example.com",
        "has_keys": true
    })
}

fn link(id: &str, kind: &str, billing_id: &str, external_id: &str, parent: Option<&str>) -> Value {
    json!({
        "id": id, "connection_id": CONNECTION, "kind": kind,
        "billing_id": billing_id, "external_id": external_id, "parent_id": parent,
        "version": 1, "created_at": WHEN, "updated_at": WHEN
    })
}

fn job(kind: &str, state: &str) -> Value {
    json!({
        "id": JOB, "kind": kind, "state": state,
        "progress": {"done": 0, "total": null}, "attempts": 0,
        "summary": null, "error": null, "created_at": WHEN,
        "started_at": null, "finished_at": null
    })
}

/// The request body example of each operation that takes one.
pub fn request_examples() -> Vec<(&'static str, Value)> {
    [
        billing_requests(),
        connection_requests(),
        stages_requests(),
        work_requests(),
    ]
    .concat()
}

/// Billing records and conflict resolutions.
fn billing_requests() -> Vec<(&'static str, Value)> {
    vec![
        (
            "put_customer",
            json!({
                "kind": "person", "first_name": "Ada", "last_name": "Lovelace",
                "phone": "614-555-0101", "email": "ada@example.com",
                "address1": "12 Elm Street", "city": "Columbus", "state": "OH", "zip": "43004",
                "tags": ["residential"], "account_number": "A-1001"
            }),
        ),
        (
            "put_site",
            json!({
                "customer_id": "C-1001", "name": "Lovelace residence",
                "address1": "12 Elm Street", "city": "Columbus", "state": "OH", "zip": "43004",
                "phone": "614-555-0101", "info": "Gate code at the office"
            }),
        ),
        (
            "put_system",
            json!({
                "site_id": "S-1001", "system_number": "7001234",
                "panel_type": "Qolsys IQ4", "location": "Basement", "info": "Cellular only"
            }),
        ),
        (
            "put_user",
            json!({
                "first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com",
                "login_name": "ghopper", "active": true, "can_login": true,
                "permission_group": "Sales", "tags": ["rep"]
            }),
        ),
        (
            "resolve_conflicts",
            json!({
                "resolutions": [
                    {"link_id": LINK, "field": "phone", "use": "billing"},
                    {"link_id": SYSTEM_LINK, "use": "stages"}
                ]
            }),
        ),
    ]
}

/// Connections, credentials and Alarm.com accounts.
fn connection_requests() -> Vec<(&'static str, Value)> {
    vec![
        (
            "create_connection",
            json!({
                "provider": "stages", "name": "Stages", "endpoint": "https://stages.example.com",
                "auth_mode": "dealer", "auto_sync": true, "conflict_policy": "hold"
            }),
        ),
        (
            "update_connection",
            json!({"name": "Stages (north)", "auto_sync": false}),
        ),
        (
            "put_dealer_credentials",
            json!({"username": "integration", "password": "s3cret-Passw0rd"}),
        ),
        (
            "put_my_credentials",
            json!({"username": "ada.operator", "password": "s3cret-Passw0rd"}),
        ),
        (
            "create_isp_account",
            json!({
                "billing_customer_id": "C-1001", "action": "create_customer",
                "site_id": "S-1001", "package_id": 1002, "login_name": "ada.lovelace"
            }),
        ),
        (
            "change_service_plan",
            json!({"package_id": 1003, "add_on_features": ["TwoWayVoice"]}),
        ),
    ]
}

/// Pushes, the wizard and the Stages tab.
fn stages_requests() -> Vec<(&'static str, Value)> {
    vec![
        (
            "push",
            json!({
                "billing_site_id": "S-1001",
                "site": {"region": "CENTRAL", "time_zone": "EST", "site_type": "RES", "keys": true},
                "contacts": [contact()],
                "systems": [{
                    "billing_system_id": "Y-2001",
                    "device": device("7001234"),
                    "configurations": [{"point": 1, "area": "1", "event_code": "BA", "description": "Front door"}]
                }]
            }),
        ),
        (
            "wizard_pull",
            json!({
                "site_no": "100045",
                "customer": {"new_customer": {"kind": "person", "first_name": "Ada", "last_name": "Lovelace",
                    "email": "ada@example.com"}},
                "device_ids": ["100045-1"],
                "new_devices": [{
                    "device": device("7001236"),
                    "configurations": [{"point": 1, "area": "1", "event_code": "BA", "description": "Garage door"}]
                }]
            }),
        ),
        (
            "wizard_push",
            json!({
                "customer": {"customer_id": "C-1001"},
                "site": {"name": "Lovelace cabin", "address1": "4 Lake Road", "city": "Marietta",
                    "state": "OH", "zip": "45750", "phone": "740-555-0102"},
                "stages_site": {"region": "CENTRAL", "time_zone": "EST", "site_type": "RES"},
                "contacts": [contact()],
                "systems": [{
                    "device": device("7001237"),
                    "configurations": [{"point": 1, "area": "1", "event_code": "BA", "description": "Front door"}]
                }]
            }),
        ),
        (
            "edit_device",
            json!({"transmitter_code": "7001235", "location": "Garage"}),
        ),
        (
            "create_configuration",
            json!({"point": 2, "area": "1", "event_code": "BA", "description": "Back door"}),
        ),
        (
            "start_test",
            json!({"start": "2027-03-14T01:30:00", "end": "2027-03-14T04:00:00", "reason": "Panel replacement"}),
        ),
        (
            "site_tests",
            json!({"start": "2027-03-14T01:30:00", "end": "2027-03-14T04:00:00", "reason": "Annual inspection"}),
        ),
        ("create_contact", contact()),
        (
            "update_zone",
            json!({"event_code": "BA", "description": "Front door, left"}),
        ),
        (
            "update_contact",
            json!({"phones": [{"kind": "work", "number": "614-555-0199"}]}),
        ),
    ]
}

/// Batches, imports, links and syncs, subscriptions, and what providers post.
fn work_requests() -> Vec<(&'static str, Value)> {
    vec![
        (
            "start_batch",
            json!({
                "operation": "link", "connection_id": CONNECTION,
                "items": [
                    {"billing_site_id": "S-1001", "stages_site_no": "100045",
                     "systems": [{"billing_system_id": "Y-2001", "stages_device_id": "100045-1"}]},
                    {"billing_site_id": "S-1002", "stages_site_no": "100046",
                     "systems": [{"billing_system_id": "Y-2002", "stages_device_id": "100046-1"}]}
                ]
            }),
        ),
        (
            "start_import",
            json!({
                "connection_id": CONNECTION, "kind": "customers",
                "filters": {"customer_ids": "1001,1002"},
                "options": {"office_location": "Columbus", "tags": ["alarm.com"]},
                "dry_run": false
            }),
        ),
        (
            "create_link",
            json!({
                "connection_id": CONNECTION, "billing_site_id": "S-1001", "stages_site_no": "100045",
                "systems": [{"billing_system_id": "Y-2001", "stages_device_id": "100045-1"}]
            }),
        ),
        (
            "edit_link",
            json!({
                "external_id": "100046",
                "systems": [{"billing_system_id": "Y-2001", "stages_device_id": "100046-1"}]
            }),
        ),
        ("account_sync", json!({"use": "billing"})),
        (
            "sync_link",
            json!({"fields": {"address1": "take_billing", "phone": "take_external"}}),
        ),
        (
            "create_subscription",
            json!({
                "url": "https://billing.example.com/hooks/crosslink",
                "types": ["billing.site.updated", "billing.system.updated"]
            }),
        ),
        ("update_subscription", json!({"status": "active"})),
        (
            "alarm_com_billing",
            json!({
                "type": "payment_received", "customer_id": 881234, "occurred_at": WHEN,
                "payment": {"payment_id": "P-778", "amount_cents": 4599, "currency": "USD", "invoice_ids": ["INV-31"]}
            }),
        ),
        (
            "alarmnet_callback",
            json!({
                "event_type": "communication", "account_id": "AN-55012", "occurred_at": WHEN,
                "details": {"path": "cellular", "state": "restored"}
            }),
        ),
        (
            "stages_callback",
            json!({
                "event_id": "evt-000871", "occurred_at": WHEN, "type": "site.updated",
                "site_no": "100045", "billing_id": "S-1001", "changes": {"address1": "14 Elm Street"}
            }),
        ),
    ]
}

/// Answer examples of the main operations: (operation id, status, body).
pub fn response_examples() -> Vec<(&'static str, &'static str, Value)> {
    let connection = json!({
        "id": CONNECTION, "name": "Stages", "provider": "stages",
        "endpoint": "https://stages.example.com", "auth_mode": "dealer", "auto_sync": true,
        "conflict_policy": "hold", "status": "active",
        "settings": {"default_service_plan": null, "builder_program": false,
                     "billing_notifications": false, "alarmnet_callback_url": null},
        "migrate_on_connect": true, "migration": {"state": "pending", "job_id": null},
        "version": 1, "created_at": WHEN, "updated_at": WHEN
    });
    vec![
        ("create_connection", "201", connection.clone()),
        ("get_connection", "200", connection),
        (
            "push",
            "201",
            json!({
                "dry_run": false,
                "records": [
                    {"kind": "site", "billing_id": "S-1001", "external_id": "100045", "action": "created", "link_id": LINK},
                    {"kind": "system", "billing_id": "Y-2001", "external_id": "100045-1", "action": "created", "link_id": SYSTEM_LINK}
                ],
                "would_send": null
            }),
        ),
        (
            "push",
            "200",
            json!({
                "dry_run": true,
                "records": [
                    {"kind": "site", "billing_id": "S-1001", "external_id": null, "action": "would_create", "link_id": null},
                    {"kind": "system", "billing_id": "Y-2001", "external_id": null, "action": "would_create", "link_id": null}
                ],
                "would_send": {"name": "Lovelace residence", "address1": "12 Elm Street", "city": "Columbus"}
            }),
        ),
        (
            "create_link",
            "201",
            json!({"items": [
                link(LINK, "site", "S-1001", "100045", None),
                link(SYSTEM_LINK, "system", "Y-2001", "100045-1", Some(LINK))
            ]}),
        ),
        (
            "get_link",
            "200",
            link(LINK, "site", "S-1001", "100045", None),
        ),
        ("reconcile", "202", job("reconcile", "queued")),
        (
            "get_job",
            "200",
            json!({
                "id": JOB, "kind": "reconcile", "state": "succeeded",
                "progress": {"done": 120, "total": 120}, "attempts": 1,
                "summary": {"sites_seen": 40, "devices_seen": 80, "links_taken_over": 12},
                "error": null, "created_at": WHEN, "started_at": WHEN, "finished_at": WHEN
            }),
        ),
        (
            "wizard_pull",
            "201",
            json!({
                "customer_id": "CUS-0193a1b2c3d4", "customer_created": true,
                "site_id": "SITE-0193a1b2c3d5", "site_no": "100045", "site_link_id": LINK,
                "systems": [
                    {"system_id": "SYS-0193a1b2c3d6", "device_id": "100045-1", "link_id": SYSTEM_LINK, "device": "existing"},
                    {"system_id": "SYS-0193a1b2c3d7", "device_id": "100045-2", "link_id": "0193a1b2-0000-7000-8000-000000000003", "device": "created"}
                ]
            }),
        ),
        (
            "stages_callback",
            "202",
            json!({"event_id": "evt-000871", "status": "accepted"}),
        ),
    ]
}

/// Puts the examples on the request bodies and answers.
pub struct Examples;

impl Modify for Examples {
    fn modify(&self, openapi: &mut OpenApi) {
        let requests = request_examples();
        let responses = response_examples();
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let id = operation.operation_id.clone().unwrap_or_default();
                if let Some(body) = operation.request_body.as_mut() {
                    if let Some((_, value)) = requests.iter().find(|(op, _)| *op == id) {
                        for content in body.content.values_mut() {
                            content.example = Some(value.clone());
                        }
                    }
                }
                for (_, status, value) in responses.iter().filter(|(op, _, _)| *op == id) {
                    if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status)
                    {
                        for content in response.content.values_mut() {
                            content.example = Some(value.clone());
                        }
                    }
                }
            }
        }
    }
}
