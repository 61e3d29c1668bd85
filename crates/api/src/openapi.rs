//! The OpenAPI 3.1 document, generated from the handlers' annotations. The
//! committed copy at `openapi/openapi.json` is checked against it by a test.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::openapi_examples::Examples;

use crate::routes::{
    audit, batches, billing, conflicts, connections, events, health, imports, isp, jobs, links,
    provider_webhooks, providers, stages, stages_tab, stages_tab_edits, sync, webhooks, wizard,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "crosslink",
        description = "Links a dealer's billing records to Stages and interactive services providers.",
        license(name = "MIT")
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        providers::list_providers,
        connections::list_connections,
        connections::create_connection,
        connections::get_connection,
        connections::update_connection,
        connections::delete_connection,
        connections::test_connection,
        connections::put_dealer_credentials,
        connections::put_my_credentials,
        connections::get_my_credentials,
        connections::delete_my_credentials,
        connections::get_inbound_credentials,
        connections::rotate_inbound_credentials,
        connections::service_plans,
        stages::lookup,
        stages::list_sites,
        stages::get_site,
        stages::get_device,
        stages_tab::site_devices,
        stages_tab::site_notes,
        stages_tab::site_contacts,
        stages_tab::site_history,
        stages_tab::create_contact,
        stages_tab::update_contact,
        stages_tab::edit_device,
        stages_tab::device_configurations,
        stages_tab::create_configuration,
        stages_tab::device_history,
        stages_tab::device_tests,
        stages_tab::start_test,
        stages_tab::end_test,
        stages_tab::site_tests,
        stages_tab_edits::delete_contact,
        stages_tab_edits::update_zone,
        stages_tab_edits::clear_site_tests,
        billing::search_customers,
        billing::put_customer,
        billing::get_customer,
        billing::delete_customer,
        billing::put_site,
        billing::get_site,
        billing::delete_site,
        billing::push_targets,
        billing::put_system,
        billing::get_system,
        billing::delete_system,
        billing::put_user,
        billing::get_user,
        billing::delete_user,
        links::push,
        links::create_link,
        links::list_links,
        links::get_link,
        links::edit_link,
        links::unlink,
        links::reconcile,
        wizard::pull,
        wizard::push,
        jobs::get_job,
        jobs::list_jobs,
        jobs::retry_job,
        jobs::cancel_job,
        audit::list_audit,
        sync::diff,
        sync::sync_link,
        sync::account_sync,
        conflicts::list_conflicts,
        conflicts::resolve_conflicts,
        events::list_events,
        events::create_subscription,
        events::list_subscriptions,
        events::get_subscription,
        events::update_subscription,
        events::delete_subscription,
        webhooks::stages_callback,
        imports::start_import,
        imports::filter_choices,
        imports::list_imports,
        imports::get_import,
        imports::import_items,
        imports::cancel_import,
        batches::start_batch,
        batches::list_batches,
        batches::get_batch,
        batches::batch_items,
        batches::cancel_batch,
        isp::create_isp_account,
        isp::list_isp_accounts,
        isp::get_isp_account,
        isp::change_service_plan,
        isp::builder_programs,
        isp::callback_health,
        isp::billing_notifications,
        provider_webhooks::alarm_com_billing,
        provider_webhooks::alarmnet_callback,
        crate::problem_codes::problems_index,
        crate::problem_codes::problem_page,
    ),
    components(schemas(
        crate::problem::Problem,
        crate::problem::ProblemField,
        crate::dto::LookupListName
    )),
    modifiers(&BearerAuth, &CommonProblems, &ProblemCodes, &Examples),
    tags(
        (name = "connections", description = "Upstream connections and their credentials"),
        (name = "billing", description = "The service's copy of the billing system's records"),
        (name = "stages", description = "Stages records, read live through a connection"),
        (name = "links", description = "Push, link, edit link, unlink, mappings, reconcile, audit"),
        (name = "jobs", description = "Background work and its progress"),
        (name = "batches", description = "Many links, pushes, syncs or tests in one background job (B7)"),
        (name = "imports", description = "Alarm.com customer and user imports"),
        (name = "sync", description = "Diff, record sync and account sync of a link"),
        (name = "events", description = "The change feed and signed outbound webhooks"),
        (name = "webhooks", description = "Callbacks the service receives"),
        (name = "isp", description = "Interactive services provider accounts and callback health"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "stages_basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT with `sub`, `dealer`, `roles`, `exp`, `iss` and `aud`. Each \
                         operation's security requirement names the role it needs \
                         (`viewer` < `operator` < `admin`; a higher role also passes).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The answers any operation may give besides its own, written once: a
/// token's (401, 403) and the dealer's rate limit (429, a shared response of
/// `components`) on every bearer operation, a body's (400 malformed
/// JSON, 413 too large, 415 not JSON, 422 invalid) on every operation that
/// takes one, and the caller's missing Stages credentials (409) on every
/// operation that calls Stages as the caller. `ProblemCodes` then describes
/// each by the codes it answers; an operation's own description is kept.
struct CommonProblems;

/// Whether the operation calls Stages with the caller's credentials, so that
/// on a `user` mode connection a caller who stored none is answered 409
/// `credentials_required` (S2).
fn calls_stages_as_caller(method: &str, path: &str) -> bool {
    path.starts_with("/v1/connections/{connection_id}/stages/")
        || matches!(
            (method, path),
            ("post", "/v1/connections/{connection_id}/push")
                | ("post", "/v1/connections/{connection_id}/wizard:pull")
                | ("post", "/v1/connections/{connection_id}/wizard:push")
                | ("post", "/v1/connections/{connection_id}:reconcile")
                | ("post", "/v1/links")
                | ("patch", "/v1/links/{link_id}")
                | ("delete", "/v1/links/{link_id}")
                | ("get", "/v1/links/{link_id}/diff")
                | ("post", "/v1/links/{link_id}:sync")
                | ("post", "/v1/links/{link_id}:account-sync")
        )
}

impl Modify for CommonProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        let mut rate_limited = problem(
            "`rate_limited`: the dealer sent more requests than `rate_limit` allows (per dealer, per replica); retry after `Retry-After` seconds",
        );
        rate_limited.headers.insert(
            "Retry-After".to_owned(),
            utoipa::openapi::header::HeaderBuilder::new()
                .schema(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::Integer)
                        .minimum(Some(1)),
                )
                .description(Some("Whole seconds to wait before the next request"))
                .build(),
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .responses
            .insert("TooManyRequests".to_owned(), RefOr::T(rate_limited));
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else {
                    continue;
                };
                let bearer = operation
                    .security
                    .iter()
                    .flatten()
                    .any(|s| serde_json::to_value(s).is_ok_and(|v| v.get("bearer").is_some()));
                // Described by `ProblemCodes`, from the codes each answers.
                let mut common = Vec::new();
                if bearer {
                    common.extend(["401", "403"]);
                    operation
                        .responses
                        .responses
                        .entry("429".to_owned())
                        .or_insert_with(|| Ref::from_response_name("TooManyRequests").into());
                }
                if operation.request_body.is_some() {
                    common.extend(["400", "413", "415", "422"]);
                }
                if calls_stages_as_caller(method, path) {
                    common.push("409");
                }
                for status in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem("").into());
                }
            }
        }
    }
}

