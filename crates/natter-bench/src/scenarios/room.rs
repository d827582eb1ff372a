//! `room`: rooms of K members, all online, posting at a total rate; each post is due to the
//! K - 1 other members' devices.

use crate::cli::{Common, RoomArgs};
use crate::report::Report;
use crate::setup::Setup;

/// Runs the scenario on `--rooms` rooms (at least one) of `--members` users each, drawn from
/// pool `r` without overlap.
pub async fn run(common: Common, args: RoomArgs) -> anyhow::Result<()> {
    let k = args.members as usize;
    let mut setup = Setup::open(&common).await?;
    let (users, rooms) = setup.rooms("r", k, args.rooms.max(1)).await?;
    let mut report = Report::new("room", &common);
    report.add("members_per_room", k);
    report.add("rooms", rooms.len());
    report.add("posts_per_sec", args.load.rate);
    report.add("secs", args.load.secs);
    let fanout = u64::from(args.members) - 1;
    super::traffic(&common, report, &users, &rooms, fanout, &args.load).await
}
