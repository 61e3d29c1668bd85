//! Prometheus metrics (B10): requests by route template and status, upstream calls
//! by provider, connection and outcome, the job queue (jobs by kind and state,
//! due jobs and the age of the oldest, job durations, progress of running
//! imports and reconciles), webhook deliveries by outcome, the size of the
//! tables history piles up in and what retention (B15) purged, the process's
//! memory, CPU and file descriptors, and the build.
//!
//! [`EXPORTED`] lists every family with its type: `make deploy-check` reads it
//! to check the dashboard in deploy/grafana, and a test keeps it equal to
//! what the registry exposes.

use std::collections::BTreeMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Counter, Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric family `/metrics` exposes, with its type. A histogram's
/// series add `_bucket`, `_sum` and `_count` to its name.
pub const EXPORTED: &[(&str, &str)] = &[
    ("crosslink_http_requests_total", "counter"),
    ("crosslink_http_request_duration_seconds", "histogram"),
    ("crosslink_upstream_calls_total", "counter"),
    ("crosslink_upstream_call_duration_seconds", "histogram"),
    ("crosslink_jobs", "gauge"),
    ("crosslink_job_queue_depth", "gauge"),
    ("crosslink_job_queue_oldest_due_age_seconds", "gauge"),
    ("crosslink_job_duration_seconds", "histogram"),
    ("crosslink_job_progress_items_done", "gauge"),
    ("crosslink_job_progress_items_planned", "gauge"),
    ("crosslink_job_stats_age_seconds", "gauge"),
    ("crosslink_webhook_deliveries_total", "counter"),
    ("crosslink_table_rows", "gauge"),
    ("crosslink_table_oldest_age_seconds", "gauge"),
    ("crosslink_retention_purged_rows_total", "counter"),
    ("crosslink_build_info", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    upstream_calls: IntCounterVec,
    upstream_latency: HistogramVec,
    jobs: IntGaugeVec,
    queue_depth: IntGaugeVec,
    oldest_due: GaugeVec,
    job_duration: HistogramVec,
    progress_done: IntGaugeVec,
    progress_planned: IntGaugeVec,
    job_stats_at: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    job_stats_age: Gauge,
    deliveries: IntCounterVec,
    table_rows: IntGaugeVec,
    table_oldest: GaugeVec,
    purged: IntCounterVec,
}

fn register(registry: &Registry, metric: impl Collector + Clone + 'static) {
    registry
        .register(Box::new(metric))
        .expect("each metric is registered once");
}

/// Makes metric families, registering each on the registry as it is made,
/// so a family cannot be defined and then forgotten.
struct Families<'a>(&'a Registry);

