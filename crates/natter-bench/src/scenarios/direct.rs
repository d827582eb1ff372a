//! `direct`: N online users send 1:1 messages to random peers at a total rate.

use crate::cli::{Common, DirectArgs};
use crate::report::Report;
use crate::setup::{Account, Conversation, Setup};

/// Runs the scenario: each of `--users` (pool `d`) has a direct conversation with the next
/// `--peers` users, and each message is due to one device.
pub async fn run(common: Common, args: DirectArgs) -> anyhow::Result<()> {
    let (report, users, conversations) = prepare(&common, &args, "direct").await?;
    super::traffic(&common, report, &users, &conversations, 1, &args.load).await
}

/// Makes (or finds from an earlier run) the users and their conversations, and starts the
/// report `name` with the traffic's shape.
pub(super) async fn prepare(
    common: &Common,
    args: &DirectArgs,
    name: &str,
) -> anyhow::Result<(Report, Vec<Account>, Vec<Conversation>)> {
    anyhow::ensure!(args.users >= 2, "{name} needs at least 2 users");
    let mut setup = Setup::open(common).await?;
    let (users, conversations) = setup.direct("d", args.users, args.peers).await?;
    let mut report = Report::new(name, common);
    report.add("users", args.users);
    report.add("conversations", conversations.len());
    report.add("rate_per_sec", args.load.rate);
    report.add("secs", args.load.secs);
    Ok((report, users, conversations))
}
