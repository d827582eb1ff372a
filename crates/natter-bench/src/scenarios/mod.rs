//! The scenarios, and the steps the traffic scenarios share: connect everyone, send at a rate,
//! wait for the last deliveries, report.

pub mod direct;
pub mod idle;
pub mod offline;
pub mod overload;
pub mod reconnect;
pub mod room;
pub mod soak;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::cli::{Common, LoadArgs};
use crate::control::Command;
use crate::fleet::{self, Finished, Fleet};
use crate::procstat::{self, CpuMeter};
use crate::report::{self, Report};
use crate::setup::{Account, Conversation};
use crate::stats::Latency;

/// A run id, stamped in every message body so deliveries of earlier runs are told apart.
fn run_id() -> u64 {
    rand::random()
}

/// Starts the workers for `users` and connects every device; returns how long that took
/// (until every device finished its first sync). Fails, with the workers' errors, when not
/// every device synced within a minute (plus a second per 50 devices).
async fn connect_all(
    common: &Common,
    users: &[Account],
    conversations: &[Conversation],
    run: u64,
) -> anyhow::Result<(Fleet, Duration)> {
    let n = users.len() as u64;
    let nodes = fleet::assign_nodes(common, users.len()).await?;
    let mut fleet = Fleet::start(
        common,
        fleet::devices(common, users, conversations, &nodes),
        run,
    )
    .await?;
    let bar = report::bar(n, "connecting");
    let start = Instant::now();
    fleet.broadcast(&Command::Connect).await?;
    // Generous: a busy machine may take a while for the first handshakes.
    let timeout = Duration::from_secs(60 + n / 50);
    let done = fleet
        .wait_until(timeout, &bar, |c| c.syncs, |f| f.totals().syncs >= n)
        .await?;
    bar.finish_and_clear();
    if !done {
        let totals = fleet.totals();
        let errors = fleet.finish().await.map(|f| f.errors).unwrap_or_default();
        bail!(
            "only {} of {n} devices connected and synced ({totals:?}); errors: {errors:?}",
            totals.syncs
        );
    }
    Ok((fleet, start.elapsed()))
}

/// Waits (showing progress) until the running `Load` has issued all its sends.
async fn wait_loaded(fleet: &mut Fleet, load: &LoadArgs) -> anyhow::Result<()> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bar = report::bar((load.rate * load.secs) as u64, "sending");
    let timeout = Duration::from_secs_f64(load.secs + 30.0);
    let done = fleet
        .wait_until(timeout, &bar, |c| c.issued, Fleet::loaded)
        .await?;
    bar.finish_and_clear();
    if !done {
        bail!("the workers did not finish sending in time");
    }
    Ok(())
}

/// Waits up to `drain_secs` for every issued send to be answered (or skipped) and every copy
/// delivered. Running out of time is no error: what did not arrive is reported as `lost`.
async fn drain(fleet: &mut Fleet, fanout: u64, drain_secs: f64) -> anyhow::Result<()> {
    let expected = |f: &Fleet| f.totals().acked * fanout;
    let bar = report::bar(expected(fleet), "waiting for deliveries");
    fleet
        .wait_until(
            Duration::from_secs_f64(drain_secs),
            &bar,
            |c| c.delivered,
            |f| {
                let t = f.totals();
                t.acked + t.refused + t.skipped >= t.issued && t.delivered >= t.acked * fanout
            },
        )
        .await?;
    bar.finish_and_clear();
    Ok(())
}

