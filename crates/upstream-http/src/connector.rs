//! The connector of an upstream client: one pooled HTTP client, one rate
//! limiter per connection key, and the [`Channel`] a client of one
//! connection calls through.
//!
//! Clients are cheap and made per call site; the connection pool and the
//! per-connection request budget must outlive them, so both live here.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::policy::{EgressPolicy, Refused};
use crate::retry::{parse_retry_after, RetryPolicy};

/// What every upstream client is tuned by; each client has its own
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `crosslink-<client>/<version>`.
    pub user_agent: &'static str,
    /// Whole request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    /// Per connection key (burst of the same size); 0 turns the limit off.
    pub requests_per_second: u32,
    /// Which addresses calls may reach.
    pub egress: EgressPolicy,
}

/// Makes [`Channel`]s that share one connection pool and, per connection
/// key, one rate limiter.
pub struct Connector {
    http: reqwest::Client,
    retry: RetryPolicy,
    egress: EgressPolicy,
    requests_per_second: Option<NonZeroU32>,
    limiters: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
}

impl Connector {
    /// The HTTP client: the timeouts, the egress policy on every address it
    /// connects to, no proxy, and no redirects (the upstream APIs never
    /// redirect; following one would resend the credentials elsewhere and
    /// may turn a POST into a GET).
    pub fn new(settings: Settings) -> Result<Self, reqwest::Error> {
        let http = crate::apply(reqwest::Client::builder(), &settings.egress)
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(settings.user_agent)
            .build()?;
        Ok(Self {
            http,
            retry: settings.retry,
            egress: settings.egress,
            requests_per_second: NonZeroU32::new(settings.requests_per_second),
            limiters: Mutex::new(HashMap::new()),
        })
    }

    /// The channel of connection `key`, sharing its rate limiter with every
    /// other client of that key.
    pub fn channel(&self, key: &str) -> Channel {
        Channel {
            http: self.http.clone(),
            retry: self.retry,
            egress: self.egress.clone(),
            limiter: self.limiter(key),
        }
    }

    fn limiter(&self, key: &str) -> Option<Arc<DefaultDirectRateLimiter>> {
        let rps = self.requests_per_second?;
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        let limiter = limiters
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(RateLimiter::direct(Quota::per_second(rps))));
        Some(Arc::clone(limiter))
    }
}

/// How one client of one connection reaches its upstream.
pub struct Channel {
    http: reqwest::Client,
    retry: RetryPolicy,
    egress: EgressPolicy,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

/// A complete or partial HTTP answer: the status and `Retry-After` arrived,
/// the body may not have.
#[derive(Debug)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Result<Vec<u8>, TransportError>,
}

/// Why a request got no (complete) answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// A host name resolved only to addresses the egress policy refuses:
    /// nothing was sent, and the same name resolves the same way again.
    #[error(transparent)]
    EgressRefused(Refused),
    /// No connection could be made (`timed_out`: not in time): nothing was sent.
    #[error("{detail}")]
    Connect { detail: String, timed_out: bool },
    /// No complete answer in time; the upstream may have acted on the request.
    #[error("no answer in time")]
    Timeout,
    /// The connection failed once the request may have been sent.
    #[error("{detail}")]
    Broken { detail: String },
    /// The request could not be built: nothing was sent, and never will be.
    #[error("{detail}")]
    Request { detail: String },
}

impl Channel {
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Refuses a URL whose host is an address the policy forbids: the
    /// resolver checks host names, but an address in the URL reaches no
    /// resolver.
    pub fn check_literal(&self, url: &url::Url) -> Result<(), Refused> {
        self.egress.check_literal(url)
    }

    /// [`RetryPolicy::run`] with this connection's rate limit and retry rules.
    pub async fn with_retries<T, E, F, Fut>(&self, safe: bool, attempt: F) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut(bool) -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::Failure<E>>>,
    {
        self.retry.run(self.limiter.as_deref(), safe, attempt).await
    }

    /// Sends one request; `label` (`GET /api/v1/ping`, `GetRepList`) starts
    /// the detail of a failure. The request body is never logged.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        label: &str,
    ) -> Result<Answer, TransportError> {
        let started = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let error = transport_error(label, e);
                tracing::debug!(
                    latency_ms = started.elapsed().as_millis() as u64,
                    error = %error,
                    "no answer"
                );
                return Err(error);
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response.bytes().await;
        tracing::debug!(
            status = status.as_u16(),
            latency_ms = started.elapsed().as_millis() as u64,
            "answer"
        );
        Ok(Answer {
            status,
            retry_after,
            body: body
                .map(|b| b.to_vec())
                .map_err(|e| transport_error(label, e)),
        })
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

fn transport_error(label: &str, e: reqwest::Error) -> TransportError {
    if let Some(refused) = crate::refusal_in(&e) {
        return TransportError::EgressRefused(refused.clone());
    }
    let e = e.without_url();
    if e.is_connect() {
        return TransportError::Connect {
            detail: detail(label, &e),
            timed_out: e.is_timeout(),
        };
    }
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_builder() {
        TransportError::Request {
            detail: detail(label, &e),
        }
    } else {
        TransportError::Broken {
            detail: detail(label, &e),
        }
    }
}

/// `"GET /api/v1/ping: error sending request: ...: Connection refused"`, with
/// each cause once.
fn detail(label: &str, e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = label.to_owned();
    let mut seen: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !seen.iter().any(|s| s.contains(&text)) {
            out.push_str(": ");
            out.push_str(&text);
            seen.push(text);
        }
        next = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(requests_per_second: u32) -> Settings {
        Settings {
            user_agent: "test",
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            retry: RetryPolicy {
                max_retries: 0,
                base_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
            },
            requests_per_second,
            egress: EgressPolicy::default(),
        }
    }

    #[test]
    fn one_limiter_per_key() {
        let connector = Connector::new(settings(5)).unwrap();
        let a = connector.channel("a").limiter.unwrap();
        let again = connector.channel("a").limiter.unwrap();
        let b = connector.channel("b").limiter.unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!Arc::ptr_eq(&a, &b));
        let unlimited = Connector::new(settings(0)).unwrap();
        assert!(unlimited.channel("a").limiter.is_none());
    }

    #[tokio::test]
    async fn a_refused_connection_sent_nothing() {
        // Port 9 on loopback: nothing listens there on a test machine.
        let connector = Connector::new(Settings {
            egress: EgressPolicy::parse_allow(&["127.0.0.0/8"]).unwrap(),
            ..settings(0)
        })
        .unwrap();
        let channel = connector.channel("k");
        let request = channel.http().get("http://127.0.0.1:9/x");
        match channel.send(request, "GET /x").await {
            Err(TransportError::Connect { detail, timed_out }) => {
                assert!(detail.starts_with("GET /x: "), "{detail}");
                assert!(!timed_out);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_refused_host_name_is_an_egress_refusal() {
        let connector = Connector::new(settings(0)).unwrap();
        let channel = connector.channel("k");
        let request = channel.http().get("http://localhost:9/x");
        match channel.send(request, "GET /x").await {
            Err(TransportError::EgressRefused(refused)) => assert_eq!(refused.host, "localhost"),
            other => panic!("{other:?}"),
        }
    }
}
