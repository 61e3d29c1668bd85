//! The Stages tab's live views (S14): a site's devices, notes and contacts,
//! a device's configurations, and the history of a site or a device, newest
//! first with date and test filters; all read from Stages when asked.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::connection::ConnectionId;
use crate::linking::LinkingPorts;
use crate::operations::{upstream, OperationError};
use crate::stages::{DeviceId, SiteNo};
use crate::stages::{
    StagesConfiguration, StagesContact, StagesDevice, StagesHistoryEntry, StagesNote,
};
use crate::tenancy::Caller;
use crate::validation::ValidationError;

use super::open;

/// A live list read from Stages.
pub enum SiteView {
    Devices,
    Notes,
    Contacts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SiteViewItems {
    Devices(Vec<StagesDevice>),
    Notes(Vec<StagesNote>),
    Contacts(Vec<StagesContact>),
}

pub async fn site_view(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &SiteNo,
    view: SiteView,
) -> Result<SiteViewItems, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    let up = upstream(&connection);
    Ok(match view {
        SiteView::Devices => SiteViewItems::Devices(api.list_devices(site_no).await.map_err(up)?),
        SiteView::Notes => SiteViewItems::Notes(api.list_notes(site_no).await.map_err(up)?),
        SiteView::Contacts => {
            SiteViewItems::Contacts(api.list_contacts(site_no).await.map_err(up)?)
        }
    })
}

pub async fn device_configurations(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &DeviceId,
) -> Result<Vec<StagesConfiguration>, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    api.list_configurations(device_id)
        .await
        .map_err(upstream(&connection))
}

/// Which history entries to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only what was received while the device was on test.
    pub tests_only: bool,
}

impl HistoryQuery {
    pub fn new(
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        tests_only: bool,
    ) -> Result<Self, ValidationError> {
        if let (Some(from), Some(to)) = (from, to) {
            if to < from {
                return Err(ValidationError::field("to", "must not be before from"));
            }
        }
        Ok(Self {
            from,
            to,
            tests_only,
        })
    }

    /// The entries that pass, newest first (ties by id, newest first), so the
    /// first page of a busy device holds its latest events.
    pub fn apply(&self, mut entries: Vec<StagesHistoryEntry>) -> Vec<StagesHistoryEntry> {
        entries.retain(|h| {
            self.from.is_none_or(|f| h.occurred_at >= f)
                && self.to.is_none_or(|t| h.occurred_at <= t)
                && (!self.tests_only || h.on_test)
        });
        entries.sort_by(|a, b| {
            b.occurred_at
                .cmp(&a.occurred_at)
                .then_with(|| id_number(&b.history_id).cmp(&id_number(&a.history_id)))
                .then_with(|| b.history_id.cmp(&a.history_id))
        });
        entries
    }
}

/// The number in an id like `H-12`, so `H-10` sorts after `H-9`.
fn id_number(id: &str) -> Option<u64> {
    let digits: String = id.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub async fn site_history(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    site_no: &SiteNo,
    query: &HistoryQuery,
) -> Result<Vec<StagesHistoryEntry>, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    let history = api
        .site_history(site_no, query.from, query.to)
        .await
        .map_err(upstream(&connection))?;
    Ok(query.apply(history))
}

pub async fn device_history(
    ports: LinkingPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
    device_id: &DeviceId,
    query: &HistoryQuery,
) -> Result<Vec<StagesHistoryEntry>, OperationError> {
    let (connection, api) = open(ports, caller, connection_id).await?;
    let mut history = api
        .device_history(device_id, query.from, query.to)
        .await
        .map_err(upstream(&connection))?;
    // Only this device's entries, whatever Stages sends along.
    history.retain(|h| *device_id == h.device_id);
    Ok(query.apply(history))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::HistoryKind;

    fn entry(id: &str, at: &str, on_test: bool) -> StagesHistoryEntry {
        StagesHistoryEntry {
            history_id: id.into(),
            device_id: "D-1".into(),
            site_no: SiteNo::parse("10001").unwrap(),
            occurred_at: at.parse().unwrap(),
            kind: HistoryKind::Signal,
            event_code: "E130".into(),
            description: String::new(),
            point: None,
            on_test,
        }
    }

    #[test]
    fn history_is_newest_first_and_filtered() {
        let entries = vec![
            entry("H-9", "2025-01-01T10:00:00Z", false),
            entry("H-10", "2025-01-01T10:00:00Z", true),
            entry("H-11", "2025-01-03T10:00:00Z", true),
            entry("H-2", "2025-01-02T10:00:00Z", false),
        ];
        let ids = |v: Vec<StagesHistoryEntry>| -> Vec<String> {
            v.into_iter().map(|h| h.history_id).collect()
        };
        let all = HistoryQuery::default().apply(entries.clone());
        assert_eq!(ids(all), ["H-11", "H-2", "H-10", "H-9"]);
        let tests = HistoryQuery::new(None, None, true)
            .unwrap()
            .apply(entries.clone());
        assert_eq!(ids(tests), ["H-11", "H-10"]);
        let window = HistoryQuery::new(
            Some("2025-01-01T12:00:00Z".parse().unwrap()),
            Some("2025-01-02T10:00:00Z".parse().unwrap()),
            false,
        )
        .unwrap()
        .apply(entries);
        assert_eq!(ids(window), ["H-2"]);
        let backwards = HistoryQuery::new(
            Some("2025-01-02T00:00:00Z".parse().unwrap()),
            Some("2025-01-01T00:00:00Z".parse().unwrap()),
            false,
        );
        assert_eq!(backwards.unwrap_err().errors[0].field, "to");
    }
}