impl Families<'_> {
    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let m =
            IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
        register(self.0, m.clone());
        m
    }

    fn histograms(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
        labels: &[&str],
    ) -> HistogramVec {
        let m = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .expect("static metric definition");
        register(self.0, m.clone());
        m
    }

    fn int_gauges(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
        register(self.0, m.clone());
        m
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        let m = GaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
        register(self.0, m.clone());
        m
    }

    fn gauge(&self, name: &str, help: &str) -> Gauge {
        let m = Gauge::with_opts(Opts::new(name, help)).expect("static metric definition");
        register(self.0, m.clone());
        m
    }

    /// The running build's name, and the process's own figures (read at each scrape).
    fn build_and_process(&self) {
        self.int_gauges(
            "crosslink_build_info",
            "Always 1; the labels name the running build",
            &["version"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        register(self.0, ProcessCollector::new());
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let f = Families(&registry);
        let requests = f.counters(
            "crosslink_http_requests_total",
            "HTTP requests answered",
            &["method", "route", "status"],
        );
        let latency = f.histograms(
            "crosslink_http_request_duration_seconds",
            "Time to answer an HTTP request",
            vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
            &["method", "route", "status"],
        );
        let upstream_calls = f.counters(
            "crosslink_upstream_calls_total",
            "Calls to upstream systems (after retries) by connection and outcome",
            &["provider", "connection", "outcome"],
        );
        let upstream_latency = f.histograms(
            "crosslink_upstream_call_duration_seconds",
            "Time an upstream call took, retries included",
            vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
            &["provider", "outcome"],
        );
        let jobs = f.int_gauges(
            "crosslink_jobs",
            "Jobs in the queue by kind and state (queued, running, failed, dead), \
             all replicas; ended jobs are counted by crosslink_job_duration_seconds",
            &["kind", "state"],
        );
        let queue_depth = f.int_gauges(
            "crosslink_job_queue_depth",
            "Queued jobs that are due now, by kind (all replicas)",
            &["kind"],
        );
        let oldest_due = f.gauges(
            "crosslink_job_queue_oldest_due_age_seconds",
            "How long the oldest due queued job of a kind has waited (0: none waits)",
            &["kind"],
        );
        let job_duration = f.histograms(
            "crosslink_job_duration_seconds",
            "Time one attempt of a job took, by kind and outcome \
             (succeeded, retry, failed, dead, cancelled, unrecorded)",
            vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ],
            &["kind", "outcome"],
        );
        let progress_done = f.int_gauges(
            "crosslink_job_progress_items_done",
            "Items done so far by the running jobs of a kind (imports, reconciles)",
            &["kind"],
        );
        let progress_planned = f.int_gauges(
            "crosslink_job_progress_items_planned",
            "Items the running jobs of a kind plan to do, where they know",
            &["kind"],
        );
        let job_stats_age = f.gauge(
            "crosslink_job_stats_age_seconds",
            "Seconds since the job figures were last read from the database \
             (-1: never; they are read every few seconds)",
        );
        job_stats_age.set(-1.0);
        let deliveries = f.counters(
            "crosslink_webhook_deliveries_total",
            "Outbound webhook delivery attempts by outcome (delivered, gone, \
             rejected, unreachable, skipped)",
            &["outcome"],
        );
        let table_rows = f.int_gauges(
            "crosslink_table_rows",
            "Rows of a table history piles up in (and links), read every minute",
            &["table"],
        );
        let table_oldest = f.gauges(
            "crosslink_table_oldest_age_seconds",
            "Age of a table's oldest row when last read (0: empty); \
             retention keeps it near the setting",
            &["table"],
        );
        let purged = f.counters(
            "crosslink_retention_purged_rows_total",
            "Rows the retention purge deleted, by kind of history",
            &["history"],
        );
        f.build_and_process();
        Self {
            registry,
            requests,
            latency,
            upstream_calls,
            upstream_latency,
            jobs,
            queue_depth,
            oldest_due,
            job_duration,
            progress_done,
            progress_planned,
            job_stats_at: Default::default(),
            job_stats_age,
            deliveries,
            table_rows,
            table_oldest,
            purged,
        }
    }

    /// Sets each table's rows and the age of its oldest row from a fresh read.
    pub fn set_table_figures(
        &self,
        figures: &[domain::store::TableFigures],
        now: chrono::DateTime<chrono::Utc>,
    ) {
        for f in figures {
            let age = f.oldest.map_or(0.0, |oldest| {
                (now - oldest).num_milliseconds().max(0) as f64 / 1000.0
            });
            self.table_rows
                .with_label_values(&[f.table])
                .set(i64::try_from(f.rows).unwrap_or(i64::MAX));
            self.table_oldest.with_label_values(&[f.table]).set(age);
        }
    }

    /// Rows of one kind of history the purge deleted.
    pub fn purged(&self, history: domain::store::History, rows: u64) {
        self.purged
            .with_label_values(&[history.as_str()])
            .inc_by(rows);
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    /// One attempt of a job ended (`outcome`: succeeded, retry, failed, dead,
    /// cancelled, or unrecorded when its end could not be written).
    pub fn job_ended(&self, kind: &str, outcome: &str, seconds: f64) {
        self.job_duration
            .with_label_values(&[kind, outcome])
            .observe(seconds);
    }

    /// One webhook delivery attempt ended.
    pub fn delivery(&self, outcome: &'static str) {
        self.deliveries.with_label_values(&[outcome]).inc();
    }

    /// Sets the queue figures from a fresh read; `kinds` (those this service
    /// runs) always have series, at 0 when they have no jobs. Each series is
    /// set once, so a scrape never sees a reset in between.
    pub fn set_job_stats(
        &self,
        kinds: &[String],
        stats: &link_store::JobStats,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let mut by_state: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        let mut due: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
        let mut progress: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for kind in kinds {
            for state in link_store::COUNTED_STATES {
                by_state.insert((kind, state), 0);
            }
            due.insert(kind, (0, 0.0));
            progress.insert(kind, (0, 0));
        }
        for (kind, state, n) in &stats.by_state {
            by_state.insert((kind, state), *n);
        }
        for (kind, n, oldest) in &stats.due {
            let age = (now - *oldest).num_milliseconds().max(0) as f64 / 1000.0;
            due.insert(kind, (*n, age));
        }
        for (kind, done, planned) in &stats.progress {
            progress.insert(kind, (*done, *planned));
        }
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for ((kind, state), n) in by_state {
            self.jobs.with_label_values(&[kind, state]).set(gauge(n));
        }
        for (kind, (n, age)) in due {
            self.queue_depth.with_label_values(&[kind]).set(gauge(n));
            self.oldest_due.with_label_values(&[kind]).set(age);
        }
        for (kind, (done, planned)) in progress {
            self.progress_done
                .with_label_values(&[kind])
                .set(gauge(done));
            self.progress_planned
                .with_label_values(&[kind])
                .set(gauge(planned));
        }
        if let Ok(mut at) = self.job_stats_at.lock() {
            *at = Some(std::time::Instant::now());
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Ok(at) = self.job_stats_at.lock() {
            if let Some(at) = *at {
                self.job_stats_age.set(at.elapsed().as_secs_f64());
            }
        }
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

/// The usual `process_*` figures, read from /proc at each scrape (the
/// prometheus crate's own collector would bring procfs and its tree for six
/// numbers). Where /proc is missing the families are left out.
#[derive(Clone)]
struct ProcessCollector {
    cpu: Counter,
    resident: IntGauge,
    virtual_: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start_time: Gauge,
    descs: Vec<Desc>,
}

impl ProcessCollector {
    fn new() -> Self {
        let cpu = Counter::new(
            "process_cpu_seconds_total",
            "User and system CPU time the process spent, in seconds",
        )
        .expect("static metric definition");
        let resident = IntGauge::new("process_resident_memory_bytes", "Resident memory size")
            .expect("static metric definition");
        let virtual_ = IntGauge::new("process_virtual_memory_bytes", "Virtual memory size")
            .expect("static metric definition");
        let open_fds = IntGauge::new("process_open_fds", "Open file descriptors")
            .expect("static metric definition");
        let max_fds = IntGauge::new("process_max_fds", "The limit of open file descriptors")
            .expect("static metric definition");
        let start_time = Gauge::new(
            "process_start_time_seconds",
            "When the process started, in seconds since the Unix epoch",
        )
        .expect("static metric definition");
        let mut descs = Vec::new();
        for c in [
            &cpu as &dyn Collector,
            &resident,
            &virtual_,
            &open_fds,
            &max_fds,
            &start_time,
        ] {
            descs.extend(c.desc().into_iter().cloned());
        }
        Self {
            cpu,
            resident,
            virtual_,
            open_fds,
            max_fds,
            start_time,
            descs,
        }
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(figures) = proc_self::read() else {
            return Vec::new();
        };
        // A counter only goes up: add what was spent since the last scrape.
        let spent = figures.cpu_seconds - self.cpu.get();
        if spent > 0.0 {
            self.cpu.inc_by(spent);
        }
        self.resident.set(figures.resident_bytes);
        self.virtual_.set(figures.virtual_bytes);
        self.open_fds.set(figures.open_fds);
        self.max_fds.set(figures.max_fds);
        self.start_time.set(figures.start_time);
        let mut out = Vec::new();
        for c in [
            &self.cpu as &dyn Collector,
            &self.resident,
            &self.virtual_,
            &self.open_fds,
            &self.max_fds,
            &self.start_time,
        ] {
            out.extend(c.collect());
        }
        out
    }
}

/// Reading /proc/self (Linux).
mod proc_self {
    pub struct Figures {
        pub cpu_seconds: f64,
        pub resident_bytes: i64,
        pub virtual_bytes: i64,
        pub open_fds: i64,
        pub max_fds: i64,
        pub start_time: f64,
    }

    pub fn read() -> Option<Figures> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) may hold spaces: fields count from after it.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state): field n is fields[n - 3].
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as i64;
        let cpu_seconds = (field(14)? + field(15)?) as f64 / ticks;
        let virtual_bytes = i64::try_from(field(23)?).ok()?;
        let resident_bytes = i64::try_from(field(24)?).ok()?.saturating_mul(page);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as i64)
            .unwrap_or(0);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3)?.parse::<i64>().ok())
            })
            .unwrap_or(0);
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
        });
        let start_time = boot.unwrap_or(0) as f64 + field(22)? as f64 / ticks;
        Some(Figures {
            cpu_seconds,
            resident_bytes,
            virtual_bytes,
            open_fds,
            max_fds,
            start_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::proto::MetricType;

    /// [`EXPORTED`] (what the dashboard check reads) is exactly what the
    /// registry exposes once every labelled family has a series.
    #[test]
    fn exported_lists_every_family_with_its_type() {
        let m = Metrics::new();
        m.observe("GET", "/healthz", 200, 0.01);
        domain::upstream::CallObserver::observe(&m, "stages", "c", "ok", 0.1);
        m.job_ended("reconcile", "succeeded", 1.0);
        m.delivery("delivered");
        m.purged(domain::store::History::Events, 3);
        m.set_table_figures(
            &[domain::store::TableFigures {
                table: "events",
                rows: 1,
                oldest: None,
            }],
            chrono::Utc::now(),
        );
        let stats = link_store::JobStats::default();
        m.set_job_stats(&["reconcile".to_owned()], &stats, chrono::Utc::now());
        let mut seen: Vec<(String, &str)> = m
            .registry
            .gather()
            .iter()
            .map(|f| {
                let kind = match f.get_field_type() {
                    MetricType::COUNTER => "counter",
                    MetricType::GAUGE => "gauge",
                    MetricType::HISTOGRAM => "histogram",
                    _ => "other",
                };
                (f.name().to_owned(), kind)
            })
            .collect();
        seen.sort();
        let mut want: Vec<(String, &str)> = EXPORTED
            .iter()
            .map(|(n, k)| ((*n).to_owned(), *k))
            .collect();
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn process_figures_are_read_from_proc() {
        let text = Metrics::new().render();
        for name in ["process_resident_memory_bytes", "process_open_fds"] {
            let value: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing from {text}"))
                .parse()
                .unwrap();
            assert!(value > 0.0, "{name} = {value}");
        }
        assert!(text.contains("crosslink_build_info{version=\""));
    }

    #[test]
    fn job_stats_fill_every_kind_and_age_the_oldest_due_job() {
        let m = Metrics::new();
        let now = chrono::Utc::now();
        let stats = link_store::JobStats {
            by_state: vec![("reconcile".into(), "queued".into(), 3)],
            due: vec![("reconcile".into(), 2, now - chrono::Duration::seconds(30))],
            progress: vec![("adc_import".into(), 5, 9)],
        };
        m.set_job_stats(&["reconcile".into(), "adc_import".into()], &stats, now);
        let text = m.render();
        for line in [
            "crosslink_jobs{kind=\"reconcile\",state=\"queued\"} 3",
            "crosslink_jobs{kind=\"adc_import\",state=\"dead\"} 0",
            "crosslink_job_queue_depth{kind=\"reconcile\"} 2",
            "crosslink_job_queue_oldest_due_age_seconds{kind=\"reconcile\"} 30",
            "crosslink_job_queue_oldest_due_age_seconds{kind=\"adc_import\"} 0",
            "crosslink_job_progress_items_done{kind=\"adc_import\"} 5",
            "crosslink_job_progress_items_planned{kind=\"adc_import\"} 9",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
    }
}
