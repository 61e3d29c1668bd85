//! Every `code` a problem answer can carry (B1), written once: its HTTP
//! status, a title, what it means and what the caller should do. The problem
//! `type` URI names the code's page, served at `GET /problems/{code}`; the
//! OpenAPI document lists each operation's codes from here; and an answer
//! with a code missing here is a bug that a test (and a debug assertion in
//! [`crate::problem::ApiError::problem`]) catches.
//!
//! The `type` URI is the relative reference `/problems/<code>` (RFC 9457,
//! section 3.1.1 allows it; it resolves against the request's URI): the page
//! is then always served by the same deployment that answered, whatever host
//! name or proxy path it is reached by, with no public base URL to configure
//! and get wrong.

use actix_web::{get, web, HttpResponse};

/// One problem code.
#[derive(Debug, Clone, Copy)]
pub struct ProblemCode {
    pub code: &'static str,
    /// Every status the code is answered with (most have one).
    pub statuses: &'static [u16],
    /// The same for every occurrence; the problem's `title`.
    pub title: &'static str,
    /// What happened, in plain words.
    pub meaning: &'static str,
    /// What the caller should do about it.
    pub action: &'static str,
}

const fn code(
    code: &'static str,
    statuses: &'static [u16],
    title: &'static str,
    meaning: &'static str,
    action: &'static str,
) -> ProblemCode {
    ProblemCode {
        code,
        statuses,
        title,
        meaning,
        action,
    }
}

