//! What an answer means: a result, a SOAP fault, `Success=false`, or an HTTP
//! failure, each turned into the `AdcError` the service acts on.
//!
//! Kept free of I/O so the whole mapping is unit-tested on sample answers.

use std::time::Duration;

use domain::adc::AdcError;

use crate::operation::Operation;
use crate::xml::{self, Element};

/// How one attempt failed, and whether another attempt may help.
pub(crate) type Failure = upstream_http::Failure<AdcError>;

/// Reads an HTTP answer to `op`: the `<op>Result` element on success (`None`
/// for an operation that returns nothing).
pub(crate) fn read_answer(
    op: &Operation,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Option<Element>, Failure> {
    let doc = xml::parse(body);
    // A fault wins over the status: ASP.NET sends faults with a 500, but a
    // fault is a deliberate answer whatever the status says.
    if let Ok(doc) = &doc {
        if let Some(fault) = doc.child("Body").and_then(|b| b.child("Fault")) {
            return Err(fault_failure(fault, retry_after));
        }
    }
    if !(200..300).contains(&status) {
        return Err(status_failure(status, retry_after, body));
    }
    let doc = doc.map_err(|e| {
        Failure::permanent(AdcError::BadAnswer(format!(
            "malformed XML in the answer to {}: {}",
            op.name,
            upstream_http::excerpt(&e.0)
        )))
    })?;
    if !doc.name.eq_ignore_ascii_case("Envelope") {
        return Err(bad(
            op,
            &format!("<{}> instead of a SOAP envelope", doc.name),
        ));
    }
    let body = doc
        .child("Body")
        .ok_or_else(|| bad(op, "a SOAP envelope without a body"))?;
    let response_name = format!("{}Response", op.name);
    let response = body
        .child(&response_name)
        .ok_or_else(|| bad(op, &format!("no <{response_name}> in the body")))?;
    let result_name = format!("{}Result", op.name);
    Ok(response.child(&result_name).cloned())
}

fn bad(op: &Operation, what: &str) -> Failure {
    Failure::permanent(AdcError::BadAnswer(format!(
        "the answer to {} has {what}",
        op.name
    )))
}

/// `Success=false` with its `ErrorMessage`; a bare `false` result (e.g.
/// `TerminateCustomerResult`) likewise.
pub(crate) fn check_success(op: &Operation, result: Option<&Element>) -> Result<(), AdcError> {
    let Some(result) = result else {
        return Ok(());
    };
    let refused = match result.child("Success") {
        Some(success) => parse_bool(success.value().unwrap_or("true")) == Some(false),
        None => {
            result.children.is_empty() && parse_bool(result.value().unwrap_or("")) == Some(false)
        }
    };
    if !refused {
        return Ok(());
    }
    let message = result
        .child("ErrorMessage")
        .and_then(Element::value)
        .map(upstream_http::excerpt)
        .unwrap_or_else(|| format!("{} did not succeed and gave no reason", op.name));
    Err(if mentions_permission(&message) {
        AdcError::PermissionDenied { message }
    } else {
        AdcError::Rejected { message }
    })
}

/// `true`/`false` as XML Schema writes them (and `1`/`0`).
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        t if t.eq_ignore_ascii_case("true") || t == "1" => Some(true),
        t if t.eq_ignore_ascii_case("false") || t == "0" => Some(false),
        _ => None,
    }
}

