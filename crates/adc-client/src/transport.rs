//! One call to ADC: envelope, URL, rate limit, retries, error mapping.
//!
//! Every operation goes through here, so the rules for what may be repeated
//! and what each failure means are the same for all. The envelope carries
//! the password: it is never logged, and neither is any request body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::adc::{AdcError, AdcResult, AdcTarget};
use domain::upstream::CallObserver;
use governor::DefaultDirectRateLimiter;
use rand::Rng;
use tracing::Instrument;

use crate::connector::AdcClientSettings;
use crate::operation::Operation;
use crate::soap::{self, Failure};
use crate::xml::{self, Element, Node};

pub(crate) struct Transport {
    http: reqwest::Client,
    settings: AdcClientSettings,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    target: AdcTarget,
    observer: Option<Arc<dyn CallObserver>>,
}

impl Transport {
    pub fn new(
        http: reqwest::Client,
        settings: AdcClientSettings,
        limiter: Option<Arc<DefaultDirectRateLimiter>>,
        target: AdcTarget,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Self {
        Self {
            http,
            settings,
            limiter,
            target,
            observer,
        }
    }

    pub fn target(&self) -> &AdcTarget {
        &self.target
    }

    /// Calls `op` with `body` as the children of its element, and returns its
    /// `<op>Result` once it is known to have succeeded (`Success` not false).
    pub async fn call(&self, op: &Operation, body: Vec<Node>) -> AdcResult<Option<Element>> {
        let span = tracing::debug_span!(
            "adc_call",
            connection = %self.target.key,
            operation = op.name,
        );
        let started = Instant::now();
        let result = async {
            let result = self.call_with_retries(op, &body).await?;
            soap::check_success(op, result.as_ref())?;
            Ok(result)
        }
        .instrument(span)
        .await;
        if let Some(observer) = &self.observer {
            let outcome = result.as_ref().map_or_else(AdcError::kind, |_| "ok");
            let seconds = started.elapsed().as_secs_f64();
            observer.observe("alarm_com", &self.target.key, outcome, seconds);
        }
        result
    }

    async fn call_with_retries(&self, op: &Operation, body: &[Node]) -> AdcResult<Option<Element>> {
        let credentials = xml::Credentials {
            user: &self.target.username,
            password: &self.target.password,
        };
        let envelope =
            xml::envelope(&credentials, op.name, body).map_err(|e| AdcError::Rejected {
                message: format!(
                    "the value of <{}> holds a control character that XML cannot carry",
                    e.element
                ),
            })?;
        let url = service_url(&self.target.endpoint, op)?;
        // The resolver checks host names; an address in the URL reaches no resolver.
        self.settings
            .egress
            .check_literal(&url)
            .map_err(|refused| AdcError::EgressRefused(refused.to_string()))?;
        let mut retries = 0u32;
        loop {
            if let Some(limiter) = &self.limiter {
                limiter.until_ready().await;
            }
            let failure = match self.attempt(op, &url, &envelope).await {
                Ok(result) => return Ok(result),
                Err(f) => f,
            };
            if !op.read_only || !failure.retryable || retries >= self.settings.max_retries {
                return Err(failure.error);
            }
            let delay = match failure.retry_after {
                Some(wait) if wait > self.settings.max_retry_delay => {
                    tracing::debug!(
                        retry_after_ms = wait.as_millis() as u64,
                        "retry-after longer than we wait"
                    );
                    return Err(failure.error);
                }
                Some(wait) => wait,
                None => self.backoff(retries),
            };
            retries += 1;
            tracing::debug!(
                retry = retries,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Full jitter: uniform in `0..=min(max, base * 2^retries)`.
    fn backoff(&self, retries: u32) -> Duration {
        let ceiling = self
            .settings
            .retry_base_delay
            .saturating_mul(2u32.saturating_pow(retries))
            .min(self.settings.max_retry_delay);
        rand::thread_rng().gen_range(Duration::ZERO..=ceiling)
    }

    async fn attempt(
        &self,
        op: &Operation,
        url: &url::Url,
        envelope: &[u8],
    ) -> Result<Option<Element>, Failure> {
        let started = Instant::now();
        let sent = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("SOAPAction", op.soap_action())
            .header(reqwest::header::ACCEPT, "text/xml")
            .body(envelope.to_vec())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let failure = transport_failure(op, e);
                tracing::debug!(
                    latency_ms = started.elapsed().as_millis() as u64,
                    error = %failure.error,
                    "no answer"
                );
                return Err(failure);
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(soap::parse_retry_after);
        let body = response.bytes().await;
        tracing::debug!(
            status,
            latency_ms = started.elapsed().as_millis() as u64,
            "answer"
        );
        let body = match body {
            Ok(b) => b,
            Err(e) => return Err(transport_failure(op, e)),
        };
        soap::read_answer(op, status, retry_after, &body)
    }
}

/// `{endpoint}/WebServices/<Service>.asmx`, keeping a base path.
fn service_url(endpoint: &url::Url, op: &Operation) -> AdcResult<url::Url> {
    let mut url = endpoint.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| {
            AdcError::Unreachable(format!(
                "the endpoint {} cannot take a path",
                endpoint.scheme()
            ))
        })?
        .pop_if_empty()
        .extend(op.service.segments());
    Ok(url)
}

/// A request that got no (complete) answer. Each is transient; whether it is
/// repeated depends on the operation.
fn transport_failure(op: &Operation, e: reqwest::Error) -> Failure {
    if let Some(refused) = upstream_http::refusal_in(&e) {
        // Nothing was sent, and the same name resolves the same way again.
        return Failure::permanent(AdcError::EgressRefused(refused.to_string()));
    }
    let e = e.without_url();
    if e.is_timeout() {
        return Failure::transient(AdcError::Timeout);
    }
    let error = AdcError::Unreachable(detail(op, &e));
    if e.is_builder() {
        Failure::permanent(error)
    } else {
        Failure::transient(error)
    }
}

/// `"GetRepList: error sending request: ...: Connection refused"`, with each
/// cause once.
fn detail(op: &Operation, e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = op.name.to_owned();
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
    use crate::operation::{GET_CUSTOMER_INFO_V2, GET_REP_LIST};

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn service_urls_keep_a_base_path() {
        assert_eq!(
            service_url(&url("https://alarmadmin.example/"), &GET_CUSTOMER_INFO_V2)
                .unwrap()
                .as_str(),
            "https://alarmadmin.example/WebServices/CustomerManagement.asmx"
        );
        assert_eq!(
            service_url(&url("http://127.0.0.1:9/adc?x=1"), &GET_REP_LIST)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/adc/WebServices/DealerManagement.asmx"
        );
        assert!(service_url(&url("mailto:x@y"), &GET_REP_LIST).is_err());
    }

    #[test]
    fn backoff_stays_under_the_cap() {
        let transport = Transport::new(
            reqwest::Client::new(),
            AdcClientSettings {
                retry_base_delay: Duration::from_millis(100),
                max_retry_delay: Duration::from_millis(300),
                ..AdcClientSettings::default()
            },
            None,
            AdcTarget {
                key: "k".into(),
                endpoint: url("http://h/"),
                username: "u".into(),
                password: "p".into(),
            },
            None,
        );
        for retries in 0..40 {
            let cap = Duration::from_millis(100 * 2u64.pow(retries.min(20)))
                .min(Duration::from_millis(300));
            assert!(transport.backoff(retries) <= cap);
        }
    }
}
