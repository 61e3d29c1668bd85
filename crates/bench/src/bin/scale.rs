//! `crosslink-bench-scale` (`make bench-scale`, B15/B9): one PostgreSQL
//! primary with 1,000 dealers x 1,000 links under a mixed load; see
//! [`bench::scale`]. Figures are measured, never asserted.

use std::time::Instant;

use bench::report::Report;
use bench::scale::{self, Cli};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let started_at = chrono::Utc::now();
    let t0 = Instant::now();
    let benches = scale::run(&cli).await?;
    let report = Report {
        started_at,
        total_seconds: t0.elapsed().as_secs_f64(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        params: serde_json::json!({
            "dealers": cli.dealers,
            "links_per_dealer": cli.links_per_dealer,
            "live_sites": cli.live_sites,
            "duration_secs": cli.duration,
            "burst_after_secs": cli.burst_after,
            "burst_edits": cli.burst_edits,
            "reconcile_after_secs": cli.reconcile_after,
            "workers": {
                "lookup": cli.lookup_workers, "edit": cli.edit_workers,
                "callback": cli.callback_workers, "feed": cli.feed_workers,
                "burst": cli.burst_workers,
            },
            "edit_rate": cli.edit_rate,
            "callback_rate": cli.callback_rate,
            "idle_secs": cli.idle_secs,
            "stages_rps": cli.stages_rps,
            "crosslink_bin": cli.crosslink_bin,
        }),
        benches,
    };
    report.write_named(
        &cli.out,
        "scale",
        "crosslink at scale: one PostgreSQL primary",
    )?;
    print!(
        "{}",
        report.markdown_titled("crosslink at scale: one PostgreSQL primary")
    );
    eprintln!(
        "wrote {} and scale.json in {:.0} s",
        cli.out.join("scale.md").display(),
        report.total_seconds
    );
    Ok(())
}
