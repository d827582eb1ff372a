//! `reconnect`: N devices under light traffic lose their connections (cut on the client side,
//! natterd restarted or paused, or one node of a cluster killed): time until all are back and synced,
//! and whether anything was lost. After a kill, only the dead node's devices reconnect; with
//! `--gateway` the report says where they went.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::{Common, ReconnectArgs};
use crate::control::Command;
use crate::fleet::Fleet;
use crate::report::{self, Report};
use crate::setup::Setup;

/// Runs the scenario: traffic for a third of `--secs`, then the cut (by the first of
/// `--restart-pid`, `--kill-pid`, `--pause-pid` given, else by the clients), then the time
/// until every device is connected and synced again; the rest of the load is then drained.
pub async fn run(common: Common, args: ReconnectArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.users >= 2, "reconnect needs at least 2 users");
    let mut setup = Setup::open(&common).await?;
    let (users, conversations) = setup.direct("d", args.users, 1).await?;
    let mut report = Report::new("reconnect", &common);
    report.add("devices", args.users);
    report.add(
        "how",
        match (args.restart_pid, args.kill_pid, args.pause_pid) {
            (Some(_), _, _) => "natterd restarted (SIGTERM)",
            (_, Some(_), _) => "a node killed (SIGKILL), not restarted",
            (_, _, Some(_)) => "natterd paused (SIGSTOP), then resumed",
            _ => "connections cut by the clients",
        },
    );
    report.add("background_rate_per_sec", args.load.rate);
    let n = users.len() as u64;
    let (mut fleet, took) =
        super::connect_all(&common, &users, &conversations, super::run_id()).await?;
    report.add("first_connect_secs", took.as_secs_f64());
    let start = Instant::now();
    fleet.load(args.load.rate, args.load.secs).await?;
    let bar = report::bar(0, "traffic before the cut");
    fleet
        .wait_until(
            Duration::from_secs_f64(args.load.secs / 3.0),
            &bar,
            |c| c.sent,
            |_| false,
        )
        .await?;
    bar.finish_and_clear();

    let cut = Instant::now();
    let killed = args.kill_pid.is_some();
    let paused = args.pause_pid.is_some();
    match (args.restart_pid, args.kill_pid, args.pause_pid) {
        (Some(pid), _, _) => signal(pid, "TERM")?,
        (_, Some(pid), _) => signal(pid, "KILL")?,
        (_, _, Some(pid)) => {
            signal(pid, "STOP")?;
            tokio::time::sleep(Duration::from_secs_f64(args.pause_secs)).await;
            signal(pid, "CONT")?;
            report.add("paused_secs", args.pause_secs);
        }
        _ => fleet.broadcast(&Command::Cut).await?,
    }
    let bar = report::bar(n, "reconnected and synced");
    let back = fleet
        .wait_until(
            Duration::from_secs_f64(args.timeout_secs),
            &bar,
            |c| c.syncs.saturating_sub(n),
            |f: &Fleet| {
                let t = f.totals();
                if paused {
                    // Connections may survive the pause; any that dropped synced again.
                    t.open == n && t.syncs >= n + t.dropped
                } else if killed {
                    // Only the dead node's devices drop, and each syncs again once back.
                    t.dropped > 0 && t.open == n && t.syncs >= n + t.dropped
                } else {
                    t.syncs >= 2 * n && t.open == n
                }
            },
        )
        .await?;
    bar.finish_and_clear();
    let all_back = cut.elapsed();
    report.add("all_back", back);
    report.add("cut_to_all_back_and_synced_secs", all_back.as_secs_f64());
    report.add("devices_back", fleet.totals().open);

    super::wait_loaded(&mut fleet, &args.load).await?;
    super::drain(&mut fleet, 1, args.load.drain_secs).await?;
    let elapsed = start.elapsed();
    let finished = fleet.finish().await?;
    super::traffic_rows(&mut report, &finished, 1, elapsed);
    report.emit(&common)
}

/// Sends `name` (TERM: natterd closes every connection with 1012 and exits; KILL: it dies
/// at once; STOP and CONT: it halts and resumes) to natterd.
fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .context("running kill")?;
    anyhow::ensure!(status.success(), "kill -{name} {pid} failed");
    Ok(())
}