/// The registry, sorted by code.
pub const CODES: &[ProblemCode] = &[
    code(
        "already_linked",
        &[409],
        "Already linked",
        "The billing record or the Stages record is already linked on this connection, so a second link would claim it twice. Push only goes to connections where the record is not linked yet.",
        "Use the existing link (the detail names it), or edit or delete that link first and send the request again.",
    ),
    code(
        "ambiguous_zone",
        &[409],
        "More than one zone has that point",
        "The zone was named by its point number, and more than one zone of the device has that point, so the edit could change the wrong one.",
        "Name the zone by its config_id (listed by the device's configurations) and send the edit again.",
    ),
    code(
        "bad_billing_id",
        &[409],
        "Unusable billing id in Stages",
        "A Stages record carries a billing id that is not a valid billing id, so no link can be made from it.",
        "Correct or clear the billing id of that Stages record in Stages, then run the reconcile again.",
    ),
    code(
        "bad_body",
        &[400],
        "Body could not be read",
        "The request body could not be read to its end, for example because the connection broke while sending it.",
        "Send the request again.",
    ),
    code(
        "bad_idempotency_key",
        &[400],
        "Bad Idempotency-Key",
        "The Idempotency-Key header is empty or longer than 255 characters.",
        "Send a key of 1 to 255 visible characters, for example a random UUID made once per intended change.",
    ),
    code(
        "bad_request",
        &[400],
        "Bad request",
        "The request was refused before it reached an operation, for example because of a malformed header or path.",
        "Check the request line and headers against the API document and send it again.",
    ),
    code(
        "billing_notifications_off",
        &[409],
        "Billing notifications are off",
        "An Alarm.com billing notification arrived for a connection that has billing notifications turned off, so it was not taken.",
        "An admin turns them on in the connection's settings (billing_notifications); the provider then sends the notification again.",
    ),
    code(
        "builder_program_off",
        &[409],
        "Builder Program is off",
        "The request names a Builder Program, but the Builder Program is not turned on for this connection.",
        "An admin turns on settings.builder_program for the connection, or send the request without a Builder Program.",
    ),
    code(
        "claimed_in_stages",
        &[409],
        "Claimed in Stages by another record",
        "The Stages record already carries the billing id of another billing record, so linking it here would take it from that record.",
        "Unlink the other billing record first, or run a reconcile of the connection to rebuild the links from Stages.",
    ),
    code(
        "conflict",
        &[409],
        "Conflicts with existing data",
        "The change conflicts with data the service already holds, for example a name that must be unique per dealer, or a record that others still depend on.",
        "Read the detail, change the request (another name, or remove what depends on the record first) and send it again.",
    ),
    code(
        "connection_inactive",
        &[409],
        "Connection is inactive",
        "The connection's status is inactive, so the service makes no calls through it.",
        "An admin sets the connection's status to active (PATCH the connection), then send the request again.",
    ),
    code(
        "credentials_required",
        &[409],
        "Your credentials are required",
        "The connection uses per-user credentials and you have not stored yours, so the service cannot call the upstream system on your behalf.",
        "Store your own credential with PUT /v1/connections/{connection_id}/credentials/me, then send the request again.",
    ),
    code(
        "dealer_auth_mode",
        &[409],
        "Connection uses a dealer credential",
        "The connection uses one credential for the whole dealer, so there is no per-user credential to read, set or remove.",
        "An admin sets the dealer credential with PUT /v1/connections/{connection_id}/credentials/dealer.",
    ),
    code(
        "device_state",
        &[409],
        "Device state does not allow it",
        "The Stages device's status does not allow the change, for example a test cannot start while the device is in alarm or out of service.",
        "Wait until the device's status allows it (read the device to see its status), then send the request again.",
    ),
    code(
        "egress_refused",
        &[409, 422],
        "Address not allowed",
        "The service's egress policy does not allow calls to that address. As 422 the request gave the address (the field is named); as 409 a stored endpoint is refused and nothing was sent.",
        "Use an address the operator allows, or ask the operator to allow it in the egress settings.",
    ),
    code(
        "event_id_reused",
        &[422],
        "Event id reused with another body",
        "A callback event id that was received before came again with a different body.",
        "Send each distinct event with its own event id; resend an event only with exactly the same body.",
    ),
    code(
        "forbidden",
        &[403],
        "Role too low",
        "The bearer token is valid, but its roles do not allow this operation (viewer < operator < admin).",
        "Use a token with the role the operation's security requirement names.",
    ),
    code(
        "idempotency_in_flight",
        &[409],
        "Same Idempotency-Key still running",
        "A request with the same Idempotency-Key is still being processed.",
        "Wait a moment and send the same request with the same key again; you then get the first request's answer.",
    ),
    code(
        "idempotency_key_reused",
        &[422],
        "Idempotency-Key reused with another request",
        "The Idempotency-Key was used before with a different method, path or body.",
        "Use a new key for a new request; reuse a key only to repeat exactly the same request.",
    ),
    code(
        "in_flight",
        &[409],
        "Same event still running",
        "A Stages callback with the same event id is still being processed.",
        "Send the same event again shortly; you then get the first delivery's answer.",
    ),
    code(
        "internal",
        &[500],
        "Internal error",
        "The service failed to handle the request. The cause is logged with the request id, never shown.",
        "Send the request again later; if it keeps failing, report the X-Request-Id of the answer to the operator.",
    ),
    code(
        "isp_account_exists",
        &[409],
        "ISP account exists",
        "The billing customer already has an ISP account on this connection (or the provider account is already linked to another customer).",
        "Use the existing ISP account (list the connection's ISP accounts); do not provision a second one.",
    ),
    code(
        "isp_account_pending",
        &[409],
        "ISP account still being provisioned",
        "The ISP account is still being created at the provider, so it cannot be changed yet.",
        "Read the ISP account until its state is active, then send the request again.",
    ),
    code(
        "malformed_json",
        &[400],
        "Body is not JSON",
        "The request body is not well-formed JSON.",
        "Send a well-formed JSON body; the detail says where parsing stopped.",
    ),
    code(
        "method_not_allowed",
        &[405],
        "Method not allowed",
        "The path exists but does not take this method. The Allow header lists the methods it takes.",
        "Use one of the methods in the Allow header.",
    ),
    code(
        "not_found",
        &[404],
        "Not found",
        "No such route, or no such record for your dealer. Records of other dealers answer the same way, so their existence does not leak.",
        "Check the ids in the path and body (list the collection to find the right one).",
    ),
    code(
        "not_ready",
        &[503],
        "Not ready",
        "The service cannot reach its database, or database migrations are not applied yet.",
        "Load balancers keep traffic away until it is ready; an operator checks the database or runs `crosslink migrate`.",
    ),
    code(
        "payload_too_large",
        &[413],
        "Body too large",
        "The request body is larger than the service accepts (server.max_body_bytes).",
        "Send a smaller body, for example fewer records per request.",
    ),
    code(
        "precondition_failed",
        &[412],
        "Changed since you read it",
        "The If-Match header does not match the record's current ETag: someone changed it after you read it.",
        "Read the record again, apply your change to the current version, and send it with the new ETag.",
    ),
    code(
        "provider_credentials",
        &[409],
        "Provider refused the stored credentials",
        "The interactive services provider refused the credentials stored for this connection.",
        "An admin stores working credentials with PUT /v1/connections/{connection_id}/credentials/dealer.",
    ),
    code(
        "provider_inactive",
        &[409],
        "Provider entry is inactive",
        "An import needs an active Alarm.com provider entry, and this one is inactive.",
        "An admin sets the connection's status to active, then start the import again.",
    ),
    code(
        "provider_permission",
        &[409],
        "Provider permission missing",
        "The provider account behind this connection lacks a permission the operation needs (for example the Builder Program role or the billing integration permission).",
        "Ask the provider (your Alarm.com account manager) to grant the permission the detail names, then try again.",
    ),
    code(
        "provider_rejected",
        &[409],
        "Provider refused the request",
        "The interactive services provider refused the request; the detail gives its reason.",
        "Correct what the provider's reason names and send the request again.",
    ),
    code(
        "rate_limited",
        &[429],
        "Too many requests",
        "Your dealer sent more requests than the service allows per second.",
        "Wait the number of seconds in the Retry-After header, then send the request again.",
    ),
    code(
        "site_not_linked",
        &[409],
        "Site not linked",
        "A billing system can be pushed only when its billing site is linked on the same connection, and it is not.",
        "Push or link the billing site on that connection first, then push the system.",
    ),
    code(
        "unauthorized",
        &[401],
        "Not authenticated",
        "No valid credentials: the bearer token is missing, expired or not signed by a trusted key; on a callback, the Basic credential or the signature is wrong.",
        "Send a valid bearer token (or, for callbacks, the connection's inbound credential or signature).",
    ),
    code(
        "unavailable",
        &[503],
        "Temporarily unavailable",
        "The service cannot reach its database right now.",
        "Send the request again shortly.",
    ),
    code(
        "unknown_field",
        &[409],
        "Field cannot be mapped",
        "A value could not be written to the other side because the field does not exist there or its value does not fit.",
        "Check the field names and values against the diff of the link, then send the request again with fields that map.",
    ),
    code(
        "unsupported_media_type",
        &[415],
        "Body is not JSON",
        "The request has a body whose Content-Type is not application/json.",
        "Send the body as JSON with Content-Type: application/json.",
    ),
    code(
        "upstream_bad_answer",
        &[502],
        "Upstream gave a bad answer",
        "Stages answered with an error or with something the service cannot read. The detail names the connection.",
        "Send the request again later; if it persists, check the connection's endpoint (the connection test says more).",
    ),
    code(
        "upstream_failed",
        &[502],
        "Provider call failed",
        "The interactive services provider could not be reached or answered with an error. The detail names the connection.",
        "Send the request again later; if it persists, test the connection.",
    ),
    code(
        "upstream_rate_limited",
        &[503],
        "Upstream asks to slow down",
        "Stages refused the call because too many were sent to it.",
        "Wait the number of seconds in Retry-After (when given), then send the request again.",
    ),
    code(
        "upstream_rejected",
        &[422],
        "Stages refused the change",
        "Stages refused the values sent to it; the detail gives its reason.",
        "Correct the values the reason names and send the request again.",
    ),
    code(
        "upstream_timeout",
        &[504],
        "Upstream did not answer in time",
        "Stages or the provider did not answer in time. The detail names the connection; the change may or may not have been made there.",
        "Send the request again (with the same Idempotency-Key where the operation takes one).",
    ),
    code(
        "upstream_unauthorized",
        &[502],
        "Upstream refused the stored credentials",
        "Stages refused the credentials stored for the connection (yours on a per-user connection).",
        "Store working credentials (PUT .../credentials/me, or an admin PUT .../credentials/dealer) and send the request again.",
    ),
    code(
        "upstream_unreachable",
        &[502],
        "Upstream unreachable",
        "Stages could not be reached at the connection's endpoint.",
        "Send the request again later; if it persists, check the endpoint with the connection test.",
    ),
    code(
        "validation",
        &[422],
        "Invalid request",
        "A value in the body, query or path is missing, of the wrong type, or breaks a rule. `errors` names each field and why.",
        "Correct every field listed in `errors` and send the request again.",
    ),
    code(
        "wrong_provider",
        &[409],
        "Wrong kind of connection",
        "The operation needs a connection of another provider (for example a Stages operation on an Alarm.com connection).",
        "Use a connection of the provider the operation needs (GET /v1/connections?provider=...).",
    ),
];

