//! What every handler shares: the stores, the upstream connectors, the token
//! verifier, settings and metrics.

use std::sync::Arc;

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
    pub isp: Arc<dyn domain::isp::IspStore>,
    pub imports: Arc<dyn domain::import::ImportStore>,
    pub stages: Arc<dyn StagesConnector>,
    pub adc: Arc<dyn AdcConnector>,
    pub issues: Arc<dyn domain::field_issues::FieldIssueStore>,
    pub verifier: TokenVerifier,
    pub metrics: Metrics,
    /// Wakes this process's idle job workers after a change that may have
    /// enqueued work, so it starts without waiting for the next poll.
    pub jobs_wake: Arc<tokio::sync::Notify>,
}

impl AppState {
    pub fn linking(&self) -> LinkingPorts<'_> {
        LinkingPorts {
            connections: self.connections.as_ref(),
            billing: self.billing.as_ref(),
            links: self.links.as_ref(),
            stages: self.stages.as_ref(),
            issues: self.issues.as_ref(),
        }
    }

    pub fn isp_ports(&self) -> domain::isp::IspPorts<'_> {
        domain::isp::IspPorts {
            connections: self.connections.as_ref(),
            billing: self.billing.as_ref(),
            accounts: self.isp.as_ref(),
            adc: self.adc.as_ref(),
        }
    }
}