/// The numbers every traffic scenario reports: `fanout` copies are expected per acked message;
/// `elapsed` is from the first send to the end of the drain. `unacked` is what was sent and
/// neither acked nor refused; `lost` is what was due by the acks and never arrived.
fn traffic_rows(report: &mut Report, finished: &Finished, fanout: u64, elapsed: Duration) {
    let c = &finished.counters;
    let expected = c.acked * fanout;
    report.add("sent", c.sent);
    report.add("acked", c.acked);
    report.add("refused", c.refused);
    report.add("retried_after_wait", c.retried);
    report.add("unacked", c.sent.saturating_sub(c.acked + c.refused));
    report.add("skipped_sends", c.skipped);
    report.add("expected_deliveries", expected);
    report.add("delivered", c.delivered);
    report.add("lost", expected.saturating_sub(c.delivered));
    report.add("duplicated", c.duplicates);
    report.add("redelivered_after_reconnect", c.redelivered);
    report.add("stale_from_earlier_runs", c.stale);
    report.add("dropped_connections", c.dropped);
    report.add("connect_failures", c.connect_failures);
    if finished.nodes.len() > 1 || c.moved > 0 {
        report.add("moved_to_another_node", c.moved);
        report.add(
            "devices_per_node_at_end",
            serde_json::to_value(&finished.nodes).unwrap_or_default(),
        );
    }
    #[allow(clippy::cast_precision_loss)]
    report.add(
        "deliveries_per_sec",
        c.delivered as f64 / elapsed.as_secs_f64().max(1e-3),
    );
    report.latency("send_to_delivery", &Latency::of(&finished.delivery));
    report.latency("send_to_ack", &Latency::of(&finished.ack));
    let distinct: BTreeSet<&str> = finished.errors.iter().map(String::as_str).collect();
    if !distinct.is_empty() {
        report.add(
            "some_errors",
            distinct.into_iter().collect::<Vec<_>>().join(" | "),
        );
    }
}

/// natterd's memory and CPU (summed over the nodes), when `--pid` names them.
struct Natterd {
    /// natterd's processes (`--pid`); none when it is not watched.
    pids: Vec<u32>,
    /// CPU time since [`Natterd::watch`]; `None` without pids or without `/proc`.
    cpu: Option<CpuMeter>,
}

impl Natterd {
    /// Starts watching (CPU is measured from now).
    fn watch(common: &Common) -> Self {
        Self {
            pids: common.pid.clone(),
            cpu: CpuMeter::start(&common.pid),
        }
    }

    /// Adds natterd's CPU since the start (percent of one core) and its memory now.
    fn report(&self, report: &mut Report, what: &str) {
        if let Some(percent) = self.cpu.as_ref().and_then(CpuMeter::percent) {
            report.add(&format!("natterd_cpu_percent_{what}"), percent);
        }
        if let Some(rss) = procstat::total_rss_kib(&self.pids) {
            report.add("natterd_rss_kib", rss);
        }
    }
}

/// A traffic scenario from start to report: connect every user, send `load` over
/// `conversations` (each acked message is due to `fanout` devices), drain, report.
async fn traffic(
    common: &Common,
    mut report: Report,
    users: &[Account],
    conversations: &[Conversation],
    fanout: u64,
    load: &LoadArgs,
) -> anyhow::Result<()> {
    run_traffic(common, &mut report, users, conversations, fanout, load).await?;
    report.emit(common)
}

/// [`traffic`] without emitting the report: what the workers counted, for checks of its own.
/// Fails when the devices do not all connect or the workers fall behind the load, not when
/// messages are lost (that is in the report).
async fn run_traffic(
    common: &Common,
    report: &mut Report,
    users: &[Account],
    conversations: &[Conversation],
    fanout: u64,
    load: &LoadArgs,
) -> anyhow::Result<Finished> {
    let run = run_id();
    let (mut fleet, connect_time) = connect_all(common, users, conversations, run).await?;
    report.add("connect_secs", connect_time.as_secs_f64());
    let natterd = Natterd::watch(common);
    let start = Instant::now();
    fleet.load(load.rate, load.secs).await?;
    wait_loaded(&mut fleet, load).await?;
    drain(&mut fleet, fanout, load.drain_secs).await?;
    let elapsed = start.elapsed();
    natterd.report(report, "under_load");
    let finished = fleet.finish().await?;
    traffic_rows(report, &finished, fanout, elapsed);
    Ok(finished)
}
