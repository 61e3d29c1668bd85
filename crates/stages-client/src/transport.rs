//! One call to Stages: URL, auth, and what each answer means.
//!
//! Kept apart from the routes so that every call gets the same rules for
//! what may be retried and what each failure means to the service. The rate
//! limit, the retries and the transport errors are `upstream_http`'s.

use std::time::Duration;

use domain::stages::{StagesError, StagesResult};
use domain::upstream::{observed, CallObserver, UpstreamTarget};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tracing::Instrument;
use upstream_http::{TransportError, Upstream};

/// How one attempt failed, and what that says about trying again.
type Failure = upstream_http::Failure<StagesError>;

/// A request, before it is sent.
pub(crate) struct Request<'a> {
    pub method: Method,
    /// The route template, for logs and messages: `/api/v1/sites/{site_no}`.
    pub route: &'static str,
    /// Path segments after `/api/v1/`, percent-encoded when the URL is built.
    pub segments: &'a [&'a str],
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, route: &'static str, segments: &'a [&'a str]) -> Self {
        Self {
            method,
            route,
            segments,
            query: Vec::new(),
            body: None,
        }
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub fn json(mut self, body: &impl serde::Serialize) -> StagesResult<Self> {
        let bytes = serde_json::to_vec(body).map_err(|e| StagesError::Rejected {
            code: "client_encoding".into(),
            message: format!("cannot encode the request for {}: {e}", self.route),
        })?;
        self.body = Some(bytes);
        Ok(self)
    }
}

pub(crate) struct Transport {
    pub upstream: Upstream<UpstreamTarget, dyn CallObserver>,
}

impl Transport {
    /// Sends `req` (retrying when its method allows) and decodes the 2xx body.
    pub async fn call_json<T: DeserializeOwned>(&self, req: Request<'_>) -> StagesResult<T> {
        let route = req.route;
        let method = req.method.clone();
        let body = self.call(req).await?;
        serde_json::from_slice(&body).map_err(|e| {
            // serde quotes what it could not read: an excerpt of it only.
            let e = upstream_http::excerpt(&e.to_string());
            StagesError::BadAnswer(format!("malformed answer to {method} {route}: {e}"))
        })
    }

    /// Sends `req` and drops the body of the 2xx answer.
    pub async fn call_empty(&self, req: Request<'_>) -> StagesResult<()> {
        self.call(req).await.map(drop)
    }

    async fn call(&self, req: Request<'_>) -> StagesResult<Vec<u8>> {
        let span = tracing::debug_span!(
            "stages_call",
            connection = %self.upstream.target.key,
            method = %req.method,
            route = req.route,
        );
        let call = self.call_with_retries(&req).instrument(span);
        observed(
            self.upstream.observer.as_deref(),
            "stages",
            &self.upstream.target.key,
            call,
        )
        .await
    }

    /// Reads, `PATCH` and `DELETE` are repeated; a `POST` never is (see
    /// [`default_settings`](crate::default_settings)).
    async fn call_with_retries(&self, req: &Request<'_>) -> StagesResult<Vec<u8>> {
        let url = self.url(req)?;
        self.upstream
            .channel
            .check_literal(&url)
            .map_err(|refused| StagesError::EgressRefused(refused.to_string()))?;
        let safe = req.method != Method::POST;
        self.upstream
            .channel
            .with_retries(safe, |earlier_maybe_done| {
                let url = &url;
                async move {
                    match self.attempt(req, url).await {
                        // A DELETE that Stages may already have carried out, now answered
                        // with "no such record": the record is gone, which is what was asked.
                        Err(failure)
                            if req.method == Method::DELETE
                                && earlier_maybe_done
                                && matches!(failure.error, StagesError::NotFound(_)) =>
                        {
                            tracing::debug!("already deleted by an earlier attempt");
                            Ok(Vec::new())
                        }
                        other => other,
                    }
                }
            })
            .await
    }