fn mentions_permission(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "permission",
        "not authorized",
        "not authorised",
        "access denied",
        "not allowed",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// A SOAP 1.1 fault (`faultstring`), or a SOAP 1.2 one (`Reason/Text`).
fn fault_failure(fault: &Element, retry_after: Option<Duration>) -> Failure {
    let message = fault
        .child("faultstring")
        .and_then(Element::value)
        .or_else(|| fault.at(&["Reason", "Text"]).and_then(Element::value))
        .unwrap_or("a SOAP fault without a message");
    // Shown to callers: a short printable excerpt only.
    let message = upstream_http::excerpt(message);
    // `soap:Server` (1.1) or `soap:Receiver` (1.2): Alarm.com's own side failed.
    let code = fault
        .child("faultcode")
        .and_then(Element::value)
        .or_else(|| fault.at(&["Code", "Value"]).and_then(Element::value))
        .unwrap_or("");
    let local = code.rsplit(':').next().unwrap_or("").trim();
    let server_side =
        local.eq_ignore_ascii_case("Server") || local.eq_ignore_ascii_case("Receiver");
    let failure = classify_fault(message, retry_after);
    match failure.error {
        // Not something the request did: the same request may succeed a
        // moment later, so reads are retried (changes still are not).
        AdcError::Fault { message } if server_side => {
            Failure::transient(AdcError::ServerFault { message })
        }
        _ => failure,
    }
}

fn classify_fault(message: String, retry_after: Option<Duration>) -> Failure {
    let m = message.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| m.contains(w));
    // Order matters: "not authorized to use the Builder Program" is about a
    // permission, "authentication failed" about the login itself.
    if has(&[
        "authenticat",
        "credential",
        "username or password",
        "user name or password",
        "invalid login",
        "invalid password",
        "login failed",
    ]) {
        Failure::permanent(AdcError::Unauthorized)
    } else if mentions_permission(&message) {
        Failure::permanent(AdcError::PermissionDenied { message })
    } else if has(&["not found", "does not exist", "no such", "unknown customer"]) {
        Failure::permanent(AdcError::NotFound(message))
    } else if has(&["throttl", "rate limit", "too many requests"]) {
        rate_limited(retry_after)
    } else {
        Failure::permanent(AdcError::Fault { message })
    }
}

