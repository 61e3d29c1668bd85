//! The `StagesApi` port over HTTP (docs: `STAGES-API.md`).
//!
//! Everything that knows how Stages is spoken on the wire lives here, so that
//! the real protocol can replace ours in this crate alone. The rest of the
//! service sees only `domain::stages::{StagesConnector, StagesApi, StagesError}`.
//!
//! - [`HttpStagesConnector`] is the `StagesConnector` port over the shared
//!   `upstream_http::Connector`: one pooled `reqwest::Client` and one rate
//!   limiter per connection key, shared by every client made for that key.
//! - [`HttpStagesClient`] maps each `StagesApi` call to its route, and each
//!   failure to a `StagesError` the service can act on. It retries only calls
//!   that are safe to repeat (see [`default_settings`]).

mod client;
mod connector;
mod settings;
mod transport;

pub use client::HttpStagesClient;
pub use connector::HttpStagesConnector;
pub use settings::default_settings;
