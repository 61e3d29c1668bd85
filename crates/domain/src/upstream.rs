//! How calls to the upstream systems went, for metrics. The clients report
//! each call, after its retries, to an observer the service hands them, so an
//! operator sees which connection is failing and how.

/// Told about every upstream call once it has ended.
pub trait CallObserver: Send + Sync {
    /// `provider` is e.g. `stages`; `connection` the connection's key (its
    /// id); `outcome` is `ok` or the kind of error (`timeout`, `unreachable`, ...).
    fn observe(
        &self,
        provider: &'static str,
        connection: &str,
        outcome: &'static str,
        seconds: f64,
    );
}
