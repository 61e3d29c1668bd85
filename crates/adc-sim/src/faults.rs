//! Fault injection per SOAP operation: slow answers, IIS-style 500 pages,
//! throttling, garbled XML, hangs, dropped connections, SOAP faults and
//! refused credentials, optionally only N times or with a probability, so a
//! client's retry and error paths can be exercised against a real socket.

use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// What a fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer normally, `ms` milliseconds late. Latency rules add up and do
    /// not stop a later rule from applying too.
    Latency { ms: u64 },
    /// HTTP 500 with a plain HTML error page (not a SOAP fault), as IIS
    /// answers when the application itself fails. Named `http_500` in JSON
    /// as on the command line (snake case alone would make it `http500`,
    /// which is still read).
    #[serde(rename = "http_500", alias = "http500")]
    Http500,
    /// HTTP 503 with `Retry-After: retry_after_secs` and an HTML page.
    Throttle {
        #[serde(default = "one")]
        retry_after_secs: u64,
    },
    /// HTTP 200, `text/xml`, with a truncated, ill-formed envelope.
    Malformed,
    /// Never answer (the request hangs for an hour).
    Timeout,
    /// Close the connection without an answer.
    Drop,
    /// A SOAP fault (`soap:Server`) whose faultstring is `text`.
    Fault { text: String },
    /// The authentication fault, whatever the credentials.
    BadCredentials,
}

fn one() -> u64 {
    1
}

fn star() -> String {
    "*".to_string()
}

/// One rule: which operations, what happens, how often.
///
/// JSON form (admin routes):
/// `{"operation":"GetCustomerInfo_V2","kind":"http_500","probability":0.2}`,
/// `{"operation":"*","kind":"fault","text":"Server busy","times":2}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// An operation name (`GetCustomerInfo_V2`), `Service/*`
    /// (`CustomerManagement/*`), `WSDL` (the `?WSDL` pages) or `*` (all).
    #[serde(default = "star")]
    pub operation: String,
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Apply only to the next N matching requests, then disappear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// Apply to a matching request with this probability (0..=1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

