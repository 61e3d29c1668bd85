//! Builder Programs (I5): the programs of an Alarm.com account, kept briefly
//! per connection, and the check that a program chosen is one of them.

use super::{not_found_as, provider_error, IspPorts};
use crate::adc::{AdcApi, AdcBuilderProgram};
use crate::connection::{Connection, ConnectionId};
use crate::operations::OperationError;
use crate::tenancy::Caller;
use crate::upstream::{adc_client, ActingAs};
use crate::validation::ValidationError;

/// The Builder Programs of each connection, kept briefly (I5): the list
/// changes rarely, and a form's dropdown and the check of the program chosen
/// ask for it one after the other.
pub struct BuilderProgramCache {
    ttl: std::time::Duration,
    entries: std::sync::Mutex<
        std::collections::HashMap<ConnectionId, (std::time::Instant, Vec<AdcBuilderProgram>)>,
    >,
}

impl BuilderProgramCache {
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            ttl,
            entries: std::sync::Mutex::default(),
        }
    }

    fn get(&self, id: ConnectionId) -> Option<Vec<AdcBuilderProgram>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&id)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, list)| list.clone())
    }

    fn put(&self, id: ConnectionId, list: Vec<AdcBuilderProgram>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        entries.insert(id, (std::time::Instant::now(), list));
    }
}

impl Default for BuilderProgramCache {
    fn default() -> Self {
        Self::new(std::time::Duration::from_secs(60))
    }
}

/// The Builder Programs of an Alarm.com connection, from the cache or from
/// Alarm.com (`GetBuilderProgramList`).
pub async fn builder_programs(
    ports: &IspPorts<'_>,
    caller: &Caller,
    connection_id: ConnectionId,
) -> Result<Vec<AdcBuilderProgram>, OperationError> {
    let connection = ports
        .connections
        .connection(&caller.dealer, connection_id)
        .await
        .map_err(not_found_as("no such connection".into()))?;
    let api = adc_client(ports.connections, ports.adc, ActingAs::Dealer, &connection).await?;
    programs_of(ports, &connection, api.as_ref()).await
}

pub(super) async fn programs_of(
    ports: &IspPorts<'_>,
    connection: &Connection,
    api: &dyn AdcApi,
) -> Result<Vec<AdcBuilderProgram>, OperationError> {
    if let Some(list) = ports.builder_programs.get(connection.id) {
        return Ok(list);
    }
    let list = api
        .builder_programs()
        .await
        .map_err(|e| provider_error(connection, e))?;
    ports.builder_programs.put(connection.id, list.clone());
    Ok(list)
}

/// Whether `id` is one of `programs`; the refusal lists the choices.
pub fn check_builder_program(
    id: i64,
    programs: &[AdcBuilderProgram],
) -> Result<(), ValidationError> {
    if programs.iter().any(|p| p.id == id) {
        return Ok(());
    }
    let known = programs
        .iter()
        .map(|p| format!("{} ({})", p.id, p.name))
        .collect::<Vec<_>>()
        .join(", ");
    Err(ValidationError::field(
        "builder_program_id",
        if known.is_empty() {
            format!("{id} is not a Builder Program of the Alarm.com account, which has none")
        } else {
            format!("{id} is not a Builder Program of the Alarm.com account: {known}")
        },
    ))
}
