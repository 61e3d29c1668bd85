//! The `AdcApi` port over SOAP: Alarm.com's dealer web services
//! (`ADC-API.md`).
//!
//! Everything that knows how ADC is spoken on the wire lives here; the rest of
//! the service sees only `domain::adc::{AdcConnector, AdcApi, AdcError}`.
//! Pointing at the real dealer host is a change of the target's endpoint.
//!
//! - [`HttpAdcConnector`] is the `AdcConnector` port over the shared
//!   `upstream_http::Connector`: one pooled `reqwest::Client` and one rate
//!   limiter per connection key, shared by every client made for that key.
//! - [`HttpAdcClient`] maps each `AdcApi` call to its SOAP operation, and each
//!   failure to an `AdcError`. It retries reads only (see
//!   [`default_settings`]).
//! - The names we had to invent for operations ADC has not published are all
//!   in the `unpublished` module.

mod client;
mod connector;
mod operation;
mod settings;
mod soap;
mod transport;
mod unpublished;
mod xml;

pub use client::HttpAdcClient;
pub use connector::HttpAdcConnector;
pub use settings::default_settings;