/// A non-2xx answer that carries no fault.
fn status_failure(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Failure {
    let detail = snippet(body);
    match status {
        401 | 403 => Failure::permanent(AdcError::Unauthorized),
        408 => Failure::transient(AdcError::Timeout),
        429 => rate_limited(retry_after),
        503 if retry_after.is_some() => rate_limited(retry_after),
        500..=599 => Failure::transient(AdcError::BadAnswer(format!("HTTP {status}: {detail}"))),
        // A 404 or 405 says the endpoint is not an ADC dealer host.
        _ => Failure::permanent(AdcError::BadAnswer(format!(
            "HTTP {status}: {detail}; is the endpoint an Alarm.com dealer host?"
        ))),
    }
}

/// ADC asks to slow down: worth waiting for, on a read.
fn rate_limited(retry_after: Option<Duration>) -> Failure {
    Failure::transient(AdcError::RateLimited {
        retry_after_secs: retry_after.map(upstream_http::ceil_secs),
    })
    .after(retry_after)
}

/// A short printable excerpt of a body for an error message.
fn snippet(body: &[u8]) -> String {
    let text = upstream_http::excerpt_bytes(body);
    if text.is_empty() {
        return "no body".to_owned();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::{CREATE_CUSTOMER, GET_CUSTOMER_INFO_V2, TERMINATE_CUSTOMER};

    fn envelope(body: &str) -> Vec<u8> {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{body}</soap:Body></soap:Envelope>"#
        )
        .into_bytes()
    }

    fn fault(message: &str) -> Vec<u8> {
        envelope(&format!(
            "<soap:Fault><faultcode>soap:Client</faultcode><faultstring>{message}</faultstring><detail/></soap:Fault>"
        ))
    }

    #[test]
    fn a_result_is_found_under_its_response() {
        let body = envelope(
            r#"<GetCustomerInfo_V2Response xmlns="http://www.alarm.com/WebServices"><GetCustomerInfo_V2Result><CustomerId>7</CustomerId><Extra>x</Extra></GetCustomerInfo_V2Result></GetCustomerInfo_V2Response>"#,
        );
        let result = read_answer(&GET_CUSTOMER_INFO_V2, 200, None, &body)
            .unwrap()
            .unwrap();
        assert_eq!(result.child("CustomerId").unwrap().value(), Some("7"));
    }

    #[test]
    fn a_server_side_fault_may_be_retried_a_client_one_not() {
        let busy = envelope(
            "<soap:Fault><faultcode>soap:Server</faultcode><faultstring>Server busy, try later</faultstring><detail/></soap:Fault>",
        );
        let f = read_answer(&GET_CUSTOMER_INFO_V2, 500, None, &busy).unwrap_err();
        assert_eq!(
            f.error,
            AdcError::ServerFault {
                message: "Server busy, try later".into()
            }
        );
        assert!(f.retryable && f.error.is_transient());
        let soap12 = envelope(
            "<soap:Fault><soap:Code><soap:Value>soap:Receiver</soap:Value></soap:Code><soap:Reason><soap:Text>Server busy</soap:Text></soap:Reason></soap:Fault>",
        );
        let f = read_answer(&GET_CUSTOMER_INFO_V2, 500, None, &soap12).unwrap_err();
        assert!(matches!(f.error, AdcError::ServerFault { .. }) && f.retryable);
        // The request's own fault, and a server-side "not found", stay final.
        let f = read_answer(&GET_CUSTOMER_INFO_V2, 500, None, &fault("Invalid value")).unwrap_err();
        assert!(matches!(f.error, AdcError::Fault { .. }) && !f.retryable);
        let gone = envelope(
            "<soap:Fault><faultcode>soap:Server</faultcode><faultstring>Customer not found</faultstring></soap:Fault>",
        );
        let f = read_answer(&GET_CUSTOMER_INFO_V2, 500, None, &gone).unwrap_err();
        assert!(matches!(f.error, AdcError::NotFound(_)) && !f.retryable);
    }

    #[test]
    fn a_void_answer_has_no_result() {
        let body =
            envelope(r#"<TerminateCustomerResponse xmlns="http://www.alarm.com/WebServices"/>"#);
        assert_eq!(
            read_answer(&TERMINATE_CUSTOMER, 200, None, &body).unwrap(),
            None
        );
    }

    #[test]
    fn answers_that_are_not_the_protocol_are_bad_answers() {
        let cases: [(&[u8], &str); 4] = [
            (b"<soap:Envelope><soap:Body>", "malformed XML"),
            (
                b"<html><body>hi</body></html>",
                "instead of a SOAP envelope",
            ),
            (
                &envelope("<OtherResponse/>"),
                "no <GetCustomerInfo_V2Response>",
            ),
            (b"<Envelope/>", "without a body"),
        ];
        for (body, expected) in cases {
            let f = read_answer(&GET_CUSTOMER_INFO_V2, 200, None, body).unwrap_err();
            assert!(!f.retryable);
            match f.error {
                AdcError::BadAnswer(m) => assert!(m.contains(expected), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn faults_are_mapped_by_their_message() {
        let cases = [
            (
                "Server was unable to process request. ---> Authentication failed.",
                AdcError::Unauthorized,
            ),
            ("Invalid username or password", AdcError::Unauthorized),
            (
                "Customer 99 not found",
                AdcError::NotFound("Customer 99 not found".into()),
            ),
            (
                "The login does not have permission to manage the Builder Program",
                AdcError::PermissionDenied {
                    message: "The login does not have permission to manage the Builder Program"
                        .into(),
                },
            ),
            (
                "Object reference not set to an instance of an object.",
                AdcError::Fault {
                    message: "Object reference not set to an instance of an object.".into(),
                },
            ),
        ];
        for (message, expected) in cases {
            let f = read_answer(&GET_CUSTOMER_INFO_V2, 500, None, &fault(message)).unwrap_err();
            assert_eq!(f.error, expected, "{message}");
            assert!(!f.retryable);
        }
        // Escaped text in the fault string comes through.
        let f =
            read_answer(&CREATE_CUSTOMER, 500, None, &fault("bad &lt;PanelType&gt;")).unwrap_err();
        assert_eq!(
            f.error,
            AdcError::Fault {
                message: "bad <PanelType>".into()
            }
        );
    }

    #[test]
    fn a_throttling_fault_is_a_rate_limit() {
        let f = read_answer(
            &GET_CUSTOMER_INFO_V2,
            500,
            Some(Duration::from_millis(1500)),
            &fault("Request throttled"),
        )
        .unwrap_err();
        assert_eq!(
            f.error,
            AdcError::RateLimited {
                retry_after_secs: Some(2)
            }
        );
        assert!(f.retryable);
    }

    #[test]
    fn a_soap12_fault_is_read_too() {
        let body = br#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><env:Fault><env:Code><env:Value>env:Sender</env:Value></env:Code><env:Reason><env:Text xml:lang="en">Customer not found</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>"#;
        let f = read_answer(&GET_CUSTOMER_INFO_V2, 500, None, body).unwrap_err();
        assert_eq!(f.error, AdcError::NotFound("Customer not found".into()));
    }

    #[test]
    fn http_failures_without_a_fault() {
        let f = read_answer(&GET_CUSTOMER_INFO_V2, 500, None, b"<html>oops</html>").unwrap_err();
        assert_eq!(
            f.error,
            AdcError::BadAnswer("HTTP 500: <html>oops</html>".into())
        );
        assert!(f.retryable);

        let f = read_answer(
            &GET_CUSTOMER_INFO_V2,
            503,
            Some(Duration::from_secs(3)),
            b"",
        )
        .unwrap_err();
        assert_eq!(
            f.error,
            AdcError::RateLimited {
                retry_after_secs: Some(3)
            }
        );
        assert_eq!(f.retry_after, Some(Duration::from_secs(3)));
        assert!(f.retryable);

        let f = read_answer(&GET_CUSTOMER_INFO_V2, 503, None, b"").unwrap_err();
        assert_eq!(f.error, AdcError::BadAnswer("HTTP 503: no body".into()));
        assert!(f.retryable);

        let f = read_answer(&GET_CUSTOMER_INFO_V2, 429, None, b"").unwrap_err();
        assert_eq!(
            f.error,
            AdcError::RateLimited {
                retry_after_secs: None
            }
        );

        let f = read_answer(&GET_CUSTOMER_INFO_V2, 401, None, b"").unwrap_err();
        assert_eq!(f.error, AdcError::Unauthorized);
        assert!(!f.retryable);

        let f = read_answer(&GET_CUSTOMER_INFO_V2, 404, None, b"Not Found").unwrap_err();
        assert!(matches!(f.error, AdcError::BadAnswer(ref m) if m.contains("dealer host")));
        assert!(!f.retryable);
    }

    #[test]
    fn success_false_is_a_rejection() {
        let result = |xml: &str| xml::parse(xml.as_bytes()).unwrap();
        let taken = result(
            "<CreateCustomerResult><Success>false</Success><ErrorMessage>Login name is already taken</ErrorMessage><CustomerId>0</CustomerId></CreateCustomerResult>",
        );
        assert_eq!(
            check_success(&CREATE_CUSTOMER, Some(&taken)),
            Err(AdcError::Rejected {
                message: "Login name is already taken".into()
            })
        );
        let denied = result(
            "<CreateCustomerResult><Success>false</Success><ErrorMessage>You do not have permission to use this Builder Program</ErrorMessage></CreateCustomerResult>",
        );
        assert!(matches!(
            check_success(&CREATE_CUSTOMER, Some(&denied)),
            Err(AdcError::PermissionDenied { .. })
        ));
        let silent =
            result("<CreateCustomerResult><Success>false</Success></CreateCustomerResult>");
        assert_eq!(
            check_success(&CREATE_CUSTOMER, Some(&silent)),
            Err(AdcError::Rejected {
                message: "CreateCustomer did not succeed and gave no reason".into()
            })
        );
        let bare = result("<TerminateCustomerResult>false</TerminateCustomerResult>");
        assert!(check_success(&TERMINATE_CUSTOMER, Some(&bare)).is_err());

        let ok = result("<CreateCustomerResult><Success>true</Success><CustomerId>5</CustomerId></CreateCustomerResult>");
        assert_eq!(check_success(&CREATE_CUSTOMER, Some(&ok)), Ok(()));
        assert_eq!(
            check_success(&CREATE_CUSTOMER, Some(&result("<X>true</X>"))),
            Ok(())
        );
        assert_eq!(check_success(&CREATE_CUSTOMER, None), Ok(()));
    }
}
