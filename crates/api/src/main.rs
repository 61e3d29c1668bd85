//! The `crosslink` command: serve, migrate, openapi, token, config check.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use api::config::Settings;
use clap::{Parser, Subcommand};
use domain::tenancy::Role;

/// mimalloc rather than glibc's allocator: the service allocates and frees
/// many small objects a request (see the workspace Cargo.toml for figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "crosslink",
    version,
    about = "Links billing records to Stages and interactive services providers"
)]
struct Cli {
    /// Settings file (default: ./crosslink.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Print a bearer token signed with the configured HS256 secret (development).
    Token {
        #[arg(long)]
        dealer: String,
        #[arg(long)]
        sub: String,
        /// admin, operator or viewer; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Settings tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the settings in force (secrets masked); exit non-zero on any
    /// problem: an unknown key, a bad value, a setting production refuses,
    /// keys that do not read.
    Check,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi => {
            print!("{}", api::openapi::document());
            Ok(())
        }
        Command::Token {
            dealer,
            sub,
            roles,
            ttl,
        } => {
            let settings = Settings::load(cli.config.as_deref())?;
            let roles = roles
                .iter()
                .map(|r| {
                    Role::parse(r)
                        .with_context(|| format!("unknown role {r}: use admin, operator or viewer"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let ttl: Duration = humantime::parse_duration(&ttl)
                .with_context(|| format!("--ttl {ttl} is not a duration like 30m or 1h"))?;
            println!(
                "{}",
                api::auth::mint_token(&settings, &dealer, &sub, &roles, ttl)?
            );
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check(cli.config.as_deref()),
        Command::Serve => {
            let settings = Settings::load(cli.config.as_deref())?;
            api::init_tracing(&settings);
            actix_web::rt::System::new().block_on(api::app::serve(settings))
        }
        Command::Migrate => {
            let mut settings = Settings::load(cli.config.as_deref())?;
            api::init_tracing(&settings);
            settings.database.migrate_on_start = false;
            actix_web::rt::System::new().block_on(async move {
                let key = api::keys::load_or_create(&settings)?;
                let url = settings.database.url.clone();
                let store = tokio::task::spawn_blocking(move || {
                    link_store::Store::open(&url, key, Default::default())
                })
                .await??;
                let report = store.migrate().await?;
                println!("applied {} migration(s)", report.applied.len());
                for name in report.applied {
                    println!("  {name}");
                }
                Ok(())
            })
        }
    }
}

/// `crosslink config check`: the effective settings on stdout, problems on
/// stderr, exit status 1 when there is any.
fn config_check(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let loaded = Settings::inspect(file, None)?;
    print!("{}", loaded.render());
    let mut problems: Vec<String> = loaded.unknown.iter().map(ToString::to_string).collect();
    match &loaded.settings {
        Err(e) => problems.push(e.to_string()),
        Ok(settings) => {
            match settings.check() {
                Ok(warnings) => {
                    for w in warnings {
                        eprintln!("warning: {w}");
                    }
                }
                Err(e) => problems.push(e),
            }
            if let Err(e) = api::auth::TokenVerifier::from_settings(settings) {
                problems.push(format!("{e:#}"));
            }
            if let Err(e) = api::keys::check(settings) {
                problems.push(format!("{e:#}"));
            }
        }
    }
    if problems.is_empty() {
        eprintln!("configuration ok");
        return Ok(());
    }
    for p in &problems {
        eprintln!("error: {p}");
    }
    std::process::exit(1);
}
