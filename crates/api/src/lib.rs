//! The crosslink HTTP service: routes, auth, problem+json, OpenAPI, settings
//! and wiring. Handlers parse, authorise, call one domain operation, and map
//! the answer; everything else lives in the crates this one wires together.

pub mod app;
pub mod auth;
pub mod callback_auth;
pub mod config;
pub mod delivery;
pub mod dto;
pub mod extract;
pub mod keys;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod openapi_examples;
pub mod openapi_problems;
pub mod problem;
pub mod problem_codes;
pub mod provider_payloads;
pub mod rate_limit;
pub mod retention;
pub mod routes;
pub mod state;
pub mod worker;

/// 32 random bytes, base64url: inbound callback secrets and the like.
pub fn random_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Starts tracing: `RUST_LOG` when set, else `log.level`; JSON lines when `log.format = json`.
pub fn init_tracing(settings: &config::Settings) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if settings.log.format.eq_ignore_ascii_case("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
