//! A stand-in for Alarm.com's dealer SOAP web services, served over real
//! HTTP on loopback with in-memory state.
//!
//! The real services cannot be called from tests, so this simulator speaks
//! the protocol as `docs/adc-protocol.md` describes it (public names where
//! they are known, clearly marked names of our own elsewhere): SOAP 1.1 and
//! 1.2, document/literal, the `Authentication` header, faults and
//! `Success=false` results. It holds many customers and reps, applies the
//! rules the service must cope with (duplicate logins, the Builder Program
//! permission, unknown customers) and misbehaves on request (latency, 500s,
//! throttling, garbled XML, hangs, dropped connections, SOAP faults).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use adc_sim::{Sim, SimConfig};
//! let sim = Sim::start(SimConfig {
//!     username: "dealer".into(),
//!     password: "pw".into(),
//!     seed_customers: 1_000,
//!     ..SimConfig::default()
//! })
//! .await?;
//! let url = format!("{}/WebServices/CustomerManagement.asmx", sim.base_url());
//! assert_eq!(sim.state().customer_count(), 1_000);
//! sim.stop().await;
//! # Ok(()) }
//! ```

pub mod faults;
mod http;
pub mod model;
pub mod ops;
pub mod seed;
pub mod state;
pub mod store;
pub mod wsdl;
pub mod xml;

use std::net::SocketAddr;

use anyhow::Context as _;

pub use faults::{FaultKind, FaultRule};
pub use http::AUTH_FAILED;
pub use model::{Address, Customer, CustomerPatch, Permissions, Rep, RepPatch};
pub use ops::{Service, LATEST_CALLER_VERSION, OPERATIONS};
pub use state::{SimState, Stats};

/// How to start a simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port (see [`Sim::addr`]).
    pub bind: SocketAddr,
    /// The first accepted login (more via `POST /admin/users`).
    pub username: String,
    pub password: String,
    /// How many deterministic sample customers to create at start.
    pub seed_customers: usize,
    /// Fault rules in force from the start.
    pub faults: Vec<FaultRule>,
    /// What the first login may do (default: everything).
    pub permissions: Permissions,
}

impl Default for SimConfig {
    /// Loopback, a free port, `sim`/`sim`, no customers, no faults, all
    /// permissions.
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            username: "sim".to_string(),
            password: "sim".to_string(),
            seed_customers: 0,
            faults: Vec::new(),
            permissions: Permissions::default(),
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

impl Sim {
    /// Seeds, binds and starts serving on the current tokio runtime
    /// (2 workers, no signal handling).
    pub async fn start(config: SimConfig) -> anyhow::Result<Sim> {
        for rule in &config.faults {
            rule.validate()
                .map_err(|e| anyhow::anyhow!("fault rule for {:?}: {e}", rule.operation))?;
        }
        let listener = std::net::TcpListener::bind(config.bind)
            .with_context(|| format!("binding {}", config.bind))?;
        let addr = listener.local_addr()?;
        let seed_config = config.clone();
        let state = tokio::task::spawn_blocking(move || SimState::new(&seed_config))
            .await
            .context("seeding the simulator")?;
        let server = http::server(state.clone(), listener, 2)?;
        let handle = server.handle();
        let task = tokio::spawn(server);
        tracing::info!(%addr, customers = config.seed_customers, "adc-sim started");
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

    /// `http://IP:PORT`, without a trailing slash; the services are under
    /// `/WebServices/`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of one service, e.g. `http://IP:PORT/WebServices/CustomerManagement.asmx`.
    pub fn service_url(&self, service: Service) -> String {
        format!("{}{}", self.base_url(), service.path())
    }

    /// The shared state, to inspect or change records, logins and faults.
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
