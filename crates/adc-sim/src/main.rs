//! `adc-sim`: the Alarm.com dealer web services simulator as a process, for
//! the local demo and for tests that want a real separate server.

use std::io::Write as _;
use std::net::SocketAddr;

use adc_sim::{FaultRule, Permissions, Sim, SimConfig};
use clap::Parser;

const FAULT_HELP: &str = "\
Fault rule, repeatable: OP=KIND[:ARG][,times=N][,probability=P]

OP is an operation name (GetCustomerInfo_V2), Service/* (CustomerManagement/*),
WSDL (the ?WSDL pages) or * (everything). KIND is one of:
  latency:MS        answer MS milliseconds late (adds up with other latency rules)
  http_500          HTTP 500 with an HTML error page (not a SOAP fault)
  throttle[:SECS]   HTTP 503 with Retry-After: SECS (default 1)
  malformed         HTTP 200 with a truncated, ill-formed XML body
  timeout           never answer
  drop              close the connection without an answer
  fault:TEXT        a SOAP fault (soap:Server) with faultstring TEXT
  bad_credentials   the authentication fault, whatever the credentials
times=N applies the rule to the next N matching requests only;
probability=P (or p=P) applies it to a matching request with chance P.
Examples:
  --fault 'GetCustomerInfo_V2=http_500,probability=0.2'
  --fault '*=latency:250'
  --fault 'CreateCustomer=fault:Server busy, try later,times=2'";

/// An in-memory simulator of the Alarm.com dealer SOAP services
/// (CustomerManagement.asmx and DealerManagement.asmx under /WebServices/).
///
/// Prints `adc-sim listening on http://IP:PORT` on stdout once it accepts
/// connections; logs go to stderr (RUST_LOG sets the level).
#[derive(Debug, Parser)]
#[command(name = "adc-sim", version, about, long_about = None)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "ADC_SIM_BIND", default_value = "127.0.0.1:8090")]
    bind: SocketAddr,
    /// User accepted in the Authentication header (more via POST /admin/users).
    #[arg(long, env = "ADC_SIM_USERNAME")]
    username: String,
    /// Password of that user.
    #[arg(long, env = "ADC_SIM_PASSWORD")]
    password: String,
    /// Number of deterministic sample customers to create at start.
    #[arg(long, default_value_t = 0)]
    seed_customers: usize,
    /// Start without the Builder Program permission.
    #[arg(long)]
    no_builder_program: bool,
    /// Start without the billing permission.
    #[arg(long)]
    no_billing: bool,
    #[arg(long = "fault", value_name = "SPEC", help = "Fault rule, repeatable (see --help)", long_help = FAULT_HELP)]
    faults: Vec<FaultRule>,
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
    let sim = Sim::start(SimConfig {
        bind: args.bind,
        username: args.username,
        password: args.password,
        seed_customers: args.seed_customers,
        faults: args.faults,
        permissions: Permissions {
            builder_program: !args.no_builder_program,
            billing: !args.no_billing,
        },
    })
    .await?;

    let mut out = std::io::stdout().lock();
    writeln!(out, "adc-sim listening on {}", sim.base_url())?;
    out.flush()?;
    drop(out);

    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping");
    sim.stop().await;
    Ok(())
}
