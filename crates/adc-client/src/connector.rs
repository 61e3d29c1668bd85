//! The Alarm.com port over the shared `upstream_http::Connector` (one HTTP
//! client, one rate limiter per connection, the observer of the calls).
//!
//! Clients are cheap and made per call site; the connection pool and the
//! per-connection request budget must outlive them, so both live there.

use std::sync::Arc;

use domain::adc::{AdcApi, AdcConnector};
use domain::upstream::{CallObserver, UpstreamTarget};
use upstream_http::Connector;

use crate::client::HttpAdcClient;

/// Makes [`HttpAdcClient`]s that share the connector's pool and, per
/// connection key, its rate limiter. Made from Alarm.com's settings:
/// `HttpAdcConnector(Connector::new(default_settings())?)`.
#[derive(Debug)]
pub struct HttpAdcConnector(pub Connector<dyn CallObserver>);

impl AdcConnector for HttpAdcConnector {
    fn connect(&self, target: UpstreamTarget) -> Arc<dyn AdcApi> {
        Arc::new(HttpAdcClient::new(&self.0, target))
    }
}
