//! Request extractors that answer bad input with a problem naming the field:
//! JSON bodies, query strings, path ids, `If-Match`, paging.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

use domain::validation::{check_characters, TextKind, ValidationError};

use crate::problem::{ApiError, ProblemField};

/// A JSON body; malformed JSON is 400, a missing field or a wrong type is 422
/// with the path of the field, a body over the limit is 413.
pub struct JsonBody<T>(pub T);

/// The body limit, set once from `server.max_body_bytes`.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Where new batches are posted: their body carries up to 10,000 items.
pub const BATCHES_PATH: &str = "/v1/batches";

/// The body limit of a new batch (B7): 10,000 link items take about 2 MB.
pub const BATCH_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The body limit of a request: `server.max_body_bytes`, or the batch
/// limit for a new batch (read by the handler and by the idempotency
/// middleware, which reads the body before routing).
pub fn body_limit(req: &HttpRequest) -> usize {
    if req.path() == BATCHES_PATH {
        return BATCH_BODY_LIMIT;
    }
    req.app_data::<BodyLimit>().map_or(256 * 1024, |l| l.0)
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = body_limit(req);
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as JSON with Content-Type: application/json",
                ));
            }
            let bytes = bytes.await.map_err(|e| payload_error(e, limit))?;
            if bytes.len() > limit {
                return Err(too_large(limit));
            }
            parse_json(&bytes).map(JsonBody)
        })
    }
}

/// The body of an operation that takes none: nothing, or an empty JSON
/// object (what many clients send with every POST). Anything else is 422,
/// as unknown fields are on every other route.
pub struct NoBody;

impl FromRequest for NoBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Empty {}
        let limit = body_limit(req);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes.await.map_err(|e| payload_error(e, limit))?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(NoBody);
            }
            parse_json::<Empty>(&bytes).map(|_| NoBody)
        })
    }
}

pub(crate) fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {limit} bytes"),
    )
}

fn payload_error(e: actix_web::Error, limit: usize) -> ApiError {
    if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(limit);
    }
    ApiError::bad_request(
        "bad_body",
        format!("the request body could not be read: {e}"),
    )
}

/// Parses JSON, naming the offending field on failure. Syntax is checked
/// first, so a wrong type anywhere (even for an enum) is a 422, not a 400.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
    })?;
    let mut refused = ValidationError::default();
    refuse_control_characters(&value, &mut String::new(), &mut refused);
    refused.into_result()?;
    from_value(value, "").map_err(|problem| {
        let mut e = ApiError::unprocessable(
            "validation",
            format!("{}: {}", problem.field, problem.message),
        );
        e.errors.push(problem);
        e
    })
}

/// Reads a part of a body that was parsed already (`at` is its path, e.g.
/// `items[3]`, empty for the whole body), naming the offending field.
pub fn from_value<T: DeserializeOwned>(
    value: serde_json::Value,
    at: &str,
) -> Result<T, ProblemField> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = plain_words(&strip_position(&err.into_inner().to_string()));
        let inner = match (path.as_str(), missing_field_name(&message)) {
            (".", Some(f)) => f,
            (".", None) => String::new(),
            (_, Some(f)) => format!("{path}.{f}"),
            (_, None) => path,
        };
        let field = match (at.is_empty(), inner.is_empty()) {
            (true, true) => "body".to_owned(),
            (true, false) => inner,
            (false, true) => at.to_owned(),
            (false, false) => format!("{at}.{inner}"),
        };
        ProblemField { field, message }
    })
}

/// Applies the one rule for text to every string of a body, keys included, so
/// no NUL reaches a database and the field is named whatever the route.
fn refuse_control_characters(
    value: &serde_json::Value,
    path: &mut String,
    out: &mut ValidationError,
) {
    let field = |path: &str| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        serde_json::Value::String(text) => {
            if let Err(message) = check_characters(text, TextKind::Free) {
                out.push(field(path), message);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                refuse_control_characters(item, path, out);
                path.truncate(len);
            }
        }
        serde_json::Value::Object(members) => {
            for (key, member) in members {
                if let Err(message) = check_characters(key, TextKind::Token) {
                    out.push(field(path), format!("a member name {message}"));
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                refuse_control_characters(member, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn missing_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// A query string. A parameter that does not parse is a 422 naming it
/// (`web::Query` can only say "Query deserialize error").
pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(Query))
    }
}

/// Parses a query string, naming the offending parameter on failure.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = url::form_urlencoded::parse(query.as_bytes());
    let deserializer = serde_urlencoded::Deserializer::new(pairs);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let message = plain_words(&err.into_inner().to_string());
        let field = match (path.as_str(), missing_field_name(&message)) {
            (".", Some(f)) => f,
            (".", None) => "query".to_owned(),
            (p, _) => p.to_owned(),
        };
        let message = if message.starts_with("missing field") {
            "is required".to_owned()
        } else {
            message
        };
        let mut e = ApiError::unprocessable("validation", format!("{field}: {message}"));
        e.errors.push(ProblemField { field, message });
        e
    })
}

