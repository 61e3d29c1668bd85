//! Every error the API answers, as `application/problem+json` (RFC 9457), in one place.
//! Library crates return typed errors; this module turns them into responses.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use domain::operations::{NextStep, OperationError};
use domain::stages::StagesError;
use domain::store::StoreError;
use domain::upstream::{UpstreamErrorKind, UpstreamFailure};
use domain::validation::{FieldError, ValidationError};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// The relative URI of the code's page, `/problems/{code}`: what the
    /// code means and what to do about it.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The code's title: the same for every answer with this code.
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Stable, machine-readable code.
    pub code: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemField {
    pub field: String,
    pub message: String,
}

impl From<FieldError> for ProblemField {
    fn from(e: FieldError) -> Self {
        Self {
            field: e.field,
            message: e.message,
        }
    }
}

/// An error answer. Construct with the helpers; `detail` is shown to the caller,
/// so it never carries secrets or internals (5xx causes are logged instead).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<ProblemField>,
    pub headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
        e.headers.push((
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"crosslink\"".into(),
        ));
        e
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    /// A URL the egress policy refuses, given in `field`.
    pub fn egress_refused(field: &str, refused: &upstream_http::Refused) -> Self {
        let mut e = Self::unprocessable("egress_refused", refused.to_string());
        e.errors.push(ProblemField {
            field: field.to_owned(),
            message: refused.to_string(),
        });
        e
    }

    pub fn precondition_failed() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "the resource changed since you read it (If-Match does not match its ETag); read it again",
        )
    }

    /// 429: the dealer sent more requests than `rate_limit` allows; retry
    /// after `retry_after_secs`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "this dealer sent more requests than the service allows per second; retry in {retry_after_secs} s"
            ),
        )
        .with_header(header::RETRY_AFTER, retry_after_secs.to_string())
    }

    /// A 500 whose cause is logged here and not shown.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the service failed to handle the request; it has been logged with the request id",
        )
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service cannot reach its database right now; try again shortly",
        )
    }

    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The body for `instance` (the request path).
    /// `type` and `title` come from the code's entry in
    /// [`crate::problem_codes`]; a code missing there is a bug.
    pub fn problem(&self, instance: Option<String>) -> Problem {
        let entry = crate::problem_codes::find(self.code);
        debug_assert!(
            entry.is_some(),
            "problem code '{}' is not in problem_codes::CODES",
            self.code
        );
        Problem {
            problem_type: crate::problem_codes::type_uri(self.code),
            title: entry.map_or_else(
                || self.status.canonical_reason().unwrap_or("Error").to_owned(),
                |e| e.title.to_owned(),
            ),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            instance,
            code: self.code.to_owned(),
            errors: self.errors.clone(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        for (name, value) in &self.headers {
            res.insert_header((name.clone(), value.as_str()));
        }
        // `instance` is filled in by the problem middleware, which knows the path.
        let body = serde_json::to_vec(&self.problem(None)).unwrap_or_default();
        res.body(body)
    }
}

impl From<ValidationError> for ApiError {
    fn from(v: ValidationError) -> Self {
        let mut e = Self::unprocessable("validation", v.to_string());
        e.errors = v.errors.into_iter().map(Into::into).collect();
        e
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found("no such resource"),
            StoreError::Conflict(why) => Self::conflict("conflict", why),
            StoreError::VersionMismatch => Self::precondition_failed(),
            StoreError::Unavailable(cause) => Self::unavailable(cause),
            StoreError::Failed(cause) => Self::internal(cause),
            StoreError::UnknownReference { field, message } => {
                ValidationError::field(field, message).into()
            }
        }
    }
}

/// Stages failures name the connection they happened on.
pub fn stages_error(connection: &str, e: StagesError) -> ApiError {
    match e {
        StagesError::Timeout => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            format!("Stages (connection '{connection}') did not answer in time"),
        ),
        StagesError::Unauthorized => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unauthorized",
            format!("Stages (connection '{connection}') refused the stored credentials"),
        ),
        StagesError::NotFound(what) => ApiError::not_found(format!(
            "Stages (connection '{connection}') has no such record: {what}"
        )),
        StagesError::Rejected { code: _, message } => ApiError::unprocessable(
            "upstream_rejected",
            format!("Stages (connection '{connection}') refused the change: {message}"),
        ),
        StagesError::RateLimited { retry_after_secs } => {
            let e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_rate_limited",
                format!("Stages (connection '{connection}') asks to slow down"),
            );
            match retry_after_secs {
                Some(s) => e.with_header(header::RETRY_AFTER, s.to_string()),
                None => e,
            }
        }
        StagesError::Unreachable(why) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unreachable",
            format!("Stages (connection '{connection}') could not be reached: {why}"),
        ),
        StagesError::BadAnswer(why) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_bad_answer",
            format!("Stages (connection '{connection}') gave a bad answer: {why}"),
        ),
        // The stored endpoint is the problem, not Stages: nothing was sent.
        StagesError::EgressRefused(why) => ApiError::conflict(
            "egress_refused",
            format!("Stages (connection '{connection}') was not called: {why}"),
        ),
    }
}

