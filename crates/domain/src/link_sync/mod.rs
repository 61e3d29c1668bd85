//! Syncing a link's two records (S10, S11, S18, S19, B5): the use cases that
//! read a billing record and its Stages record, bring them together and
//! write the result to both sides. `sync`, beside this module, is the pure
//! field-by-field merge they all go through (no I/O); this module is the I/O
//! around it.
//!
//! - `on_request`: the diff of a link, record sync and account sync, asked
//!   for by a user and made as that user.
//! - `settle`: the rule the automatic syncs share: each field settled by
//!   `sync::decide`, so both directions agree on who wins; fields that did
//!   not sync (held conflicts, refusals) are kept on the link.
//! - `auto_sync`: the Auto Sync push a billing change causes.
//! - `callback`: the Stages callbacks that bring Stages' changes to billing.
//! - `jobs`: the jobs that run those two in the background.
//! - `sides` and `write`: reading a link's two records, and writing to them.
//!
//! All of them merge against the link's last synced values as the base,
//! which is also how a callback echoing our own push is recognised.

mod auto_sync;
mod callback;
pub mod jobs;
mod on_request;
mod settle;
mod sides;
mod write;

pub use auto_sync::{auto_sync_push, AutoSyncOutcome};
pub use callback::{apply_stages_callback, CallbackOutcome, CallbackResult};
pub use on_request::{account_sync, link_diff, sync_link, LinkDiff, SyncOutcome};
pub use settle::Settled;
pub use sides::{pushed_snapshot, LinkToSettle, LinkedRecord};
