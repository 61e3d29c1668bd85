//! What the upstream providers' failures have in common, and how calls to
//! them went, for metrics.
//!
//! [`UpstreamErrorKind`] is the one classification of a provider's failure
//! (Stages' `StagesError`, Alarm.com's `AdcError`): its stable name and
//! whether trying again later may help are written here once. The clients
//! report each call, after its retries, to an observer the service hands
//! them ([`observed`]), so an operator sees which connection is failing and
//! how.

use std::future::Future;
use std::time::Instant;

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

/// Why a call to a provider failed, whichever the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamErrorKind {
    /// The provider refused the credentials.
    Unauthorized,
    /// The provider has no such record.
    NotFound,
    /// A rule of the provider refused the request.
    Rejected,
    /// The login lacks a role or permission for this call.
    PermissionDenied,
    /// A deliberate fault the request caused.
    Fault,
    /// A fault of the provider's own side: the same request may well
    /// succeed a moment later.
    ServerFault,
    /// The provider asks to slow down.
    RateLimited,
    /// The provider could not be reached.
    Unreachable,
    /// The provider did not answer in time.
    Timeout,
    /// A failure of the provider, or an answer the protocol does not allow.
    BadAnswer,
    /// The egress policy forbids the endpoint's address: nothing was sent.
    EgressRefused,
}

impl UpstreamErrorKind {
    /// A short stable name (a metric label).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::Rejected => "rejected",
            Self::PermissionDenied => "permission_denied",
            Self::Fault => "fault",
            Self::ServerFault => "server_fault",
            Self::RateLimited => "rate_limited",
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::BadAnswer => "bad_answer",
            Self::EgressRefused => "egress_refused",
        }
    }

    /// Worth trying again later (by a job, or an import within its run; the
    /// clients retry safe calls themselves). A refusal, or a fault the
    /// request caused, is the provider's deliberate answer, so it is not; a
    /// failure of the provider's own side is.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::Unreachable
                | Self::Timeout
                | Self::BadAnswer
                | Self::ServerFault
        )
    }
}

/// A provider's error, classified.
pub trait UpstreamFailure {
    fn upstream_kind(&self) -> UpstreamErrorKind;
}

/// Runs `call` (one upstream call, retries included) and tells `observer`
/// how it ended and how long it took.
pub async fn observed<T, E: UpstreamFailure>(
    observer: Option<&dyn CallObserver>,
    provider: &'static str,
    connection: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = call.await;
    if let Some(observer) = observer {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.upstream_kind().as_str(),
        };
        let seconds = started.elapsed().as_secs_f64();
        observer.observe(provider, connection, outcome, seconds);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_that_may_pass_are_transient() {
        use UpstreamErrorKind::*;
        for kind in [RateLimited, Unreachable, Timeout, BadAnswer, ServerFault] {
            assert!(kind.is_transient(), "{kind:?}");
        }
        for kind in [
            Unauthorized,
            NotFound,
            Rejected,
            PermissionDenied,
            Fault,
            EgressRefused,
        ] {
            assert!(!kind.is_transient(), "{kind:?}");
        }
        assert_eq!(EgressRefused.as_str(), "egress_refused");
    }
}
