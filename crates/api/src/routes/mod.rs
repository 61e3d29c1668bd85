//! The HTTP routes, one module per resource, each handler beside its OpenAPI annotation.

pub mod audit;
pub mod batches;
pub mod billing;
pub mod conflicts;
pub mod connections;
pub mod docs;
pub mod events;
pub mod health;
pub mod imports;
pub mod isp;
pub mod jobs;
pub mod links;
pub mod provider_webhooks;
pub mod providers;
pub mod stages;
pub mod stages_tab;
pub mod stages_tab_edits;
pub mod sync;
pub mod webhooks;
pub mod wizard;