impl FaultRule {
    pub fn new(operation: &str, kind: FaultKind) -> Self {
        FaultRule {
            operation: operation.to_string(),
            kind,
            times: None,
            probability: None,
        }
    }

    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }

    /// Parses the `--fault` syntax: `OP=KIND[:ARG][,times=N][,probability=P]`.
    ///
    /// KIND is `latency:MS`, `http_500`, `throttle[:SECS]` (1), `malformed`,
    /// `timeout`, `drop`, `fault:TEXT` or `bad_credentials`. Options are read
    /// from the end, so TEXT may itself contain commas.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (op, rest) = spec
            .split_once('=')
            .ok_or_else(|| format!("{spec:?}: expected OP=KIND"))?;
        let mut parts: Vec<&str> = rest.split(',').collect();
        let mut times = None;
        let mut probability = None;
        while parts.len() > 1 {
            let last = parts[parts.len() - 1].trim();
            let Some((k, v)) = last.split_once('=') else {
                break;
            };
            match k.trim() {
                "times" => {
                    times = Some(
                        v.trim()
                            .parse()
                            .map_err(|_| format!("{spec:?}: times must be a whole number"))?,
                    )
                }
                "probability" | "p" => {
                    probability = Some(
                        v.trim()
                            .parse()
                            .map_err(|_| format!("{spec:?}: probability must be a number"))?,
                    )
                }
                _ => break,
            }
            parts.pop();
        }
        let kind_part = parts.join(",");
        let (name, arg) = match kind_part.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a)),
            None => (kind_part.trim(), None),
        };
        let secs = |default: Option<u64>, what: &str| -> Result<u64, String> {
            match (arg.map(str::trim), default) {
                (Some(a), _) => a
                    .parse()
                    .map_err(|_| format!("{spec:?}: {what} must be a whole number, not {a:?}")),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(format!("{spec:?}: {name} needs :{what}")),
            }
        };
        let no_arg = |k: FaultKind| match arg {
            Some(a) => Err(format!("{spec:?}: {name} takes no argument (got {a:?})")),
            None => Ok(k),
        };
        let kind = match name.to_ascii_lowercase().replace('-', "_").as_str() {
            "latency" => FaultKind::Latency {
                ms: secs(None, "MS")?,
            },
            "http_500" | "http500" => no_arg(FaultKind::Http500)?,
            "throttle" => FaultKind::Throttle {
                retry_after_secs: secs(Some(1), "SECS")?,
            },
            "malformed" => no_arg(FaultKind::Malformed)?,
            "timeout" => no_arg(FaultKind::Timeout)?,
            "drop" => no_arg(FaultKind::Drop)?,
            "fault" => FaultKind::Fault {
                text: arg
                    .ok_or_else(|| format!("{spec:?}: fault needs :TEXT"))?
                    .to_string(),
            },
            "bad_credentials" => no_arg(FaultKind::BadCredentials)?,
            other => {
                return Err(format!(
                    "{spec:?}: unknown fault {other:?} (latency, http_500, throttle, malformed, \
                     timeout, drop, fault, bad_credentials)"
                ))
            }
        };
        let rule = FaultRule {
            operation: op.trim().to_string(),
            kind,
            times,
            probability,
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Checks the operation pattern and the numbers.
    pub fn validate(&self) -> Result<(), String> {
        let op = self.operation.trim();
        let name_ok =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let ok = op == "*"
            || name_ok(op)
            || op.strip_suffix("/*").is_some_and(|s| {
                let s = s.strip_suffix(".asmx").unwrap_or(s);
                name_ok(s)
            });
        if !ok {
            return Err(format!(
                "operation {op:?}: expected an operation name, Service/* or *"
            ));
        }
        if let FaultKind::Fault { text } = &self.kind {
            if text.trim().is_empty() {
                return Err("fault text must not be empty".into());
            }
        }
        if self.times == Some(0) {
            return Err("times must be 1 or more".into());
        }
        if let Some(p) = self.probability {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("probability must be between 0 and 1, not {p}"));
            }
        }
        Ok(())
    }

    /// Whether the rule is about operation `op` of `service`
    /// (`CustomerManagement` or `DealerManagement`).
    pub fn matches(&self, op: &str, service: &str) -> bool {
        let pattern = self.operation.trim();
        if pattern == "*" || pattern.eq_ignore_ascii_case(op) {
            return true;
        }
        match pattern.strip_suffix("/*") {
            Some(s) => s
                .strip_suffix(".asmx")
                .unwrap_or(s)
                .eq_ignore_ascii_case(service),
            None => false,
        }
    }
}

impl FromStr for FaultRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What to do with one request.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Plan {
    pub delay: Duration,
    pub action: Option<FaultKind>,
}

