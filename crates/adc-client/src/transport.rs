//! One call to ADC: envelope, URL, and what each failure means.
//!
//! Every operation goes through here, so the rules for what may be repeated
//! and what each failure means are the same for all. The rate limit, the
//! retries and the transport errors are `upstream_http`'s. The envelope carries
//! the password: it is never logged, and neither is any request body.

use domain::adc::{AdcError, AdcResult};
use domain::upstream::{observed, CallObserver, UpstreamTarget};
use tracing::Instrument;
use upstream_http::{TransportError, Upstream};

use crate::operation::Operation;
use crate::soap::{self, Failure};
use crate::xml::{self, Element, Node};

pub(crate) struct Transport {
    pub upstream: Upstream<UpstreamTarget, dyn CallObserver>,
}

impl Transport {
    /// Calls `op` with `body` as the children of its element, and returns its
    /// `<op>Result` once it is known to have succeeded (`Success` not false).
    pub async fn call(&self, op: &Operation, body: Vec<Node>) -> AdcResult<Option<Element>> {
        let span = tracing::debug_span!(
            "adc_call",
            connection = %self.upstream.target.key,
            operation = op.name,
        );
        let call = async {
            let result = self.call_with_retries(op, &body).await?;
            soap::check_success(op, result.as_ref())?;
            Ok(result)
        }
        .instrument(span);
        observed(
            self.upstream.observer.as_deref(),
            "alarm_com",
            &self.upstream.target.key,
            call,
        )
        .await
    }

    /// Reads are repeated, changes never are (see [`Operation::read_only`]).
    async fn call_with_retries(&self, op: &Operation, body: &[Node]) -> AdcResult<Option<Element>> {
        let credentials = xml::Credentials {
            user: &self.upstream.target.username,
            password: &self.upstream.target.password,
        };
        let envelope =
            xml::envelope(&credentials, op.name, body).map_err(|e| AdcError::Rejected {
                message: format!(
                    "the value of <{}> holds a control character that XML cannot carry",
                    e.element
                ),
            })?;
        let url = service_url(&self.upstream.target.endpoint, op)?;
        self.upstream
            .channel
            .check_literal(&url)
            .map_err(|refused| AdcError::EgressRefused(refused.to_string()))?;
        self.upstream
            .channel
            .with_retries(op.read_only, |_| self.attempt(op, &url, &envelope))
            .await
    }

    async fn attempt(
        &self,
        op: &Operation,
        url: &url::Url,
        envelope: &[u8],
    ) -> Result<Option<Element>, Failure> {
        let request = self
            .upstream
            .channel
            .http()
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("SOAPAction", op.soap_action())
            .header(reqwest::header::ACCEPT, "text/xml")
            .body(envelope.to_vec());
        let answer = self
            .upstream
            .channel
            .send(request, op.name)
            .await
            .map_err(transport_failure)?;
        let body = answer.body.map_err(transport_failure)?;
        soap::read_answer(op, answer.status.as_u16(), answer.retry_after, &body)
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

/// A request that got no (complete) answer. Each is transient but a
/// refusal or a request that cannot be built; whether it is repeated
/// depends on the operation.
fn transport_failure(e: TransportError) -> Failure {
    match e {
        // Nothing was sent, and the same name resolves the same way again.
        TransportError::EgressRefused(refused) => {
            Failure::permanent(AdcError::EgressRefused(refused.to_string()))
        }
        TransportError::Timeout
        | TransportError::Connect {
            timed_out: true, ..
        } => Failure::transient(AdcError::Timeout),
        TransportError::Request { detail } => Failure::permanent(AdcError::Unreachable(detail)),
        TransportError::Connect { detail, .. } | TransportError::Broken { detail } => {
            Failure::transient(AdcError::Unreachable(detail))
        }
    }
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
}