/// The entry of `code`, if registered.
pub fn find(code: &str) -> Option<&'static ProblemCode> {
    CODES
        .binary_search_by(|c| c.code.cmp(code))
        .ok()
        .map(|i| &CODES[i])
}

/// The problem `type` of `code`: the relative URI of its page.
pub fn type_uri(code: &str) -> String {
    format!("/problems/{code}")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The HTML page of one code.
pub fn page(c: &ProblemCode) -> String {
    let statuses: Vec<String> = c.statuses.iter().map(u16::to_string).collect();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{code}: {title}</title></head>\n<body>\n<h1>{title}</h1>\n<p>Problem code <code>{code}</code>, HTTP status {statuses}.</p>\n<h2>What it means</h2>\n<p>{meaning}</p>\n<h2>What to do</h2>\n<p>{action}</p>\n<p><a href=\"/problems\">All problem codes</a> · <a href=\"/docs\">API documentation</a></p>\n</body>\n</html>\n",
        code = c.code,
        title = escape(c.title),
        statuses = statuses.join(" or "),
        meaning = escape(c.meaning),
        action = escape(c.action),
    )
}

fn index() -> String {
    let rows: String = CODES
        .iter()
        .map(|c| {
            let statuses: Vec<String> = c.statuses.iter().map(u16::to_string).collect();
            format!(
                "<tr><td><a href=\"/problems/{code}\"><code>{code}</code></a></td><td>{}</td><td>{}</td></tr>\n",
                statuses.join(", "),
                escape(c.title),
                code = c.code,
            )
        })
        .collect();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>crosslink problem codes</title></head>\n<body>\n<h1>Problem codes</h1>\n<p>Every error answer is <code>application/problem+json</code> with one of these codes.</p>\n<table>\n<tr><th>code</th><th>status</th><th>title</th></tr>\n{rows}</table>\n</body>\n</html>\n"
    )
}