    fn url(&self, req: &Request<'_>) -> StagesResult<url::Url> {
        build_url(&self.upstream.target.endpoint, req.segments, &req.query).map_err(|e| match e {
            UrlError::BadSegment(s) => {
                StagesError::NotFound(format!("{s:?} cannot name a Stages record ({})", req.route))
            }
            UrlError::NotABase => StagesError::Unreachable(format!(
                "a {}: endpoint cannot take the API's path",
                self.upstream.target.endpoint.scheme()
            )),
        })
    }

    async fn attempt(&self, req: &Request<'_>, url: &url::Url) -> Result<Vec<u8>, Failure> {
        let mut builder = self
            .upstream
            .channel
            .http()
            .request(req.method.clone(), url.clone())
            .basic_auth(
                &self.upstream.target.username,
                Some(&self.upstream.target.password),
            )
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = &req.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let label = format!("{} {}", req.method, req.route);
        let answer = self
            .upstream
            .channel
            .send(builder, &label)
            .await
            .map_err(transport_failure)?;
        if answer.status.is_success() {
            return answer.body.map_err(transport_failure);
        }
        // The error body is a courtesy; a status without one still counts.
        let body = answer.body.unwrap_or_default();
        Err(status_failure(answer.status, &body, answer.retry_after))
    }
}

