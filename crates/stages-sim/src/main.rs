//! `stages-sim`: the Stages simulator as a process, for the local demo and
//! for tests that want a real separate server.

use std::io::Write as _;
use std::net::SocketAddr;

use clap::Parser;
use stages_sim::{CallbackTarget, FaultRule, Sim, SimConfig};

const FAULT_HELP: &str = "\
Fault rule, repeatable: ROUTE=KIND[:ARG][,times=N][,probability=P]

ROUTE is `METHOD /path`, `* /path` or `/path`; a trailing * in the path
matches any rest (`* /api/v1/sites*`). KIND is one of:
  latency:MS          answer MS milliseconds late (adds up with other latency rules)
  error[:STATUS]      answer STATUS (5xx, default 503) with the error JSON
  rate_limit[:SECS]   answer 429 with Retry-After: SECS (default 1)
  drop                close the connection without an answer
  timeout             never answer
  malformed           answer 200 with a body that is not JSON
times=N applies the rule to the next N matching requests only;
probability=P (or p=P) applies it to a matching request with chance P.
Examples:
  --fault 'GET /api/v1/ping=latency:3000'
  --fault '* /api/v1/*=error:503,times=2'
  --fault 'POST /api/v1/sites=rate_limit:2'";

/// An in-memory Stages simulator serving the crosslink Stages protocol under /api/v1/.
///
/// Prints `stages-sim listening on http://IP:PORT` on stdout once it accepts
/// connections; logs go to stderr (RUST_LOG sets the level).
#[derive(Debug, Parser)]
#[command(name = "stages-sim", version, about, long_about = None)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "STAGES_SIM_BIND", default_value = "127.0.0.1:8089")]
    bind: SocketAddr,
    /// Username accepted by HTTP Basic auth (more via POST /admin/users).
    #[arg(long, env = "STAGES_SIM_USERNAME")]
    username: String,
    /// Password of that user.
    #[arg(long, env = "STAGES_SIM_PASSWORD")]
    password: String,
    /// Number of deterministic sample sites to create at start.
    #[arg(long, default_value_t = 0)]
    seed_sites: usize,
    #[arg(long = "fault", value_name = "SPEC", help = "Fault rule, repeatable (see --help)", long_help = FAULT_HELP)]
    faults: Vec<FaultRule>,
    /// Where to send callbacks (e.g. http://127.0.0.1:PORT/v1/webhooks/stages/CONNECTION_ID);
    /// none are sent without it (see also PUT /admin/callbacks).
    #[arg(long, env = "STAGES_SIM_CALLBACK_URL", value_name = "URL")]
    callback_url: Option<String>,
    /// HTTP Basic username for callbacks.
    #[arg(
        long,
        env = "STAGES_SIM_CALLBACK_USERNAME",
        default_value = "",
        requires = "callback_url"
    )]
    callback_username: String,
    /// HTTP Basic password for callbacks.
    #[arg(
        long,
        env = "STAGES_SIM_CALLBACK_PASSWORD",
        default_value = "",
        requires = "callback_url"
    )]
    callback_password: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let args = Args::parse();
    let callback = args
        .callback_url
        .map(|url| CallbackTarget::new(url, args.callback_username, args.callback_password));
    if let Some(target) = &callback {
        target
            .validate()
            .map_err(|e| anyhow::anyhow!("--callback-{e}"))?;
    }
    let sim = Sim::start(SimConfig {
        bind: args.bind,
        username: args.username,
        password: args.password,
        seed_sites: args.seed_sites,
        faults: args.faults,
    })
    .await?;
    if let Some(target) = callback {
        sim.state()
            .set_callback_target(target)
            .map_err(|e| anyhow::anyhow!("--callback-{e}"))?;
    }

    let mut out = std::io::stdout().lock();
    writeln!(out, "stages-sim listening on {}", sim.base_url())?;
    out.flush()?;
    drop(out);

    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping");
    sim.stop().await;
    Ok(())
}
