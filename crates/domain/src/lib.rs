//! The crosslink model and its rules, and the ports (traits) that the store,
//! the upstream clients and the HTTP layer implement or call. No SQL, no HTTP
//! framework and no HTTP client here: `cargo tree -p domain` stays free of them.

pub mod adc;
pub mod audit;
pub mod batch;
pub mod billing;
pub mod connection;
pub mod connection_setup;
pub mod events;
pub mod field_issues;
pub mod import;
pub mod isp;
pub mod jobs;
pub mod link;
pub mod link_sync;
pub mod linking;
pub mod migration;
pub mod operations;
pub mod reconcile;
pub mod release;
pub mod secret;
pub mod send_to_billing;
pub mod stages;
pub mod stages_tab;
pub mod store;
pub mod sync;
pub mod tenancy;
pub mod test_mode;
pub mod upstream;
pub mod validation;
pub mod wizard;

pub use secret::Secret;

use serde::{Deserialize, Serialize};

/// One page of a list; `next_page_token` is opaque and absent on the last page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_page_token: self.next_page_token,
        }
    }
}
