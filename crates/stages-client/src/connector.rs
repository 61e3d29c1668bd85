//! The Stages port over the shared `upstream_http::Connector` (one HTTP
//! client, one rate limiter per connection, the observer of the calls).
//!
//! Clients are cheap and made per call site; the connection pool and the
//! per-connection request budget must outlive them, so both live there.

use std::sync::Arc;

use domain::stages::{StagesApi, StagesConnector};
use domain::upstream::{CallObserver, UpstreamTarget};
use upstream_http::Connector;

use crate::client::HttpStagesClient;

/// Makes [`HttpStagesClient`]s that share the connector's pool and, per
/// connection key, its rate limiter. Made from Stages' settings:
/// `HttpStagesConnector(Connector::new(default_settings())?)`.
#[derive(Debug)]
pub struct HttpStagesConnector(pub Connector<dyn CallObserver>);

impl StagesConnector for HttpStagesConnector {
    fn connect(&self, target: UpstreamTarget) -> Arc<dyn StagesApi> {
        Arc::new(HttpStagesClient::new(&self.0, target))
    }
}
