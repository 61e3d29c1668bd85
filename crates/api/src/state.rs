//! What every handler shares: the stores, the upstream connectors, the token
//! verifier, settings and metrics.

use std::sync::Arc;
use std::time::Duration;

use domain::adc::AdcConnector;
use domain::linking::LinkingPorts;
use domain::stages::StagesConnector;
use domain::store::{
    AuditStore, BillingStore, ConnectionStore, EventStore, IdempotencyStore, InboundLookup,
    InboxStore, JobStore, LinkStore, WebhookStore,
};

use crate::auth::TokenVerifier;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::problem::{ApiError, ApiResult};

pub struct AppState {
    pub settings: Settings,
    pub store: link_store::Store,
    pub connections: Arc<dyn ConnectionStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub billing: Arc<dyn BillingStore>,
    pub links: Arc<dyn LinkStore>,
    pub audit: Arc<dyn AuditStore>,
    pub jobs: Arc<dyn JobStore>,
    pub events: Arc<dyn EventStore>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub inbox: Arc<dyn InboxStore>,
    pub inbound: Arc<dyn InboundLookup>,
    /// Stages callbacks' credentials as last read, per connection.
    pub callback_credentials: Arc<crate::callback_auth::CallbackCredentials>,
    pub isp: Arc<dyn domain::isp::IspStore>,
    pub imports: Arc<dyn domain::import::ImportStore>,
    pub batches: Arc<dyn domain::batch::BatchStore>,
    pub stages: Arc<dyn StagesConnector>,
    pub adc: Arc<dyn AdcConnector>,
    /// Where outbound calls may go (`egress.allow`); the Stages and
    /// Alarm.com connectors carry the same policy.
    pub egress: upstream_http::EgressPolicy,
    /// Sends webhook deliveries, under `egress`.
    pub webhook_http: reqwest::Client,
    pub issues: Arc<dyn domain::field_issues::FieldIssueStore>,
    pub verifier: TokenVerifier,
    pub metrics: Metrics,
    /// Per-dealer request limits (`None`: off); shared by the state's copies.
    pub dealer_limit: Option<Arc<crate::rate_limit::DealerLimiter>>,
    /// Wakes this process's job runner after a change that may have enqueued
    /// work or let a waiting job go (the end of a job of its key), so it
    /// starts without waiting for the next poll. `notify_one`: a wake that
    /// comes while the runner is claiming is kept for its next wait.
    pub jobs_wake: Arc<tokio::sync::Notify>,
    /// Builder Program lists, kept a minute (shared by every store's state).
    pub builder_programs: Arc<domain::isp::BuilderProgramCache>,
}

impl AppState {
    /// Every port on `store`.
    pub fn new(
        settings: Settings,
        store: link_store::Store,
        stages: Arc<dyn StagesConnector>,
        adc: Arc<dyn AdcConnector>,
        egress: upstream_http::EgressPolicy,
        verifier: TokenVerifier,
        metrics: Metrics,
    ) -> Self {
        Self {
            webhook_http: crate::delivery::client(&egress),
            egress,
            connections: Arc::new(store.clone()),
            idempotency: Arc::new(store.clone()),
            billing: Arc::new(store.clone()),
            links: Arc::new(store.clone()),
            audit: Arc::new(store.clone()),
            jobs: Arc::new(store.clone()),
            events: Arc::new(store.clone()),
            webhooks: Arc::new(store.clone()),
            inbox: Arc::new(store.clone()),
            inbound: Arc::new(store.clone()),
            callback_credentials: Arc::default(),
            imports: Arc::new(store.clone()),
            batches: Arc::new(store.clone()),
            issues: Arc::new(store.clone()),
            isp: Arc::new(store.clone()),
            store,
            stages,
            adc,
            verifier,
            metrics,
            jobs_wake: Arc::new(tokio::sync::Notify::new()),
            dealer_limit: crate::rate_limit::DealerLimiter::from_settings(&settings.rate_limit)
                .map(Arc::new),
            builder_programs: Arc::default(),
            settings,
        }
    }

    /// The same state on another store (another pool of the same database):
    /// the upstream connectors, their rate limits, the metrics and the
    /// wake-up are shared.
    pub fn with_store(&self, store: link_store::Store) -> Self {
        Self {
            jobs_wake: self.jobs_wake.clone(),
            dealer_limit: self.dealer_limit.clone(),
            builder_programs: self.builder_programs.clone(),
            webhook_http: self.webhook_http.clone(),
            ..Self::new(
                self.settings.clone(),
                store,
                self.stages.clone(),
                self.adc.clone(),
                self.egress.clone(),
                self.verifier.clone(),
                self.metrics.clone(),
            )
        }
    }

    /// Refuses (422 `egress_refused`, naming `field`) a URL about to be
    /// stored that the egress policy already refuses: an IP literal, or a
    /// name resolving only to refused addresses. Calls are checked again on
    /// the address they connect to, so a name that changes later gets nowhere.
    pub async fn check_egress(&self, field: &str, url: &url::Url) -> ApiResult<()> {
        /// Long enough for a working resolver; a slow one does not hold the request.
        const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
        self.egress
            .check_url(url, RESOLVE_TIMEOUT)
            .await
            .map_err(|refused| ApiError::egress_refused(field, &refused))
    }

    pub fn linking(&self) -> LinkingPorts<'_> {
        LinkingPorts {
            connections: self.connections.as_ref(),
            billing: self.billing.as_ref(),
            links: self.links.as_ref(),
            stages: self.stages.as_ref(),
            issues: self.issues.as_ref(),
            audit: self.audit.as_ref(),
        }
    }

    /// Batches (B7): the single operations' ports, the queue, and how a
    /// failed item's problem reads (the same document its single operation answers).
    pub fn batch_ports(&self) -> domain::batch::BatchPorts<'_> {
        domain::batch::BatchPorts {
            linking: self.linking(),
            jobs: self.jobs.as_ref(),
            batches: self.batches.as_ref(),
            describe: crate::problem::describe_operation_error,
        }
    }

    pub fn isp_ports(&self) -> domain::isp::IspPorts<'_> {
        domain::isp::IspPorts {
            connections: self.connections.as_ref(),
            billing: self.billing.as_ref(),
            accounts: self.isp.as_ref(),
            adc: self.adc.as_ref(),
            builder_programs: self.builder_programs.as_ref(),
        }
    }
}
