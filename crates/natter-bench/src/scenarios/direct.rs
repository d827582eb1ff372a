//! `direct`: N online users send 1:1 messages to random peers at a total rate.

use crate::cli::{Common, DirectArgs};
use crate::report::Report;
use crate::setup::Setup;

/// Runs the scenario.
pub async fn run(common: Common, args: DirectArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.users >= 2, "direct needs at least 2 users");
    let mut setup = Setup::open(&common).await?;
    let (users, conversations) = setup.direct("d", args.users, args.peers).await?;
    let mut report = Report::new("direct", &common);
    report.add("users", args.users);
    report.add("conversations", conversations.len());
    report.add("rate_per_sec", args.load.rate);
    report.add("secs", args.load.secs);
    super::traffic(&common, report, &users, &conversations, 1, &args.load).await
}
