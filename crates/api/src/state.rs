//! What every handler shares: the store, the upstream connectors, the token
//! verifier, settings and metrics.

use std::sync::Arc;

use domain::stages::StagesConnector;
use domain::store::{ConnectionStore, IdempotencyStore};

use crate::auth::TokenVerifier;
use crate::config::Settings;
use crate::metrics::Metrics;

pub struct AppState {
    pub settings: Settings,
    pub store: link_store::Store,
    pub connections: Arc<dyn ConnectionStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub stages: Arc<dyn StagesConnector>,
    pub verifier: TokenVerifier,
    pub metrics: Metrics,
}