/// The document as pretty JSON with a trailing newline, exactly as committed.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut s = doc.to_pretty_json().expect("the document serialises");
    s.push('\n');
    s
}

/// The methods the API document lists for the route `path` matches (for
/// `Allow` on a 405), in alphabetical order. A `{name}` segment matches any
/// segment; `{name}:verb` any segment ending in `:verb`.
pub fn allowed_methods(path: &str) -> Vec<String> {
    static ROUTES: std::sync::OnceLock<Vec<(Vec<String>, Vec<String>)>> =
        std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let doc: serde_json::Value =
            serde_json::from_str(&document()).expect("the document is JSON");
        let mut routes = Vec::new();
        for (template, operations) in doc["paths"].as_object().into_iter().flatten() {
            let segments = template.split('/').map(str::to_owned).collect();
            let methods = operations
                .as_object()
                .into_iter()
                .flatten()
                .map(|(m, _)| m.to_uppercase())
                .collect();
            routes.push((segments, methods));
        }
        routes
    });
    let segments: Vec<&str> = path.split('/').collect();
    let fits = |template: &[String]| {
        template.len() == segments.len()
            && template
                .iter()
                .zip(&segments)
                .all(|(t, s)| match (t.find('{'), t.rfind('}')) {
                    (Some(0), Some(end)) => s.ends_with(&t[end + 1..]),
                    _ => t == s,
                })
    };
    // A literal route wins over one with a parameter in its place.
    let mut matching: Vec<_> = routes.iter().filter(|(t, _)| fits(t)).collect();
    matching.sort_by_key(|(t, _)| t.iter().filter(|s| s.starts_with('{')).count());
    matching
        .first()
        .map(|(_, methods)| methods.clone())
        .unwrap_or_default()
}

