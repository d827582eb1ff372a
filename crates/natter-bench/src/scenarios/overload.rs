//! `overload`: direct traffic offered faster than natterd can carry it, checked against the
//! delivery promise. An ack means "stored and on its way": every acked message must reach its
//! recipient once, within the promise of the send the server accepted, and what natterd cannot
//! carry must be refused at the door with a retry time (the workers wait it out and send
//! again, as natter-client does), never acked and then left queued.

use std::time::Duration;

use anyhow::bail;

use crate::cli::{Common, OverloadArgs};
use crate::stats::Latency;

/// Runs the scenario; fails when the promise was broken.
pub async fn run(common: Common, args: OverloadArgs) -> anyhow::Result<()> {
    let (mut report, users, conversations) =
        super::direct::prepare(&common, &args.direct, "overload").await?;
    report.add("promise_secs", args.promise_secs);
    let finished = super::run_traffic(
        &common,
        &mut report,
        &users,
        &conversations,
        1,
        &args.direct.load,
    )
    .await?;
    let c = &finished.counters;
    let slowest = Duration::from_secs_f64(Latency::of(&finished.delivery).max_ms / 1000.0);
    let mut broken = Vec::new();
    if c.acked < c.sent {
        broken.push(format!(
            "{} of {} sends were never acked ({} refused for good)",
            c.sent - c.acked,
            c.sent,
            c.refused
        ));
    }
    if c.delivered < c.acked {
        broken.push(format!(
            "{} acked messages were not delivered",
            c.acked - c.delivered
        ));
    }
    if c.duplicates > 0 {
        broken.push(format!("{} copies were delivered twice", c.duplicates));
    }
    if slowest > Duration::from_secs_f64(args.promise_secs) {
        broken.push(format!(
            "the slowest delivery took {:.1} s",
            slowest.as_secs_f64()
        ));
    }
    report.add("promise_kept", broken.is_empty());
    report.emit(&common)?;
    if !broken.is_empty() {
        bail!(
            "the {} s promise was broken: {}",
            args.promise_secs,
            broken.join("; ")
        );
    }
    Ok(())
}