/// serde's messages in the words of the API: no Rust type names.
pub fn plain_words(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("invalid digit found in string", "must be a whole number"),
        (
            "cannot parse integer from empty string",
            "must be a whole number",
        ),
        ("number too large to fit in target type", "is too large"),
        ("number too small to fit in target type", "is too small"),
        ("invalid float literal", "must be a number"),
        (
            "provided string was not `true` or `false`",
            "must be true or false",
        ),
        ("expected u8", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected an object"),
        ("expected a borrowed string", "expected a string"),
        (
            "expected a formatted date and time string or a unix timestamp",
            "expected a date and time (RFC 3339, e.g. 2026-12-02T10:00:00Z)",
        ),
    ];
    if message.starts_with("UUID parsing failed")
        || message.starts_with("invalid character: expected")
        || message.contains("invalid length: expected length 32 for simple format")
    {
        return "must be a UUID".to_owned();
    }
    if matches!(
        message,
        "premature end of input"
            | "input contains invalid characters"
            | "input is out of range"
            | "trailing input"
            | "input is not enough for unique date and time"
    ) {
        return "must be a date and time (RFC 3339, e.g. 2026-12-02T10:00:00Z)".to_owned();
    }
    let mut out = message.to_owned();
    for (rust, plain) in WORDS {
        out = out.replace(rust, plain);
    }
    // "expected struct PhoneBody" / "expected enum Kind": the shape, not the name.
    for (prefix, shape) in [
        ("expected struct ", "expected an object"),
        ("expected enum ", "expected one of the listed values"),
        ("expected tuple struct ", "expected a value"),
    ] {
        while let Some(at) = out.find(prefix) {
            let rest = &out[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out = format!("{}{shape}{}", &out[..at], &rest[end..]);
        }
    }
    out
}

/// Path parameters that don't parse (a connection id that is not a UUID) are
/// simply not found: there is no such resource.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_err, _req| ApiError::not_found("no such resource").into())
}

/// A connection id from a path: one that is not a UUID names no connection.
pub fn connection_id(raw: &str) -> Result<domain::connection::ConnectionId, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(domain::connection::ConnectionId)
        .map_err(|_| ApiError::not_found("no such connection"))
}

/// A Stages site number from a path: text that cannot be one names no site.
pub fn site_no(raw: &str) -> Result<domain::stages::SiteNo, ApiError> {
    domain::stages::SiteNo::parse(raw).map_err(|_| ApiError::not_found("no such Stages site"))
}

/// A Stages device id from a path: text that cannot be one names no device.
pub fn device_id(raw: &str) -> Result<domain::stages::DeviceId, ApiError> {
    domain::stages::DeviceId::parse(raw).map_err(|_| ApiError::not_found("no such Stages device"))
}

/// The version an `If-Match` header asks for: `None` without the header.
/// `*` matches any version; anything unparseable can never match.
pub fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("").trim();
    if value == "*" {
        return Ok(None);
    }
    value
        .trim_matches('"')
        .parse::<i64>()
        .ok()
        .filter(|_| value.starts_with('"') && value.ends_with('"'))
        .map(Some)
        .ok_or_else(ApiError::precondition_failed)
}

/// The strong ETag of a versioned resource.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// `page_size` and `page_token` of every list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 500, default 50.
    pub page_size: Option<u32>,
    /// From the previous page's `next_page_token`.
    pub page_token: Option<String>,
}

impl PageParams {
    pub fn to_request(&self) -> Result<domain::store::PageRequest, ApiError> {
        let limit = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(ApiError::from(ValidationError::field(
                "page_size",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            )));
        }
        let after = match self.page_token.as_deref() {
            None | Some("") => None,
            Some(token) => Some(decode_page_token(token)?),
        };
        Ok(domain::store::PageRequest { after, limit })
    }
}

