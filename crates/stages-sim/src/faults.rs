//! Fault injection: rules that make chosen routes slow, failing, rate
//! limited, silent or garbled, so the client's error handling can be tested
//! against a real socket rather than a mock.

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
    /// Answer with this 5xx status and the error JSON (code `injected_fault`).
    Error { status: u16 },
    /// Answer 429 with `Retry-After: retry_after_secs` and the error JSON.
    RateLimit { retry_after_secs: u64 },
    /// Close the connection without an answer.
    Drop,
    /// Never answer (the request hangs for an hour).
    Timeout,
    /// Answer 200 with a body that is not JSON.
    Malformed,
}

/// One rule: which requests (`route`), what happens, and how often.
///
/// JSON form (admin routes):
/// `{"route":"GET /api/v1/ping","kind":"latency","ms":3000,"times":2,"probability":0.5}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// `METHOD PATH`, `* PATH` or `PATH`; a trailing `*` in PATH matches any rest.
    pub route: String,
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
    pub fn new(route: &str, kind: FaultKind) -> Self {
        FaultRule {
            route: route.to_string(),
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

    /// Parses the `--fault` syntax: `ROUTE=KIND[:ARG][,times=N][,probability=P]`.
    ///
    /// KIND is `latency:MS`, `error[:STATUS]` (503), `rate_limit[:SECS]` (1),
    /// `drop`, `timeout` or `malformed`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (route, rest) = spec
            .split_once('=')
            .ok_or_else(|| format!("{spec:?}: expected ROUTE=KIND"))?;
        let mut parts = rest.split(',').map(str::trim);
        let kind_part = parts.next().unwrap_or_default();
        let (name, arg) = match kind_part.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (kind_part, None),
        };
        let num = |what: &str, default: Option<u64>| -> Result<u64, String> {
            match (arg, default) {
                (Some(a), _) => a
                    .parse()
                    .map_err(|_| format!("{spec:?}: {what} must be a whole number, not {a:?}")),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(format!("{spec:?}: {name} needs :{what}")),
            }
        };
        let kind = match name.to_ascii_lowercase().replace('-', "_").as_str() {
            "latency" => FaultKind::Latency {
                ms: num("MS", None)?,
            },
            "error" => FaultKind::Error {
                status: u16::try_from(num("STATUS", Some(503))?)
                    .map_err(|_| format!("{spec:?}: bad status"))?,
            },
            "rate_limit" => FaultKind::RateLimit {
                retry_after_secs: num("SECS", Some(1))?,
            },
            "drop" => FaultKind::Drop,
            "timeout" => FaultKind::Timeout,
            "malformed" => FaultKind::Malformed,
            other => {
                return Err(format!(
                    "{spec:?}: unknown fault {other:?} (latency, error, rate_limit, drop, timeout, malformed)"
                ))
            }
        };
        let mut rule = FaultRule::new(route.trim(), kind);
        for opt in parts.filter(|p| !p.is_empty()) {
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| format!("{spec:?}: option {opt:?} is not KEY=VALUE"))?;
            match k.trim() {
                "times" => {
                    rule.times = Some(
                        v.trim()
                            .parse()
                            .map_err(|_| format!("{spec:?}: times must be a whole number"))?,
                    )
                }
                "probability" | "p" => {
                    rule.probability = Some(
                        v.trim()
                            .parse()
                            .map_err(|_| format!("{spec:?}: probability must be a number"))?,
                    )
                }
                other => return Err(format!("{spec:?}: unknown option {other:?}")),
            }
        }
        rule.validate()?;
        Ok(rule)
    }

    /// Checks the route pattern and the numbers.
    pub fn validate(&self) -> Result<(), String> {
        let (method, path) = split_route(&self.route);
        if method != "*" && (method.is_empty() || !method.chars().all(|c| c.is_ascii_alphabetic()))
        {
            return Err(format!("route {:?}: bad method {method:?}", self.route));
        }
        if !path.starts_with('/') {
            return Err(format!(
                "route {:?}: expected `METHOD /path` (path starting with /)",
                self.route
            ));
        }
        if let FaultKind::Error { status } = self.kind {
            if !(500..=599).contains(&status) {
                return Err(format!("error status must be 500..=599, not {status}"));
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

    /// Whether the rule is about this request.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let (m, p) = split_route(&self.route);
        let method_ok = m == "*" || m.eq_ignore_ascii_case(method);
        let path_ok = match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == p,
        };
        method_ok && path_ok
    }
}