/// List every problem code.
///
/// An HTML page with every `code` a problem answer can carry, its status and
/// title, each linking to its own page. Needs no token.
#[utoipa::path(get, path = "/problems", tag = "operations",
    responses((status = 200, description = "An HTML page listing every problem code", content_type = "text/html")))]
#[get("/problems")]
pub async fn problems_index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(index())
}

/// What one problem code means and what to do about it.
///
/// The page a problem answer's `type` names. Needs no token. An unknown code
/// is a 404 problem.
#[utoipa::path(get, path = "/problems/{code}", tag = "operations",
    params(("code" = String, Path, description = "A problem code, as in the `code` of a problem answer", example = "already_linked")),
    responses((status = 200, description = "An HTML page: the code's title, status, meaning and what to do", content_type = "text/html"),
        (status = 404, description = "No such problem code", body = crate::problem::Problem, content_type = "application/problem+json")))]
#[get("/problems/{code}")]
pub async fn problem_page(
    code: web::Path<String>,
) -> Result<HttpResponse, crate::problem::ApiError> {
    let c =
        find(&code).ok_or_else(|| crate::problem::ApiError::not_found("no such problem code"))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "public, max-age=86400"))
        .body(page(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_sorted_unique_and_complete_in_every_entry() {
        for pair in CODES.windows(2) {
            assert!(
                pair[0].code < pair[1].code,
                "{} then {}",
                pair[0].code,
                pair[1].code
            );
        }
        for c in CODES {
            assert!(
                c.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                c.code
            );
            assert!(!c.statuses.is_empty(), "{}", c.code);
            assert!(
                c.statuses.iter().all(|s| (400..600).contains(s)),
                "{}",
                c.code
            );
            assert!(!c.title.is_empty() && !c.meaning.is_empty() && !c.action.is_empty());
            assert_eq!(find(c.code).map(|f| f.code), Some(c.code));
        }
        assert!(find("no_such_code").is_none());
    }

    /// The production part of a source file: up to its unit tests.
    fn code_part(text: &str) -> &str {
        text.find("#[cfg(test)]\nmod tests")
            .map_or(text, |i| &text[..i])
    }

    /// The top-level arguments of the call whose `(` ends `text[..open]`.
    fn call_arguments(text: &str, open: usize) -> Vec<&str> {
        let (mut depth, mut start, mut args) = (0usize, open, Vec::new());
        let mut in_string = false;
        let bytes = text.as_bytes();
        let mut i = open;
        while i < bytes.len() {
            let b = bytes[i];
            if in_string {
                match b {
                    b'\\' => i += 1,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'(' | b'{' | b'[' => depth += 1,
                    b')' | b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            args.push(&text[start + 1..i]);
                            return args;
                        }
                    }
                    b',' if depth == 1 => {
                        args.push(&text[start + 1..i]);
                        start = i;
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        args
    }

    fn is_code(literal: &str) -> bool {
        !literal.is_empty() && literal.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    }

    /// The snake_case string literals of `text` that stand alone (not the
    /// receiver of a method call such as `.into()`).
    fn code_literals(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('"') {
            let Some(len) = rest[open + 1..].find('"') else {
                break;
            };
            let literal = &rest[open + 1..open + 1 + len];
            let after = rest[open + 2 + len..].trim_start();
            if is_code(literal) && !after.starts_with('.') {
                found.push(literal.to_owned());
            }
            rest = &rest[open + 2 + len..];
        }
        found
    }

    /// Every problem code a source file can answer: `code: "..."` fields (the
    /// domain's conflicts) and the code argument of the problem constructors.
    fn codes_in(text: &str, constructors: &[&str]) -> Vec<String> {
        let text = code_part(text);
        let mut codes = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("code: \"") {
            // `code: "..."` is itself a call argument of one literal.
            let tail = &rest[at + "code: \"".len()..];
            if let Some(end) = tail.find('"') {
                let literal = &tail[..end];
                if is_code(literal) && !tail[end + 1..].trim_start().starts_with('.') {
                    codes.push(literal.to_owned());
                }
            }
            rest = &rest[at + 1..];
        }
        for constructor in constructors {
            let position = usize::from(constructor.ends_with("new("));
            let mut from = 0;
            while let Some(at) = text[from..].find(constructor) {
                let open = from + at + constructor.len() - 1;
                if let Some(arg) = call_arguments(text, open).get(position) {
                    codes.extend(code_literals(arg));
                }
                from = open + 1;
            }
        }
        codes
    }

    const API_CONSTRUCTORS: &[&str] = &[
        "ApiError::new(",
        "ApiError::conflict(",
        "ApiError::unprocessable(",
        "ApiError::bad_request(",
    ];

    fn source_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                source_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_scan_finds_codes_in_every_form_and_nothing_else() {
        let text = r#"
            let a = ApiError::new(StatusCode::BAD_GATEWAY, "one_code", format!("x {y}"));
            let b = ApiError::conflict(
                "two_code",
                "a detail in words",
            );
            let c = Self::new(status, if t { "three_a" } else { "three_b" }, detail);
            let d = OperationError::Conflict { code: "four_code", message: m };
            let e = StagesError::Rejected { code: "not_a_code".into(), message: m };
            let f = ApiError::new(inner.status, inner.code, "words");
#[cfg(test)]
mod tests { fn t() { ApiError::conflict("test_only", "x"); } }
        "#;
        let mut found = codes_in(text, &[API_CONSTRUCTORS, &["Self::new("]].concat());
        found.sort();
        assert_eq!(
            found,
            ["four_code", "one_code", "three_a", "three_b", "two_code"]
        );
    }

    #[test]
    fn every_code_the_source_can_answer_is_registered() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        source_files(&root.join("api/src"), &mut files);
        source_files(&root.join("domain/src"), &mut files);
        let mut seen = std::collections::BTreeSet::new();
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut constructors = API_CONSTRUCTORS.to_vec();
            if path.ends_with("problem.rs") {
                constructors.extend(["Self::new(", "Self::conflict(", "Self::unprocessable("]);
            }
            for code in codes_in(&text, &constructors) {
                assert!(
                    find(&code).is_some(),
                    "{} answers problem code '{code}', which is not in problem_codes::CODES",
                    path.display()
                );
                seen.insert(code);
            }
        }
        // The scan reaches every kind of source: the API's own answers, the
        // upstream mapping, and the domain's conflicts.
        for expected in [
            "validation",
            "upstream_failed",
            "already_linked",
            "dealer_auth_mode",
        ] {
            assert!(seen.contains(expected), "the scan missed '{expected}'");
        }
    }

    #[test]
    fn a_page_says_what_the_code_means_and_what_to_do() {
        let c = find("already_linked").unwrap();
        let html = page(c);
        assert!(html.contains("<code>already_linked</code>"));
        assert!(html.contains("409"));
        assert!(html.contains(c.meaning) && html.contains(c.action));
        assert!(index().contains("/problems/site_not_linked"));
    }
}