/// The problem codes only some operations answer, by operation id; the
/// codes an operation's shape implies (a token, a body, an id in the path,
/// `If-Match`, `Idempotency-Key`, a call to Stages as the caller) are added
/// by [`implied_codes`]. `code:status` pins a code answered with several
/// statuses to the one this operation uses.
const OPERATION_CODES: &[(&str, &[&str])] = &[
    ("readyz", &["not_ready"]),
    ("problem_page", &["not_found"]),
    ("create_connection", &["conflict", "egress_refused:422"]),
    (
        "update_connection",
        &[
            "conflict",
            "egress_refused:422",
            "provider_permission",
            "provider_credentials",
            "upstream_failed",
            "upstream_timeout",
        ],
    ),
    (
        "put_dealer_credentials",
        &[
            "provider_credentials",
            "provider_permission",
            "provider_rejected",
            "upstream_failed",
            "upstream_timeout",
            "egress_refused:422",
        ],
    ),
    ("put_my_credentials", &["dealer_auth_mode"]),
    ("get_my_credentials", &["dealer_auth_mode"]),
    ("delete_my_credentials", &["dealer_auth_mode"]),
    (
        "test_connection",
        &[
            "wrong_provider",
            "malformed_json",
            "validation",
            "payload_too_large",
            "bad_body",
        ],
    ),
    (
        "rotate_inbound_credentials",
        &[
            "malformed_json",
            "validation",
            "payload_too_large",
            "bad_body",
        ],
    ),
    (
        "service_plans",
        &[
            "wrong_provider",
            "credentials_required",
            "provider_credentials",
            "provider_permission",
            "provider_rejected",
            "upstream_failed",
            "upstream_timeout",
            "egress_refused:409",
        ],
    ),
    ("put_site", &["conflict"]),
    ("put_system", &["conflict"]),
    ("delete_customer", &["conflict"]),
    ("delete_site", &["conflict"]),
    ("delete_system", &["conflict"]),
    (
        "push",
        &[
            "already_linked",
            "site_not_linked",
            "claimed_in_stages",
            "upstream_rejected",
        ],
    ),
    (
        "create_link",
        &["not_found", "already_linked", "claimed_in_stages"],
    ),
    ("wizard_pull", &["already_linked", "upstream_rejected"]),
    ("wizard_push", &["upstream_rejected"]),
    (
        "edit_link",
        &["already_linked", "claimed_in_stages", "upstream_rejected"],
    ),
    (
        "reconcile",
        &[
            "malformed_json",
            "validation",
            "payload_too_large",
            "bad_body",
        ],
    ),
    ("sync_link", &["unknown_field", "upstream_rejected"]),
    ("account_sync", &["unknown_field", "upstream_rejected"]),
    (
        "resolve_conflicts",
        &[
            "not_found",
            "unknown_field",
            "upstream_rejected",
            "credentials_required",
            "wrong_provider",
            "upstream_timeout",
            "upstream_unauthorized",
            "upstream_unreachable",
            "upstream_bad_answer",
            "upstream_rate_limited",
        ],
    ),
    ("edit_device", &["unknown_field", "upstream_rejected"]),
    ("create_contact", &["upstream_rejected"]),
    ("update_contact", &["upstream_rejected"]),
    ("update_zone", &["upstream_rejected", "ambiguous_zone"]),
    ("create_configuration", &["upstream_rejected"]),
    ("start_test", &["device_state", "upstream_rejected"]),
    ("site_tests", &["upstream_rejected"]),
    ("end_test", &["upstream_rejected"]),
    (
        "retry_job",
        &[
            "conflict",
            "malformed_json",
            "validation",
            "payload_too_large",
            "bad_body",
        ],
    ),
    (
        "cancel_job",
        &[
            "conflict",
            "malformed_json",
            "validation",
            "payload_too_large",
            "bad_body",
        ],
    ),
    (
        "start_import",
        &[
            "wrong_provider",
            "provider_inactive",
            "credentials_required",
            "conflict",
        ],
    ),
    ("start_batch", &["credentials_required", "wrong_provider"]),
    ("cancel_batch", &["conflict"]),
    (
        "cancel_import",
        &[
            "conflict",
            "malformed_json",
            "validation",
            "payload_too_large",
            "bad_body",
        ],
    ),
    (
        "filter_choices",
        &[
            "not_found",
            "wrong_provider",
            "provider_inactive",
            "credentials_required",
            "provider_credentials",
            "provider_permission",
            "provider_rejected",
            "upstream_failed",
            "upstream_timeout",
            "egress_refused:409",
        ],
    ),
    (
        "create_isp_account",
        &[
            "wrong_provider",
            "connection_inactive",
            "credentials_required",
            "isp_account_exists",
            "builder_program_off",
            "provider_credentials",
            "provider_permission",
            "provider_rejected",
            "upstream_failed",
            "upstream_timeout",
            "egress_refused:409",
        ],
    ),
    (
        "change_service_plan",
        &[
            "wrong_provider",
            "connection_inactive",
            "credentials_required",
            "isp_account_pending",
            "provider_credentials",
            "provider_permission",
            "provider_rejected",
            "upstream_failed",
            "upstream_timeout",
            "egress_refused:409",
        ],
    ),
    (
        "builder_programs",
        &[
            "wrong_provider",
            "credentials_required",
            "provider_credentials",
            "provider_permission",
            "provider_rejected",
            "upstream_failed",
            "upstream_timeout",
            "egress_refused:409",
        ],
    ),
    ("callback_health", &["wrong_provider"]),
    ("billing_notifications", &["wrong_provider"]),
    ("create_subscription", &["egress_refused:422"]),
    ("update_subscription", &["egress_refused:422"]),
    (
        "stages_callback",
        &[
            "unauthorized",
            "in_flight",
            "event_id_reused",
            "already_linked",
            "claimed_in_stages",
            "upstream_timeout",
            "upstream_unauthorized",
            "upstream_unreachable",
            "upstream_bad_answer",
            "upstream_rate_limited",
            "upstream_rejected",
        ],
    ),
    (
        "alarm_com_billing",
        &["unauthorized", "billing_notifications_off"],
    ),
    ("alarmnet_callback", &["unauthorized"]),
];

