//! `soak`: hours of 1:1 traffic while a share of the devices lose their connections every so
//! often. natterd's memory and open files (of `--pid`) are sampled throughout; they should stay
//! flat, and every acked message must still reach its recipient once.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::cli::{Common, SoakArgs};
use crate::control::Command;
use crate::fleet::Fleet;
use crate::procstat;
use crate::report::{self, Report};
use crate::setup::Setup;

/// One sample of natterd.
struct Sample {
    /// Seconds since the load started.
    secs: f64,
    /// natterd's resident memory, summed over `--pid`; `None` when unknown.
    rss_kib: Option<u64>,
    /// natterd's open file descriptors (sockets included), summed; `None` when unknown.
    fds: Option<u64>,
    /// The benchmark's devices connected at that moment, as the workers last reported.
    open: u64,
}

impl Sample {
    /// Samples `pids` and the fleet now.
    fn take(pids: &[u32], start: Instant, fleet: &Fleet) -> Self {
        Self {
            secs: start.elapsed().as_secs_f64(),
            rss_kib: procstat::total_rss_kib(pids),
            fds: procstat::total_fds(pids),
            open: fleet.totals().open,
        }
    }
}

/// Runs the scenario: samples every `--sample-every-secs`, cuts `--churn-fraction` of the
/// connections every `--churn-every-secs`, then drains and waits a minute for everyone to be
/// back before the last sample. Fails when the workers fall a minute behind the load.
pub async fn run(common: Common, args: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.users >= 2, "soak needs at least 2 users");
    let mut setup = Setup::open(&common).await?;
    let (users, conversations) = setup.direct("d", args.users, 1).await?;
    let mut report = Report::new("soak", &common);
    report.add("devices", users.len());
    report.add("rate_per_sec", args.load.rate);
    report.add("secs", args.load.secs);
    report.add("churn_every_secs", args.churn_every_secs);
    report.add("churn_fraction", args.churn_fraction);
    let n = users.len() as u64;
    let (mut fleet, _) =
        super::connect_all(&common, &users, &conversations, super::run_id()).await?;
    let start = Instant::now();
    let mut samples = vec![Sample::take(&common.pid, start, &fleet)];
    fleet.load(args.load.rate, args.load.secs).await?;
    let sample_every = Duration::from_secs_f64(args.sample_every_secs.max(0.1));
    let churn_every =
        (args.churn_every_secs > 0.0).then(|| Duration::from_secs_f64(args.churn_every_secs));
    let (mut next_sample, mut next_churn) = (start + sample_every, churn_every.map(|e| start + e));
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bar = report::bar((args.load.rate * args.load.secs) as u64, "soaking");
    let mut churns = 0u64;
    while !fleet.loaded() {
        let until = next_churn.map_or(next_sample, |c| c.min(next_sample));
        let wait = until.saturating_duration_since(Instant::now());
        fleet
            .wait_until(wait, &bar, |c| c.issued, Fleet::loaded)
            .await?;
        let now = Instant::now();
        if now >= next_sample {
            samples.push(Sample::take(&common.pid, start, &fleet));
            next_sample += sample_every;
        }
        if let (Some(at), Some(every)) = (next_churn, churn_every)
            && now >= at
        {
            fleet
                .broadcast(&Command::Churn {
                    fraction: args.churn_fraction,
                })
                .await?;
            churns += 1;
            next_churn = Some(at + every);
        }
        if start.elapsed() > Duration::from_secs_f64(args.load.secs + 60.0) {
            bail!("the workers did not finish sending in time");
        }
    }
    bar.finish_and_clear();
    super::drain(&mut fleet, 1, args.load.drain_secs).await?;
    // The last sample once every device is back, so it compares with the first.
    let bar = report::bar(n, "everyone back");
    let back = fleet
        .wait_until(
            Duration::from_secs(60),
            &bar,
            |c| c.open,
            |f| f.totals().open == n,
        )
        .await?;
    bar.finish_and_clear();
    samples.push(Sample::take(&common.pid, start, &fleet));
    let elapsed = start.elapsed();
    report.add("churns", churns);
    report.add("all_back_at_end", back);
    report_samples(&mut report, &samples);
    let finished = fleet.finish().await?;
    super::traffic_rows(&mut report, &finished, 1, elapsed);
    report.emit(&common)
}

/// First, last and highest memory and open files, and every sample in the JSON.
fn report_samples(report: &mut Report, samples: &[Sample]) {
    let series = |value: fn(&Sample) -> Option<u64>| -> Vec<u64> {
        samples.iter().filter_map(value).collect()
    };
    for (name, values) in [
        ("natterd_rss_kib", series(|s| s.rss_kib)),
        ("natterd_open_files", series(|s| s.fds)),
    ] {
        if let (Some(first), Some(last), Some(max)) =
            (values.first(), values.last(), values.iter().max())
        {
            report.add(&format!("{name}_first"), *first);
            report.add(&format!("{name}_last"), *last);
            report.add(&format!("{name}_max"), *max);
        }
    }
    let rows: Vec<_> = samples
        .iter()
        .map(|s| json!({ "secs": s.secs, "rss_kib": s.rss_kib, "open_files": s.fds, "open_connections": s.open }))
        .collect();
    report.add("samples", rows.len());
    report.add_json("samples_series", serde_json::Value::Array(rows));
}
