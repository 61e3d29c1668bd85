//! Connections (S1, S2): the routes of CRUD, dealer and per-user upstream
//! credentials, the inbound credential Stages calls back with, and the
//! connection test. The rules are `domain::connection_setup`'s; each
//! submodule holds one group of handlers with its request and answer types.

mod credentials;
mod inbound;
mod records;
mod upstream;

use actix_web::web;
use domain::connection_setup::{ConnectionPorts, SetupError};

pub use credentials::*;
pub use inbound::*;
pub use records::*;
pub use upstream::*;

use crate::problem::ApiError;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Custom methods (`{id}:verb`) first: the plain `{id}` pattern would match them too.
    cfg.route(
        "/connections/{connection_id}:test",
        web::post().to(test_connection),
    )
    .route(
        "/connections/{connection_id}/inbound-credentials:rotate",
        web::post().to(rotate_inbound_credentials),
    )
    .service(
        web::resource("/connections")
            .route(web::get().to(list_connections))
            .route(web::post().to(create_connection)),
    )
    .service(
        web::resource("/connections/{connection_id}")
            .route(web::get().to(get_connection))
            .route(web::patch().to(update_connection))
            .route(web::delete().to(delete_connection)),
    )
    .service(
        web::resource("/connections/{connection_id}/credentials/me")
            .route(web::put().to(put_my_credentials))
            .route(web::get().to(get_my_credentials))
            .route(web::delete().to(delete_my_credentials)),
    )
    .route(
        "/connections/{connection_id}/credentials/dealer",
        web::put().to(put_dealer_credentials),
    )
    .route(
        "/connections/{connection_id}/inbound-credentials",
        web::get().to(get_inbound_credentials),
    )
    .route(
        "/connections/{connection_id}/service-plans",
        web::get().to(service_plans),
    );
}

/// A store failure of a request about one connection: "not found" names it.
fn not_found_as_connection(e: domain::store::StoreError) -> ApiError {
    domain::connection_setup::missing_connection(e).into()
}

/// The ports the connection use cases reach.
fn ports(state: &AppState) -> ConnectionPorts<'_> {
    ConnectionPorts {
        connections: state.connections.as_ref(),
        stages: state.stages.as_ref(),
        adc: state.adc.as_ref(),
    }
}

impl From<SetupError> for ApiError {
    fn from(e: SetupError) -> Self {
        match e {
            SetupError::DealerAuthMode { connection } => ApiError::conflict(
                "dealer_auth_mode",
                format!(
                    "connection '{connection}' uses one dealer credential, not per-user ones; an admin sets it with PUT .../credentials/dealer"
                ),
            ),
            SetupError::NoOwnCredential => ApiError::not_found(SetupError::NoOwnCredential.to_string()),
            SetupError::Operation(e) => e.into(),
        }
    }
}