/// The codes Stages calls made as the caller can answer.
const STAGES_CODES: &[&str] = &[
    "credentials_required",
    "wrong_provider",
    "egress_refused:409",
    "upstream_timeout",
    "upstream_unauthorized",
    "upstream_unreachable",
    "upstream_bad_answer",
    "upstream_rate_limited",
];

/// The codes an operation's shape implies.
fn implied_codes(
    method: &str,
    path: &str,
    operation: &utoipa::openapi::path::Operation,
) -> Vec<&'static str> {
    use utoipa::openapi::path::ParameterIn;
    let mut codes = Vec::new();
    let bearer = operation
        .security
        .iter()
        .flatten()
        .any(|s| serde_json::to_value(s).is_ok_and(|v| v.get("bearer").is_some()));
    if bearer {
        codes.extend(["unauthorized", "forbidden", "rate_limited"]);
    }
    let parameters = operation.parameters.iter().flatten();
    let mut in_path = false;
    let mut in_query = false;
    for p in parameters {
        match (&p.parameter_in, p.name.as_str()) {
            (ParameterIn::Path, _) => in_path = true,
            (ParameterIn::Query, _) => in_query = true,
            (ParameterIn::Header, "If-Match") => codes.push("precondition_failed"),
            (ParameterIn::Header, "Idempotency-Key") => codes.extend([
                "bad_idempotency_key",
                "idempotency_in_flight",
                "idempotency_key_reused",
            ]),
            _ => {}
        }
    }
    if in_path {
        codes.push("not_found");
    }
    if in_path || in_query {
        codes.push("validation");
    }
    if operation.request_body.is_some() {
        codes.extend([
            "malformed_json",
            "bad_body",
            "payload_too_large",
            "unsupported_media_type",
            "validation",
        ]);
    }
    if calls_stages_as_caller(method, path) {
        codes.extend(STAGES_CODES);
    }
    if path.starts_with("/v1/") {
        // Every operation there reads the database.
        codes.extend(["internal", "unavailable"]);
    }
    codes
}