/// Page tokens are opaque to callers: base64url of the store's cursor.
pub fn encode_page_token(cursor: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cursor)
}

pub fn decode_page_token(token: &str) -> Result<String, ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            ApiError::from(ValidationError::field(
                "page_token",
                "is not a token this service gave out",
            ))
        })
}

/// A page the store read as a list answer's two parts: each record as its
/// answer, and the opaque token of the next page.
pub fn page_parts<D, T: From<D>>(page: domain::Page<D>) -> (Vec<T>, Option<String>) {
    let next_page_token = page.next_page_token.as_deref().map(encode_page_token);
    (
        page.items.into_iter().map(T::from).collect(),
        next_page_token,
    )
}

/// One page of a list that an upstream returns whole; the token is the offset.
pub fn page_slice<T>(
    items: Vec<T>,
    params: &PageParams,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let limit = params.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::from(ValidationError::field(
            "page_size",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        )));
    }
    let offset = match params.page_token.as_deref() {
        None | Some("") => 0,
        Some(token) => decode_page_token(token)?
            .strip_prefix("offset:")
            .and_then(|o| o.parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::from(ValidationError::field(
                    "page_token",
                    "is not a token this service gave out",
                ))
            })?,
    };
    let total = items.len();
    let end = (offset + limit as usize).min(total);
    let page: Vec<T> = items
        .into_iter()
        .skip(offset)
        .take(limit as usize)
        .collect();
    let next = (end < total).then(|| encode_page_token(&format!("offset:{end}")));
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Body>(b"{").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_json::<Body>(br#"{"inner":{"n":1}}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.errors[0].field, "name");
        let e = parse_json::<Body>(br#"{"name":"a","inner":{"n":"x"}}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "inner.n");
        let e = parse_json::<Body>(br#"{"name":"a","inner":{}}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "inner.n");
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Filter {
        page_size: Option<u32>,
        after: Option<i64>,
        name: String,
    }

    #[test]
    fn query_errors_name_the_parameter_in_plain_words() {
        let e = parse_query::<Filter>("name=a&page_size=ten").unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.errors[0].field, "page_size");
        assert_eq!(e.errors[0].message, "must be a whole number");
        let e = parse_query::<Filter>("page_size=1").unwrap_err();
        assert_eq!(
            (e.errors[0].field.as_str(), e.errors[0].message.as_str()),
            ("name", "is required")
        );
        let ok = parse_query::<Filter>("name=x%20y&after=-3").unwrap();
        assert_eq!((ok.name.as_str(), ok.after), ("x y", Some(-3)));
    }

    #[test]
    fn body_errors_show_no_rust_names() {
        let e = parse_json::<Body>(br#"{"name":"a","inner":"x"}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "inner");
        assert!(
            !e.errors[0].message.contains("struct") && !e.errors[0].message.contains("Inner"),
            "{}",
            e.errors[0].message
        );
        let e = parse_json::<Body>(br#"{"name":"a","inner":{"n":-1}}"#).unwrap_err();
        assert!(
            e.errors[0].message.contains("whole number"),
            "{}",
            e.errors[0].message
        );
    }

    #[test]
    fn control_characters_anywhere_in_a_body_are_422_naming_the_field() {
        let e = parse_json::<Body>(br#"{"name":"a\u0000b","inner":{"n":1}}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.errors[0].field, "name");
        let e =
            parse_json::<serde_json::Value>(br#"{"a":[{"b":"\u001b"}],"c\u0000":1}"#).unwrap_err();
        let fields: Vec<_> = e.errors.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["a[0].b", "body"]);
        // Free text keeps its white space.
        let ok = parse_json::<Body>(br#"{"name":"line\none\ttab","inner":{"n":1}}"#).unwrap();
        assert_eq!(ok.name, "line\none\ttab");
    }

    #[test]
    fn page_tokens_round_trip_and_bad_ones_are_422() {
        let p = PageParams {
            page_size: None,
            page_token: Some(encode_page_token("abc")),
        };
        assert_eq!(p.to_request().unwrap().after.as_deref(), Some("abc"));
        let p = PageParams {
            page_size: Some(501),
            page_token: None,
        };
        assert_eq!(
            p.to_request().unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let p = PageParams {
            page_size: None,
            page_token: Some("!!".into()),
        };
        assert!(p.to_request().is_err());
    }
}
