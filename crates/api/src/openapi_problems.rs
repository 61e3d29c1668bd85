//! How the API document lists the problems each operation answers (B1):
//! the answers every operation of a shape shares (a token, a body, a call
//! to Stages as the caller), each operation's own codes, and their pages
//! under `/problems/{code}`, named in the description, the responses and
//! an `x-problem-codes` extension.

use utoipa::Modify;

/// The answers any operation may give besides its own, written once: a
/// token's (401, 403) and the dealer's rate limit (429, a shared response of
/// `components`) on every bearer operation, a body's (400 malformed
/// JSON, 413 too large, 415 not JSON, 422 invalid) on every operation that
/// takes one, and the caller's missing Stages credentials (409) on every
/// operation that calls Stages as the caller. `ProblemCodes` then describes
/// each by the codes it answers; an operation's own description is kept.
pub(crate) struct CommonProblems;

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

/// A problem+json response: what every problem answer of the document is.
fn problem(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// Calls `f` with each operation of the document, its method and its path.
fn each_operation(
    openapi: &mut utoipa::openapi::OpenApi,
    mut f: impl FnMut(&'static str, &str, &mut utoipa::openapi::path::Operation),
) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                f(method, path, operation);
            }
        }
    }
}

/// Whether the operation takes a bearer token.
fn takes_bearer(operation: &utoipa::openapi::path::Operation) -> bool {
    operation
        .security
        .iter()
        .flatten()
        .any(|s| serde_json::to_value(s).is_ok_and(|v| v.get("bearer").is_some()))
}

impl Modify for CommonProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Ref, RefOr};
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
        each_operation(openapi, |method, path, operation| {
            // Described by `ProblemCodes`, from the codes each answers.
            let mut common = Vec::new();
            if takes_bearer(operation) {
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
        });
    }
}

/// The problem codes only some operations answer, by operation id; the
/// codes an operation's shape implies (a token, a body, an id in the path,
/// `If-Match`, `Idempotency-Key`, a call to Stages as the caller or to
/// Alarm.com) are added by [`implied_codes`]. `code:status` pins a code
/// answered with several statuses to the one this operation uses.
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
    ("test_connection", &["wrong_provider"]),
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
    ("retry_job", &["conflict"]),
    ("cancel_job", &["conflict"]),
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
    ("cancel_import", &["conflict"]),
    ("filter_choices", &["not_found", "provider_inactive"]),
    (
        "create_isp_account",
        &[
            "connection_inactive",
            "isp_account_exists",
            "builder_program_off",
        ],
    ),
    (
        "change_service_plan",
        &["connection_inactive", "isp_account_pending"],
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

/// The codes of an operation that takes no body but reads one if sent (the
/// `NoBody` extractor: nothing or `{}`); the document shows no request body,
/// so [`implied_codes`] cannot see it.
const EMPTY_BODY_CODES: &[&str] = &[
    "malformed_json",
    "validation",
    "payload_too_large",
    "bad_body",
];

/// The operations that take an empty body and list its codes.
fn takes_empty_body(operation_id: &str) -> bool {
    matches!(
        operation_id,
        "test_connection"
            | "rotate_inbound_credentials"
            | "reconcile"
            | "retry_job"
            | "cancel_job"
            | "cancel_import"
            | "cancel_batch"
    )
}

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

/// The codes a call to Alarm.com with a connection's stored credentials can
/// answer: not an Alarm.com connection or none stored, Alarm.com refusing or
/// failing, or the egress policy keeping the call in.
const ALARM_COM_CODES: &[&str] = &[
    "wrong_provider",
    "credentials_required",
    "provider_credentials",
    "provider_permission",
    "provider_rejected",
    "upstream_failed",
    "upstream_timeout",
    "egress_refused:409",
];

/// The operations that call Alarm.com with a connection's stored credentials.
fn calls_alarm_com(operation_id: &str) -> bool {
    matches!(
        operation_id,
        "service_plans"
            | "filter_choices"
            | "create_isp_account"
            | "change_service_plan"
            | "builder_programs"
    )
}

/// The codes an operation's shape implies.
fn implied_codes(
    method: &str,
    path: &str,
    operation: &utoipa::openapi::path::Operation,
) -> Vec<&'static str> {
    use utoipa::openapi::path::ParameterIn;
    let mut codes = Vec::new();
    if takes_bearer(operation) {
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
    let id = operation.operation_id.as_deref().unwrap_or_default();
    if calls_alarm_com(id) {
        codes.extend(ALARM_COM_CODES);
    }
    if takes_empty_body(id) {
        codes.extend(EMPTY_BODY_CODES);
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
pub(crate) struct ProblemCodes;

impl Modify for ProblemCodes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        each_operation(openapi, |method, path, operation| {
            let codes = operation_codes(method, path, operation);
            describe_idempotency_key(operation);
            for (status, _) in &codes {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| problem("").into());
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
        });
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every handler that takes a `NoBody` lists the empty body's codes: the
    /// list above is by operation id, so a new such handler must be added.
    #[test]
    fn every_handler_taking_an_empty_body_lists_its_codes() {
        fn sources(dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        let mut files = Vec::new();
        sources(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes"),
            &mut files,
        );
        let mut handlers = Vec::new();
        for file in &files {
            for (i, part) in file.split("pub async fn ").enumerate().skip(1) {
                let signature = part.split(") ->").next().unwrap_or_default();
                if signature.contains(": NoBody") {
                    let name = part.split('(').next().unwrap().trim().to_owned();
                    assert!(!name.is_empty(), "handler {i} has no name");
                    handlers.push(name);
                }
            }
        }
        assert!(handlers.len() >= 7, "found only {handlers:?}");
        for name in handlers {
            assert!(
                super::takes_empty_body(&name),
                "{name} takes an empty body but takes_empty_body does not list it"
            );
        }
    }
}
