//! What every outbound HTTP client of the service shares, so a rule about
//! calling out (the egress policy, B13) is written once: the webhook deliveries of `api`, and the
//! Stages and Alarm.com clients.
//!
//! - [`EgressPolicy`]: which addresses a call made on a tenant's behalf may
//!   reach. Loopback, private, link-local (cloud metadata), unique-local,
//!   multicast, unspecified, broadcast and other special-purpose ranges are
//!   refused unless the operator allows a range (`egress.allow`); an IPv6
//!   address that carries an IPv4 one (mapped, compatible, NAT64, 6to4) is
//!   judged by the IPv4 inside. [`classify`] is the pure table behind it.
//! - [`apply`]: puts the policy on a `reqwest::ClientBuilder`. The check is
//!   made on the addresses actually connected to: a resolver that drops
//!   refused answers, so a DNS answer that changes after a URL was checked
//!   gets nowhere. reqwest does not resolve IP literals, so clients also call
//!   [`EgressPolicy::check_literal`] before sending.
//! - [`EgressPolicy::check_url`]: the early check, when a URL is stored.
//! - [`excerpt`]: the most of an upstream answer that may be shown to anyone.
//!
//! And what the two upstream clients (Stages over JSON, Alarm.com over SOAP)
//! share, so that each keeps only its wire format:
//!
//! - [`Connector`]: the pooled HTTP client (timeouts, egress policy, no
//!   proxy, no redirects), one rate limiter per connection key and the
//!   observer of the calls, tuned by [`ClientSettings`]; a [`Channel`] per
//!   connection sends requests and names each failure with a typed
//!   [`TransportError`] (egress refused, could not connect, timed out,
//!   connection broken). A client crate adds its defaults and its port.
//! - [`RetryPolicy`]: only calls the client calls safe are repeated, after
//!   a [`Failure`] that says another attempt may help; exponential backoff
//!   with full jitter, `Retry-After` honoured up to the cap
//!   ([`parse_retry_after`]).
//!
//! The simulators share none of this: they stay independent of the clients.

mod connector;
mod excerpt;
mod policy;
mod resolve;
mod retry;

pub use connector::{
    Answer, BuildError, Channel, ClientSettings, Connector, TransportError, Upstream,
};
pub use excerpt::{excerpt, excerpt_bytes, EXCERPT_CHARS};
pub use policy::{classify, embedded_ipv4, AllowListError, EgressPolicy, Refused};
pub use resolve::{apply, refusal_in, PolicyResolver};
pub use retry::{ceil_secs, parse_retry_after, Failure, RetryPolicy};