/// The problem codes of the operation `operation_id` at `method path`, each
/// with the status it is answered with there, sorted by status then code.
pub fn operation_codes(
    method: &str,
    path: &str,
    operation: &utoipa::openapi::path::Operation,
) -> Vec<(u16, &'static str)> {
    let id = operation.operation_id.as_deref().unwrap_or_default();
    let own = OPERATION_CODES
        .iter()
        .find(|(op, _)| *op == id)
        .map_or(&[][..], |(_, codes)| codes);
    let documented: Vec<u16> = operation
        .responses
        .responses
        .keys()
        .filter_map(|s| s.parse().ok())
        .collect();
    let mut out = Vec::new();
    for spec in implied_codes(method, path, operation)
        .into_iter()
        .chain(own.iter().copied())
    {
        let (name, pinned) = match spec.split_once(':') {
            Some((name, status)) => (name, status.parse::<u16>().ok()),
            None => (spec, None),
        };
        let Some(entry) = crate::problem_codes::find(name) else {
            panic!("operation {id} lists problem code '{name}', which is not registered");
        };
        let status = pinned.unwrap_or_else(|| {
            // A code with several statuses answers with the one documented.
            entry
                .statuses
                .iter()
                .copied()
                .find(|s| documented.contains(s))
                .unwrap_or(entry.statuses[0])
        });
        if !out.contains(&(status, entry.code)) {
            out.push((status, entry.code));
        }
    }
    out.sort();
    out
}

/// `Idempotency-Key` as the service takes it: 1 to 255 visible ASCII
/// characters (anything else is 400 `bad_idempotency_key`).
fn describe_idempotency_key(operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    for p in operation.parameters.iter_mut().flatten() {
        if p.name == "Idempotency-Key" {
            p.schema = Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some("^[!-~]+$"))
                    .into(),
            );
            p.description = Some(
                "Replays the first answer for the same key and body (1 to 255 visible characters; a new random UUID per intended change is a good key)".to_owned(),
            );
        }
    }
}

/// Lists each operation's problem codes: an `x-problem-codes` extension
/// (code to status), a "Problem codes" part of its description linking each
/// code's page, and each problem response's description naming its codes.
/// A code's status missing from the responses is added as a response.
struct ProblemCodes;

impl Modify for ProblemCodes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else {
                    continue;
                };
                let codes = operation_codes(method, path, operation);
                describe_idempotency_key(operation);
                for (status, _) in &codes {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .content(
                                    "application/problem+json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("Problem")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    let Ok(status) = status.parse::<u16>() else {
                        continue;
                    };
                    let here: Vec<String> = codes
                        .iter()
                        .filter(|(s, _)| *s == status)
                        .filter_map(|(_, c)| crate::problem_codes::find(c))
                        .map(|e| format!("`{}` ({})", e.code, e.title))
                        .collect();
                    if here.is_empty() {
                        continue;
                    }
                    let own = response.description.trim().trim_end_matches('.');
                    response.description = if own.is_empty() {
                        format!("Codes: {}.", here.join("; "))
                    } else {
                        format!("{own}. Codes: {}.", here.join("; "))
                    };
                }
                let listed: Vec<String> = codes
                    .iter()
                    .map(|(status, code)| {
                        format!(
                            "[`{code}`]({}) ({status})",
                            crate::problem_codes::type_uri(code)
                        )
                    })
                    .collect();
                if !listed.is_empty() {
                    let description = operation.description.get_or_insert_with(String::new);
                    if !description.is_empty() {
                        description.push_str("\n\n");
                    }
                    description.push_str("**Problem codes:** ");
                    description.push_str(&listed.join(", "));
                    description.push('.');
                }
                let extension: serde_json::Map<String, serde_json::Value> = codes
                    .iter()
                    .map(|(status, code)| ((*code).to_owned(), (*status).into()))
                    .collect();
                operation
                    .extensions
                    .get_or_insert_with(Default::default)
                    .insert("x-problem-codes".to_owned(), extension.into());
            }
        }
    }
}