/// Picks the faults for a request and uses up their `times`.
pub(crate) fn plan(rules: &mut Vec<FaultRule>, op: &str, service: &str) -> Plan {
    let mut plan = Plan::default();
    let mut rng = rand::thread_rng();
    let mut i = 0;
    while i < rules.len() {
        let rule = &mut rules[i];
        let applies =
            rule.matches(op, service) && rule.probability.is_none_or(|p| rng.gen::<f64>() < p);
        if !applies {
            i += 1;
            continue;
        }
        let kind = rule.kind.clone();
        match rule.times.as_mut() {
            Some(n) if *n <= 1 => {
                rules.remove(i);
            }
            Some(n) => {
                *n -= 1;
                i += 1;
            }
            None => i += 1,
        }
        match kind {
            FaultKind::Latency { ms } => {
                plan.delay = plan.delay.saturating_add(Duration::from_millis(ms))
            }
            other => {
                plan.action = Some(other);
                break;
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_json_kind_http_500_is_read_and_written() {
        let r: FaultRule = serde_json::from_str(
            r#"{"operation":"GetCustomerInfo_V2","kind":"http_500","probability":0.2}"#,
        )
        .unwrap();
        assert_eq!(r.kind, FaultKind::Http500);
        assert_eq!(serde_json::to_value(&r).unwrap()["kind"], "http_500");
        let old: FaultRule = serde_json::from_str(r#"{"kind":"http500"}"#).unwrap();
        assert_eq!(old.kind, FaultKind::Http500);
    }

    #[test]
    fn parses_the_cli_syntax() {
        let r = FaultRule::parse("GetCustomerInfo_V2=http_500,probability=0.2").unwrap();
        assert_eq!(r.operation, "GetCustomerInfo_V2");
        assert_eq!(r.kind, FaultKind::Http500);
        assert_eq!(r.probability, Some(0.2));
        let r = FaultRule::parse("*=latency:300,times=2,p=0.5").unwrap();
        assert_eq!(r.kind, FaultKind::Latency { ms: 300 });
        assert_eq!((r.times, r.probability), (Some(2), Some(0.5)));
        let r = FaultRule::parse("CreateCustomer=fault:Busy, try again: later,times=1").unwrap();
        assert_eq!(
            r.kind,
            FaultKind::Fault {
                text: "Busy, try again: later".into()
            }
        );
        assert_eq!(r.times, Some(1));
        for (s, k) in [
            (
                "*=throttle",
                FaultKind::Throttle {
                    retry_after_secs: 1,
                },
            ),
            (
                "*=throttle:5",
                FaultKind::Throttle {
                    retry_after_secs: 5,
                },
            ),
            ("GetRepList=malformed", FaultKind::Malformed),
            ("GetRepList=timeout", FaultKind::Timeout),
            ("GetRepList=drop", FaultKind::Drop),
            (
                "DealerManagement/*=bad_credentials",
                FaultKind::BadCredentials,
            ),
        ] {
            assert_eq!(FaultRule::parse(s).unwrap().kind, k, "{s}");
        }
        for bad in [
            "GetRepList",
            "GetRepList=latency",
            "GetRepList=boom",
            "GetRepList=drop:1",
            "GetRepList=fault:",
            "Get Rep=drop",
            "GetRepList=drop,times=0",
            "GetRepList=drop,p=2",
            "GetRepList=drop,times=x",
        ] {
            assert!(FaultRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matches_operations_and_services() {
        let r = FaultRule::parse("CustomerManagement/*=drop").unwrap();
        assert!(r.matches("GetCustomerList", "CustomerManagement"));
        assert!(!r.matches("GetRepList", "DealerManagement"));
        let r = FaultRule::parse("getreplist=drop").unwrap();
        assert!(r.matches("GetRepList", "DealerManagement"));
        assert!(!r.matches("GetDealerId", "DealerManagement"));
        assert!(FaultRule::parse("*=drop").unwrap().matches("WSDL", "x"));
    }

    #[test]
    fn times_run_out_and_latency_adds_up() {
        let mut rules = vec![
            FaultRule::new("A", FaultKind::Latency { ms: 5 }),
            FaultRule::new("A", FaultKind::Latency { ms: 7 }).times(1),
            FaultRule::new("A", FaultKind::Drop).times(2),
        ];
        let p = plan(&mut rules, "A", "S");
        assert_eq!(p.delay, Duration::from_millis(12));
        assert_eq!(p.action, Some(FaultKind::Drop));
        assert_eq!(rules.len(), 2);
        assert_eq!(plan(&mut rules, "A", "S").action, Some(FaultKind::Drop));
        let p = plan(&mut rules, "A", "S");
        assert_eq!((p.delay, p.action), (Duration::from_millis(5), None));
    }

    #[test]
    fn json_form_round_trips() {
        let r = FaultRule::parse("GetDealerId=throttle:3,times=1").unwrap();
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"operation":"GetDealerId","kind":"throttle","retry_after_secs":3,"times":1})
        );
        assert_eq!(serde_json::from_value::<FaultRule>(j).unwrap(), r);
        let d: FaultRule = serde_json::from_str(r#"{"kind":"fault","text":"x"}"#).unwrap();
        assert_eq!(d.operation, "*");
        let d: FaultRule = serde_json::from_str(r#"{"kind":"throttle"}"#).unwrap();
        assert_eq!(
            d.kind,
            FaultKind::Throttle {
                retry_after_secs: 1
            }
        );
    }
}
