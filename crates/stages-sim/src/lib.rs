//! A stand-in for a Stages central station, served over real HTTP on
//! loopback with in-memory state.
//!
//! The real Stages data API is not available to us, so the protocol in
//! `docs/stages-protocol.md` is ours; this simulator is its reference
//! implementation. Tests start it in-process, the local demo runs the binary.
//! It enforces the rules the service must cope with (unique transmitter
//! codes, no test on a device in alarm, ...) and can misbehave on request
//! (latency, 5xx, 429, dropped connections, hangs, garbled bodies).
//! Like Stages, it calls the billing integration back when linked records
//! change ([`callbacks`]; target set with `PUT /admin/callbacks` or
//! [`SimState::set_callback_target`]).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use stages_sim::{Sim, SimConfig};
//! let sim = Sim::start(SimConfig {
//!     bind: "127.0.0.1:0".parse()?,
//!     username: "u".into(),
//!     password: "p".into(),
//!     seed_sites: 3,
//!     faults: vec![],
//! })
//! .await?;
//! let url = sim.base_url(); // "http://127.0.0.1:PORT"
//! assert_eq!(sim.state().site_count(), 3);
//! sim.stop().await;
//! # Ok(()) }
//! ```

pub mod callbacks;
pub mod db;
pub mod error;
pub mod faults;
mod http;
pub mod lookups;
pub mod seed;
pub mod state;
pub mod wire;

use std::net::SocketAddr;

use anyhow::Context as _;

pub use callbacks::{
    Callback, CallbackAttempt, CallbackEvent, CallbackReply, CallbackStatus, CallbackTarget,
    SendToBillingTarget,
};
pub use db::{Db, SiteQuery};
pub use error::ApiError;
pub use faults::{FaultKind, FaultRule};
pub use state::{AppliedWrite, SimState, Stats};

/// How to start a simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port (see [`Sim::addr`]).
    pub bind: SocketAddr,
    /// The first accepted credentials (more via `POST /admin/users`).
    pub username: String,
    pub password: String,
    /// How many sample sites to create at start (deterministic).
    pub seed_sites: usize,
    /// Fault rules in force from the start.
    pub faults: Vec<FaultRule>,
}

impl Default for SimConfig {
    /// Loopback, a free port, `sim`/`sim`, no sites, no faults.
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            username: "sim".to_string(),
            password: "sim".to_string(),
            seed_sites: 0,
            faults: Vec::new(),
        }
    }
}

/// A running simulator. Dropping it stops the server too.
#[derive(Debug)]
pub struct Sim {
    addr: SocketAddr,
    state: SimState,
    handle: actix_web::dev::ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// The name the brief of other crates may use.
pub type RunningSim = Sim;

/// Starts a simulator on the current tokio runtime.
pub async fn start(config: SimConfig) -> anyhow::Result<Sim> {
    Sim::start(config).await
}

impl Sim {
    /// Binds, seeds and starts serving on the current tokio runtime.
    pub async fn start(config: SimConfig) -> anyhow::Result<Sim> {
        for rule in &config.faults {
            rule.validate()
                .map_err(|e| anyhow::anyhow!("fault rule {:?}: {e}", rule.route))?;
        }
        let listener = std::net::TcpListener::bind(config.bind)
            .with_context(|| format!("binding {}", config.bind))?;
        let addr = listener.local_addr()?;
        let state = SimState::new(&config);
        // Callback delivery runs on the caller's runtime, not on a server worker's.
        state.start_callback_delivery();
        let server = http::server(state.clone(), listener, 2)?;
        let handle = server.handle();
        let task = tokio::spawn(server);
        tracing::info!(%addr, sites = config.seed_sites, "stages-sim started");
        Ok(Sim {
            addr,
            state,
            handle,
            task: Some(task),
        })
    }

    /// The bound address (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, without a trailing slash; the protocol is under `/api/v1/`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state, to inspect or change records, faults and users.
    pub fn state(&self) -> &SimState {
        &self.state
    }

    /// Stops the server (open connections are closed) and waits for it.
    pub async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if self.task.is_some() {
            // The command is sent now; nobody needs to wait for the result.
            drop(self.handle.stop(false));
        }
    }
}
