//! Prometheus metrics: request counts and latency by route template and
//! status, and upstream calls by provider, connection and outcome.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    upstream_calls: IntCounterVec,
    upstream_latency: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("crosslink_http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "crosslink_http_request_duration_seconds",
                "Time to answer an HTTP request",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let upstream_calls = IntCounterVec::new(
            Opts::new(
                "crosslink_upstream_calls_total",
                "Calls to upstream systems (after retries) by connection and outcome",
            ),
            &["provider", "connection", "outcome"],
        )
        .expect("static metric definition");
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "crosslink_upstream_call_duration_seconds",
                "Time an upstream call took, retries included",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["provider", "outcome"],
        )
        .expect("static metric definition");
        for metric in [&requests, &upstream_calls] {
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
        }
        for metric in [&latency, &upstream_latency] {
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
        }
        Self {
            registry,
            requests,
            latency,
            upstream_calls,
            upstream_latency,
        }
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl domain::upstream::CallObserver for Metrics {
    fn observe(
        &self,
        provider: &'static str,
        connection: &str,
        outcome: &'static str,
        seconds: f64,
    ) {
        self.upstream_calls
            .with_label_values(&[provider, connection, outcome])
            .inc();
        self.upstream_latency
            .with_label_values(&[provider, outcome])
            .observe(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