/// A request that got no (complete) answer.
fn transport_failure(e: TransportError) -> Failure {
    match e {
        // Nothing was sent, and the same name resolves the same way again.
        TransportError::EgressRefused(refused) => {
            Failure::permanent(StagesError::EgressRefused(refused.to_string()))
        }
        // Nothing was sent: safe to try again, whatever the method.
        TransportError::Connect { detail, .. } => {
            Failure::transient(StagesError::Unreachable(detail)).not_done()
        }
        TransportError::Timeout => Failure::transient(StagesError::Timeout),
        TransportError::Request { detail } => Failure::permanent(StagesError::Unreachable(detail)),
        TransportError::Broken { detail } => Failure::transient(StagesError::Unreachable(detail)),
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A non-2xx answer.
fn status_failure(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Failure {
    let (code, message) = match serde_json::from_slice::<ErrorEnvelope>(body) {
        // What Stages says is shown to callers: a short printable excerpt only.
        Ok(ErrorEnvelope { error }) => (
            non_empty(upstream_http::excerpt(&error.code)).unwrap_or_else(|| fallback_code(status)),
            non_empty(upstream_http::excerpt(&error.message))
                .unwrap_or_else(|| fallback_message(status, &[])),
        ),
        Err(_) => (fallback_code(status), fallback_message(status, body)),
    };
    let retryable = |error| {
        let failure = Failure::transient(error).after(retry_after);
        // A 429 says Stages did nothing with the request.
        if status == StatusCode::TOO_MANY_REQUESTS {
            failure.not_done()
        } else {
            failure
        }
    };
    match status.as_u16() {
        401 | 403 => Failure::permanent(StagesError::Unauthorized),
        404 => Failure::permanent(StagesError::NotFound(message)),
        408 => retryable(StagesError::Timeout),
        429 => retryable(StagesError::RateLimited {
            retry_after_secs: retry_after.map(upstream_http::ceil_secs),
        }),
        400..=499 => Failure::permanent(StagesError::Rejected { code, message }),
        500..=599 => retryable(StagesError::BadAnswer(format!(
            "HTTP {}: {message}",
            status.as_u16()
        ))),
        _ => Failure::permanent(StagesError::BadAnswer(format!(
            "unexpected HTTP {}: {message}",
            status.as_u16()
        ))),
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.trim().is_empty()).then_some(s)
}

fn fallback_code(status: StatusCode) -> String {
    format!("http_{}", status.as_u16())
}

/// A short printable excerpt of a non-JSON error body, or the status' reason.
fn fallback_message(status: StatusCode, body: &[u8]) -> String {
    let text = upstream_http::excerpt_bytes(body);
    if text.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned();
    }
    text
}

#[derive(Debug, PartialEq)]
pub(crate) enum UrlError {
    /// Empty, `.` and `..` cannot be carried as a path segment.
    BadSegment(String),
    NotABase,
}

/// `{endpoint}/api/v1/{segments...}?{query}`, each segment percent-encoded.
pub(crate) fn build_url(
    endpoint: &url::Url,
    segments: &[&str],
    query: &[(&'static str, String)],
) -> Result<url::Url, UrlError> {
    // URL parsers drop or resolve these (even as %2E%2E), so no encoding can
    // carry them; no Stages record can be named by one.
    if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
        return Err(UrlError::BadSegment((*bad).to_owned()));
    }
    let mut url = endpoint.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| UrlError::NotABase)?
        .pop_if_empty()
        .extend(["api", "v1"])
        .extend(segments);
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in query {
            pairs.append_pair(name, value);
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn url_encodes_segments_and_query() {
        let url = build_url(
            &base("http://127.0.0.1:9/"),
            &["sites", "A/1?x#y %"],
            &[("q", "a&b=c +".into())],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/api/v1/sites/A%2F1%3Fx%23y%20%25?q=a%26b%3Dc+%2B"
        );
    }

    #[test]
    fn url_keeps_a_base_path() {
        let with_slash = build_url(&base("https://h/stages/"), &["ping"], &[]).unwrap();
        let without = build_url(&base("https://h/stages"), &["ping"], &[]).unwrap();
        assert_eq!(with_slash.as_str(), "https://h/stages/api/v1/ping");
        assert_eq!(without.as_str(), "https://h/stages/api/v1/ping");
    }

    #[test]
    fn url_refuses_segments_that_cannot_be_carried() {
        for bad in ["", ".", ".."] {
            assert_eq!(
                build_url(&base("http://h/"), &["sites", bad], &[]),
                Err(UrlError::BadSegment(bad.into()))
            );
        }
        assert_eq!(
            build_url(&base("mailto:x@y"), &["ping"], &[]),
            Err(UrlError::NotABase)
        );
    }

    #[test]
    fn status_mapping() {
        let body = br#"{"error":{"code":"duplicate_transmitter_code","message":"taken"}}"#;
        let f = status_failure(StatusCode::CONFLICT, body, None);
        assert_eq!(
            f.error,
            StagesError::Rejected {
                code: "duplicate_transmitter_code".into(),
                message: "taken".into()
            }
        );
        assert!(!f.retryable);

        let f = status_failure(StatusCode::SERVICE_UNAVAILABLE, b"<html>down</html>", None);
        assert_eq!(
            f.error,
            StagesError::BadAnswer("HTTP 503: <html>down</html>".into())
        );
        assert!(f.retryable && f.maybe_done);

        let f = status_failure(StatusCode::NOT_FOUND, b"", None);
        assert_eq!(f.error, StagesError::NotFound("Not Found".into()));

        let f = status_failure(StatusCode::UNPROCESSABLE_ENTITY, b"nope", None);
        assert_eq!(
            f.error,
            StagesError::Rejected {
                code: "http_422".into(),
                message: "nope".into()
            }
        );

        let f = status_failure(
            StatusCode::TOO_MANY_REQUESTS,
            b"{}",
            Some(Duration::from_millis(1500)),
        );
        assert_eq!(
            f.error,
            StagesError::RateLimited {
                retry_after_secs: Some(2)
            }
        );
        assert!(f.retryable && !f.maybe_done);

        assert_eq!(
            status_failure(StatusCode::FORBIDDEN, b"", None).error,
            StagesError::Unauthorized
        );
    }

    #[test]
    fn long_error_bodies_are_cut() {
        let body = "x".repeat(1000);
        let msg = fallback_message(StatusCode::BAD_GATEWAY, body.as_bytes());
        assert_eq!(msg.len(), 203);
        // A JSON message is cut and cleaned the same way.
        let long = format!(
            r#"{{"error":{{"code":"x","message":"line\nbreak\u001b[2J {}"}}}}"#,
            "y".repeat(500)
        );
        let f = status_failure(StatusCode::CONFLICT, long.as_bytes(), None);
        let StagesError::Rejected { message, .. } = f.error else {
            panic!("{:?}", f.error)
        };
        assert!(message.starts_with("line break [2J yyy"), "{message}");
        assert_eq!(message.chars().count(), 203);
    }
}
