//! `idle`: open N connections and hold them (heartbeats only): connect rate, natterd's memory
//! per connection and its CPU while idle.

use std::time::Duration;

use crate::cli::{Common, IdleArgs};
use crate::procstat;
use crate::report::{self, Report};
use crate::setup::Setup;

/// Runs the scenario; natterd's memory per connection is its growth from before the
/// connecting to the end of the hold, divided by the connections (only with `--pid`).
pub async fn run(common: Common, args: IdleArgs) -> anyhow::Result<()> {
    let mut setup = Setup::open(&common).await?;
    let users = setup.users("d", args.connections).await?;
    let mut report = Report::new("idle", &common);
    report.add("connections", args.connections);
    let before = procstat::total_rss_kib(&common.pid);
    let (mut fleet, took) = super::connect_all(&common, &users, &[], super::run_id()).await?;
    #[allow(clippy::cast_precision_loss)]
    let n = args.connections as f64;
    report.add("connect_secs", took.as_secs_f64());
    report.add("connects_per_sec", n / took.as_secs_f64().max(1e-3));
    let natterd = super::Natterd::watch(&common);
    let bar = report::bar(args.hold_secs.ceil() as u64, "holding (secs)");
    let start = std::time::Instant::now();
    fleet
        .wait_until(
            Duration::from_secs_f64(args.hold_secs),
            &bar,
            |_| start.elapsed().as_secs(),
            |_| false,
        )
        .await?;
    bar.finish_and_clear();
    natterd.report(&mut report, "idle");
    let after = procstat::total_rss_kib(&common.pid);
    if let (Some(before), Some(after)) = (before, after) {
        report.add("natterd_rss_before_kib", before);
        #[allow(clippy::cast_precision_loss)]
        report.add(
            "natterd_kib_per_connection",
            after.saturating_sub(before) as f64 / n,
        );
    }
    let workers_kib: u64 = fleet.pids().into_iter().filter_map(procstat::rss_kib).sum();
    #[allow(clippy::cast_precision_loss)]
    report.add("bench_workers_kib_per_connection", workers_kib as f64 / n);
    let still_open = fleet.totals().open;
    let finished = fleet.finish().await?;
    report.add("open_at_end_of_hold", still_open);
    report.add("dropped_connections", finished.counters.dropped);
    report.add("connect_failures", finished.counters.connect_failures);
    report.emit(&common)
}