impl From<OperationError> for ApiError {
    fn from(e: OperationError) -> Self {
        match e {
            OperationError::Store(s) => s.into(),
            OperationError::NotFound(what) => Self::not_found(what),
            OperationError::Invalid(v) => v.into(),
            OperationError::Conflict { code, message } => Self::conflict(code, message),
            OperationError::MissingCredentials { message, next } => {
                Self::conflict("credentials_required", with_next_step(message, next))
            }
            OperationError::ClaimedInStages { message, next } => {
                Self::conflict("claimed_in_stages", with_next_step(message, next))
            }
            OperationError::WrongProvider(why) => Self::conflict("wrong_provider", why),
            OperationError::Upstream { connection, error } => stages_error(&connection, error),
            OperationError::Provider {
                connection,
                doing,
                error,
            } => {
                let timeout = error.upstream_kind() == UpstreamErrorKind::Timeout;
                Self::new(
                    if timeout {
                        StatusCode::GATEWAY_TIMEOUT
                    } else {
                        StatusCode::BAD_GATEWAY
                    },
                    if timeout {
                        "upstream_timeout"
                    } else {
                        "upstream_failed"
                    },
                    format!("the provider of connection '{connection}' failed: {doing}{error}"),
                )
            }
            OperationError::PartialEdit { made, error } => {
                let inner = Self::from(*error);
                let mut e = Self::new(
                    inner.status,
                    inner.code,
                    format!(
                        "only part of the edit was made: {}; the other changes were not made: {}",
                        made.join(", "),
                        inner.detail
                    ),
                );
                e.errors = inner.errors;
                e
            }
            OperationError::Undone { left, error } => {
                // Sending again helps only after a failure that may pass.
                let advice = if is_transient(&error) {
                    "Send it again."
                } else {
                    "Stages refused it for good: sending the same again fails the same way."
                };
                let undone = if left.is_empty() {
                    "Nothing was changed, in Stages or here".to_owned()
                } else {
                    format!(
                        "Nothing was changed here, but Stages kept part of it: could not put back {}",
                        left.join(", ")
                    )
                };
                let inner = Self::from(*error);
                let mut e = Self::new(
                    inner.status,
                    inner.code,
                    format!("{}. {undone}. {advice}", inner.detail),
                );
                e.errors = inner.errors;
                e.headers = inner.headers;
                e
            }
            OperationError::PartialPush {
                done,
                failed,
                error,
            } => {
                // Sending again helps only after a failure that may pass.
                let advice = if is_transient(&error) {
                    "Send the same push again to finish; nothing will be created twice."
                } else {
                    "Stages refused it for good: correct that system and push it again; what is done stays linked."
                };
                let inner = Self::from(*error);
                let finished: Vec<String> = done
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} -> {}",
                            r.kind.as_str(),
                            r.billing_id,
                            r.external_id.as_deref().unwrap_or("?")
                        )
                    })
                    .collect();
                Self::new(
                    inner.status,
                    inner.code,
                    format!(
                        "the push stopped at billing system '{failed}': {}. Done and linked: [{}]. {advice}",
                        inner.detail,
                        finished.join(", ")
                    ),
                )
            }
        }
    }
}

/// A failed batch item's problem (B7): the document the single operation
/// would have answered, without `instance` (no request path of its own).
pub fn describe_operation_error(e: &OperationError) -> serde_json::Value {
    let problem = ApiError::from(e.clone()).problem(None);
    serde_json::to_value(problem).unwrap_or_default()
}

/// A problem's detail ends with the request that clears it, where the domain
/// names one: routes are this crate's to word.
fn with_next_step(message: String, next: Option<NextStep>) -> String {
    match next {
        None => message,
        Some(NextStep::ReleaseLink(link)) => {
            format!("{message} (DELETE /v1/links/{link}?release=true)")
        }
        Some(NextStep::ReleaseTheLinkMadeAgain) => {
            format!("{message} (DELETE /v1/links/{{link_id}}?release=true)")
        }
        Some(NextStep::StoreOwnCredentials(connection)) => {
            format!("{message}; set them with PUT /v1/connections/{connection}/credentials/me")
        }
    }
}

fn is_transient(e: &OperationError) -> bool {
    match e {
        OperationError::Upstream { error, .. } => error.is_transient(),
        OperationError::Provider { .. } | OperationError::Store(StoreError::Unavailable(_)) => true,
        _ => false,
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_list_every_field() {
        let mut v = ValidationError::default();
        v.push("name", "must not be empty");
        v.push("endpoint", "is not a URL");
        let e = ApiError::from(v);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let p = e.problem(Some("/v1/x".into()));
        assert_eq!(p.errors.len(), 2);
        assert_eq!(p.code, "validation");
        assert_eq!(p.instance.as_deref(), Some("/v1/x"));
    }

    #[test]
    fn upstream_timeouts_are_504_and_name_the_connection() {
        let e = stages_error("Rapid", StagesError::Timeout);
        assert_eq!(e.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(e.detail.contains("Rapid"));
        let e = stages_error("Rapid", StagesError::BadAnswer("HTTP 500".into()));
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn a_next_step_named_by_the_domain_is_worded_as_its_request() {
        let link = domain::link::LinkId(uuid::Uuid::nil());
        let e = ApiError::from(OperationError::ClaimedInStages {
            message: "taken".into(),
            next: Some(NextStep::ReleaseLink(link)),
        });
        assert_eq!(
            (e.status, e.code),
            (StatusCode::CONFLICT, "claimed_in_stages")
        );
        assert_eq!(
            e.detail,
            format!("taken (DELETE /v1/links/{link}?release=true)")
        );
        let connection = domain::connection::ConnectionId(uuid::Uuid::nil());
        let e = ApiError::from(OperationError::MissingCredentials {
            message: "none".into(),
            next: Some(NextStep::StoreOwnCredentials(connection)),
        });
        assert_eq!(e.code, "credentials_required");
        assert!(
            e.detail
                .ends_with(&format!("PUT /v1/connections/{connection}/credentials/me")),
            "{}",
            e.detail
        );
        let e = ApiError::from(OperationError::MissingCredentials {
            message: "an admin sets them".into(),
            next: None,
        });
        assert_eq!(e.detail, "an admin sets them");
    }
}
