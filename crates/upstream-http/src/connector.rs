//! The connector of an upstream client: one pooled HTTP client, one rate
//! limiter per connection key, the observer every call is reported to, and
//! the [`Channel`] a client of one connection calls through ([`Upstream`]
//! bundles the three for one target).
//!
//! Clients are cheap and made per call site; the connection pool and the
//! per-connection request budget must outlive them, so both live here. A
//! client crate adds only its defaults and its port over this connector.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::policy::{EgressPolicy, Refused};
use crate::retry::{parse_retry_after, RetryPolicy};

/// What every upstream client is tuned by; each client crate gives its
/// defaults and says which of its calls are retried.
///
/// Delays between attempts grow exponentially from `retry_base_delay` with
/// full jitter, capped by `max_retry_delay`; a `Retry-After` is honoured as
/// given, and one longer than `max_retry_delay` ends the call as rate
/// limited instead of waiting. A call therefore takes at most
/// `(max_retries + 1) * timeout + max_retries * max_retry_delay`
/// plus any wait for the rate limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// `crosslink-<client>/<version>`.
    pub user_agent: &'static str,
    /// Whole request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries after the first attempt, for the calls the client may repeat.
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub max_retry_delay: Duration,
    /// Per connection key (burst of the same size); 0 turns the limit off.
    pub requests_per_second: u32,
    /// Which addresses calls may reach; the default refuses loopback,
    /// private, link-local and the other special ranges.
    pub egress: EgressPolicy,
}

impl ClientSettings {
    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            base_delay: self.retry_base_delay,
            max_delay: self.max_retry_delay,
        }
    }
}

/// The HTTP client could not be set up (TLS backend, ...).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client of {user_agent}: {detail}")]
pub struct BuildError {
    user_agent: &'static str,
    detail: String,
}

/// Makes [`Channel`]s that share one connection pool and, per connection
/// key, one rate limiter; `O` is what the clients report their calls to.
pub struct Connector<O: ?Sized> {
    http: reqwest::Client,
    settings: ClientSettings,
    observer: Option<Arc<O>>,
    limiters: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
}

impl<O: ?Sized> Connector<O> {
    /// The HTTP client: the timeouts, the egress policy on every address it
    /// connects to, no proxy, and no redirects (the upstream APIs never
    /// redirect; following one would resend the credentials elsewhere and
    /// may turn a POST into a GET).
    pub fn new(settings: ClientSettings) -> Result<Self, BuildError> {
        let http = crate::apply(reqwest::Client::builder(), &settings.egress)
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(settings.user_agent)
            .build()
            .map_err(|e| BuildError {
                user_agent: settings.user_agent,
                detail: e.to_string(),
            })?;
        Ok(Self {
            http,
            settings,
            observer: None,
            limiters: Mutex::new(HashMap::new()),
        })
    }

    /// Every client made from here reports its calls to `observer` (metrics).
    pub fn with_observer(mut self, observer: Arc<O>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// What the clients report their calls to, if anything.
    fn observer(&self) -> Option<Arc<O>> {
        self.observer.clone()
    }

    /// The channel of connection `key`, sharing its rate limiter with every
    /// other client of that key.
    fn channel(&self, key: &str) -> Channel {
        Channel {
            http: self.http.clone(),
            retry: self.settings.retry(),
            egress: self.settings.egress.clone(),
            limiter: self.limiter(key),
        }
    }

    /// `target` as a client reaches it: through the channel of connection
    /// `key`, reporting to this connector's observer.
    pub fn upstream<T>(&self, key: &str, target: T) -> Upstream<T, O> {
        Upstream {
            channel: self.channel(key),
            target,
            observer: self.observer(),
        }
    }

    fn limiter(&self, key: &str) -> Option<Arc<DefaultDirectRateLimiter>> {
        let rps = NonZeroU32::new(self.settings.requests_per_second)?;
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        let limiter = limiters
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(RateLimiter::direct(Quota::per_second(rps))));
        Some(Arc::clone(limiter))
    }
}

/// What a client's transport holds for one upstream target: the channel it
/// sends through, the target (endpoint and credentials), and the observer its
/// calls are reported to. The client adds only its wire format.
pub struct Upstream<T, O: ?Sized> {
    pub channel: Channel,
    pub target: T,
    pub observer: Option<Arc<O>>,
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

impl<O: ?Sized> std::fmt::Debug for Connector<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("settings", &self.settings)
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

    /// No observer: the tests look at channels only.
    type Plain = Connector<()>;

    fn settings(requests_per_second: u32) -> ClientSettings {
        ClientSettings {
            user_agent: "test",
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_retries: 0,
            retry_base_delay: Duration::ZERO,
            max_retry_delay: Duration::ZERO,
            requests_per_second,
            egress: EgressPolicy::default(),
        }
    }

    #[test]
    fn one_limiter_per_key() {
        let connector = Plain::new(settings(5)).unwrap();
        let a = connector.channel("a").limiter.unwrap();
        let again = connector.channel("a").limiter.unwrap();
        let b = connector.channel("b").limiter.unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!Arc::ptr_eq(&a, &b));
        let unlimited = Plain::new(settings(0)).unwrap();
        assert!(unlimited.channel("a").limiter.is_none());
    }

    #[test]
    fn every_client_reports_to_the_one_observer() {
        let observer = Arc::new(7);
        let connector = Connector::new(settings(0))
            .unwrap()
            .with_observer(Arc::clone(&observer));
        assert!(Arc::ptr_eq(&connector.observer().unwrap(), &observer));
        assert!(Plain::new(settings(0)).unwrap().observer().is_none());
    }

    #[tokio::test]
    async fn a_refused_connection_sent_nothing() {
        // Port 9 on loopback: nothing listens there on a test machine.
        let connector = Plain::new(ClientSettings {
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
        let connector = Plain::new(settings(0)).unwrap();
        let channel = connector.channel("k");
        let request = channel.http().get("http://localhost:9/x");
        match channel.send(request, "GET /x").await {
            Err(TransportError::EgressRefused(refused)) => assert_eq!(refused.host, "localhost"),
            other => panic!("{other:?}"),
        }
    }
}