impl FromStr for FaultRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn split_route(route: &str) -> (&str, &str) {
    match route.trim().split_once(char::is_whitespace) {
        Some((m, p)) => (m, p.trim()),
        None => ("*", route.trim()),
    }
}

/// What to do with one request.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Plan {
    pub delay: Duration,
    pub action: Option<FaultKind>,
}

/// Picks the faults for a request and uses up their `times`.
pub(crate) fn plan(rules: &mut Vec<FaultRule>, method: &str, path: &str) -> Plan {
    let mut plan = Plan::default();
    let mut rng = rand::thread_rng();
    let mut i = 0;
    while i < rules.len() {
        let rule = &mut rules[i];
        let applies =
            rule.matches(method, path) && rule.probability.is_none_or(|p| rng.gen::<f64>() < p);
        if !applies {
            i += 1;
            continue;
        }
        let kind = rule.kind.clone();
        if let Some(n) = rule.times.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                rules.remove(i);
            } else {
                i += 1;
            }
        } else {
            i += 1;
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
    fn parses_the_cli_syntax() {
        let r = FaultRule::parse("GET /api/v1/ping=latency:3000").unwrap();
        assert_eq!(r.route, "GET /api/v1/ping");
        assert_eq!(r.kind, FaultKind::Latency { ms: 3000 });
        let r = FaultRule::parse("* /api/v1/*=error:503,times=2,p=0.5").unwrap();
        assert_eq!(r.kind, FaultKind::Error { status: 503 });
        assert_eq!(r.times, Some(2));
        assert_eq!(r.probability, Some(0.5));
        let r = FaultRule::parse("POST /api/v1/sites=rate_limit:2").unwrap();
        assert_eq!(
            r.kind,
            FaultKind::RateLimit {
                retry_after_secs: 2
            }
        );
        for (s, k) in [
            ("/api/v1/x=drop", FaultKind::Drop),
            ("* /api/v1/x=timeout", FaultKind::Timeout),
            ("GET /api/v1/x=malformed", FaultKind::Malformed),
            ("GET /api/v1/x=error", FaultKind::Error { status: 503 }),
        ] {
            assert_eq!(FaultRule::parse(s).unwrap().kind, k);
        }
        for bad in [
            "GET /x",
            "GET /x=latency",
            "GET /x=error:404",
            "GET /x=boom",
            "GET x=drop",
            "GET /x=drop,times=0",
            "GET /x=drop,p=2",
            "GET /x=drop,foo=1",
        ] {
            assert!(FaultRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matches_methods_and_prefixes() {
        let r = FaultRule::parse("* /api/v1/sites*=drop").unwrap();
        assert!(r.matches("GET", "/api/v1/sites"));
        assert!(r.matches("POST", "/api/v1/sites/10001/devices"));
        assert!(!r.matches("GET", "/api/v1/ping"));
        let r = FaultRule::parse("get /api/v1/ping=drop").unwrap();
        assert!(r.matches("GET", "/api/v1/ping"));
        assert!(!r.matches("POST", "/api/v1/ping"));
        assert!(!r.matches("GET", "/api/v1/ping/x"));
    }

    #[test]
    fn times_run_out_and_latency_adds_up() {
        let mut rules = vec![
            FaultRule::new("/a", FaultKind::Latency { ms: 5 }),
            FaultRule::new("/a", FaultKind::Latency { ms: 7 }).times(1),
            FaultRule::new("/a", FaultKind::Drop).times(1),
        ];
        let p = plan(&mut rules, "GET", "/a");
        assert_eq!(p.delay, Duration::from_millis(12));
        assert_eq!(p.action, Some(FaultKind::Drop));
        assert_eq!(rules.len(), 1);
        let p = plan(&mut rules, "GET", "/a");
        assert_eq!(p.delay, Duration::from_millis(5));
        assert_eq!(p.action, None);
    }

    #[test]
    fn json_form_round_trips() {
        let r = FaultRule::parse("GET /api/v1/ping=rate_limit:3,times=1").unwrap();
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"route":"GET /api/v1/ping","kind":"rate_limit","retry_after_secs":3,"times":1})
        );
        let back: FaultRule = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
        let d: FaultRule = serde_json::from_str(r#"{"route":"/x","kind":"drop"}"#).unwrap();
        assert_eq!(d.kind, FaultKind::Drop);
    }
}
