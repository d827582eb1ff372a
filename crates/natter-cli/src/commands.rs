//! The one-shot commands: each (but `completions`, `register`, `login`, `logout --local`) opens
//! the device, does one thing and prints. Names are resolved in `resolve`, approvals and
//! notices are `trust`'s, and messages are printed by `history`.

use anyhow::{Context, bail};
use natter_client::{Client, Device, Directory, TrustLevel};
use natter_proto::connections::ConnectionState;
use natter_proto::conversations::ConversationKind;
use natter_proto::{ConversationId, UserId};
use serde_json::json;

use crate::errors::listed;
use crate::home::Home;
use crate::out::Out;
use crate::prompt::{password, secret_line};
use crate::{Cli, Command, ConnectionsCommand, RoomsCommand};

/// Runs one command. Most commands open the device in this home first and fail when there
/// is none; `chat` runs until the user quits. Under `--json` each result is one JSON object on
/// a line of its own, so scripts read the output line by line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let home = Home::locate()?;
    let out = Out { json: cli.json };
    match cli.command {
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "natter", &mut std::io::stdout());
        }
        Command::Register {
            username,
            display_name,
        } => {
            let password = password(true)?;
            let user = Client::new(&cli.server)?
                .register(&username, &password, display_name.as_deref())
                .await?;
            out.show(format!("registered {username}"), json!({ "user_id": user }));
        }
        Command::Login {
            username,
            device_name,
            key_file,
        } => {
            let password = password(false)?;
            let unlock = home.new_unlock(key_file)?;
            let device = Device::login(
                &cli.server,
                &username,
                &password,
                &device_name,
                &home.store(),
                &unlock.passphrase,
            )
            .await?;
            if let Err(error) = unlock.keep() {
                drop(device);
                home.forget()?;
                return Err(error.context("the login is undone"));
            }
            let recovery_key = device.take_recovery_key().await?;
            let approved = device.is_approved().await;
            let mut text = format!("logged in as {username} (device {})", device.device_id());
            if let Some(key) = &recovery_key {
                text.push_str(&format!(
                    "\nYour recovery key (write it down and keep it safe; it approves your new \
                     devices and keeps your history readable if you lose them all):\n  {key}"
                ));
            } else if !approved {
                text.push_str(
                    "\nThis device is not approved yet, so it cannot send or be given keys: \
                     run `natter recover` with your recovery key.",
                );
            }
            out.show(
                text,
                json!({ "user_id": device.user_id(), "device_id": device.device_id(),
                        "approved": approved, "recovery_key": recovery_key }),
            );
        }
        Command::Recover => {
            let device = open(&home).await?;
            let key = secret_line("NATTER_RECOVERY_KEY", "recovery key")?;
            let readable = device.recover(&key).await?;
            out.show(
                format!(
                    "approved; {} earlier messages became readable",
                    readable.len()
                ),
                json!({ "approved": true, "readable": readable.len() }),
            );
        }
        Command::Passphrase => {
            let current = home.passphrase()?;
            let device = Device::open(&home.store(), &current)
                .await
                .context("opening this device's store")?;
            let new = home.changed_passphrase()?;
            device.change_passphrase(&current, &new).await?;
            home.forget_key_file()?;
            out.show(
                "the local store is locked with the new passphrase",
                json!({ "changed": true }),
            );
        }
        Command::ResetIdentity { yes } => {
            if !yes {
                bail!(
                    "a reset replaces your identity: your other devices must be approved again, \
                     the history in your key backup is lost, and your contacts are told your \
                     safety number changed. Run it again with --yes to go ahead"
                );
            }
            let device = open(&home).await?;
            crate::trust::reset_identity(&device, &out, &password(false)?).await?;
        }
        Command::Approve { device: target } => {
            let device = open(&home).await?;
            crate::trust::approve(&device, &out, target).await?;
        }
        Command::Notices => {
            let device = open(&home).await?;
            for notice in device.notices().await? {
                crate::trust::print_notice(&device, &out, &notice).await;
            }
        }
        Command::Logout { local } => {
            let mut text = "logged out";
            if !local {
                let device = open(&home).await?;
                match device.logout().await {
                    Ok(()) => {}
                    Err(error) if error.status() == Some(401) => {
                        text = "logged out here (the server had already ended this login)";
                    }
                    Err(error) if error.status().is_none() => {
                        return Err(anyhow::Error::new(error).context(
                            "cannot tell the server; `natter logout --local` forgets this \
                             device here only (then remove it with `natter devices --remove` \
                             from another device)",
                        ));
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            home.forget()?;
            out.show(text, json!({ "logged_out": true, "server_told": !local }));
        }
        Command::Whoami => {
            let device = open(&home).await?;
            let me = device.session().me().await?;
            out.show(
                format!("{} (device {})", me.profile.username, me.device_id),
                json!({ "user_id": me.profile.user_id, "username": me.profile.username,
                        "device_id": me.device_id }),
            );
        }
        Command::Profile { display_name } => {
            let device = open(&home).await?;
            let session = device.session();
            let profile = match display_name {
                Some(name) => {
                    let update = natter_proto::accounts::UpdateProfileRequest {
                        display_name: Some(name),
                        avatar_url: None,
                    };
                    session.update_profile(&update).await?
                }
                None => session.me().await?.profile,
            };
            out.show(
                format!("{} (@{})", profile.display_name, profile.username),
                serde_json::to_value(&profile)?,
            );
        }
        Command::Connections(command) => {
            let device = open(&home).await?;
            connections(&device, &out, command).await?;
            // Remember who is who: names, and sending by name while the server is away.
            directory(&device, &[]).await?;
        }
        Command::Rooms(command) => {
            let device = open(&home).await?;
            let changed = rooms(&device, &out, command).await?;
            directory(&device, &Vec::from_iter(changed)).await?;
        }
        Command::Send { to, text } => {
            let device = open(&home).await?;
            let conversation = conversation(&device, &to).await?;
            let id = device.send_text(conversation, &text.join(" ")).await?;
            let synced = device.sync().await;
            crate::trust::print_new_notices(&device, &out).await?;
            match synced {
                Ok(report) => {
                    // Earlier queued messages the server refused are warned about, but only
                    // this one decides: it was sent, and sending it again would repeat it.
                    let (own, earlier): (Vec<_>, Vec<_>) = report
                        .failed
                        .into_iter()
                        .partition(|(failed, _)| *failed == id);
                    if !earlier.is_empty() {
                        eprintln!(
                            "warning: the server refused for good, so these earlier messages \
                             were not sent: {}",
                            listed(&earlier)
                        );
                    }
                    refused(&own)?;
                    out.show("sent", json!({ "client_msg_id": id, "sent": true }));
                }
                Err(error) => out.show(
                    format!("queued; it will be sent once the server is reachable ({error})"),
                    json!({ "client_msg_id": id, "sent": false }),
                ),
            }
        }
        Command::Sync => {
            let device = open(&home).await?;
            let report = device.sync().await?;
            // New conversations and names, for use while the server is away.
            directory(&device, &[]).await?;
            crate::trust::print_new_notices(&device, &out).await?;
            out.show(
                format!("received {}, sent {}", report.received, report.sent),
                json!({ "received": report.received, "sent": report.sent }),
            );
            refused(&report.failed)?;
        }
        Command::History { with, limit } => {
            let device = open(&home).await?;
            let conversation = conversation(&device, &with).await?;
            crate::history::history(&device, &out, conversation, limit).await?;
        }
        Command::Search {
            query,
            within,
            from,
        } => {
            let device = open(&home).await?;
            let within = match within {
                Some(target) => Some(conversation(&device, &target).await?),
                None => None,
            };
            let from = match from {
                Some(user) => Some(user_id(&device, &user).await?),
                None => None,
            };
            let found = device.search(&query.join(" "), within, from, 100).await?;
            crate::history::print_messages(&device, &out, &found, None).await?;
        }
        Command::Devices { user, remove } => {
            let device = open(&home).await?;
            if let Some(removed) = remove {
                return crate::trust::remove_device(&device, &out, removed).await;
            }
            let user = match user {
                Some(user) => user_id(&device, &user).await?,
                None => device.user_id(),
            };
            for d in device.device_list(user).await? {
                let key = d.ed25519.as_deref().unwrap_or("(no valid keys)");
                let trust = if d.signed { "signed" } else { "NOT SIGNED" };
                out.show(
                    format!("{}  {}  {trust}  {key}", d.device_id, d.name),
                    serde_json::to_value(&d)?,
                );
            }
        }
        Command::Verify { user, confirm } => {
            let device = open(&home).await?;
            let peer = user_id(&device, &user).await?;
            let (number, level) = if confirm {
                (device.confirm_verified(peer).await?, TrustLevel::Verified)
            } else {
                let number = device.safety_number(peer).await?;
                (number, device.trust_level(peer).await?)
            };
            let advice = match level {
                TrustLevel::Verified => format!("{user} is verified."),
                TrustLevel::Changed => format!(
                    "{user}'s safety number CHANGED since you verified it: compare it again, \
                     then run `natter verify {user} --confirm`."
                ),
                _ => format!(
                    "Compare it with theirs; if it matches, run `natter verify {user} --confirm`."
                ),
            };
            out.show(
                format!("safety number with {user}:\n{number}\n{advice}"),
                json!({ "user": user, "safety_number": number, "trust": level }),
            );
        }
        Command::Chat { with } => {
            let device = open(&home).await?;
            let conversation = match with {
                Some(with) => conversation(&device, &with).await?,
                None => match directory(&device, &[]).await?.conversations.first() {
                    Some(newest) => newest.summary.id,
                    None => bail!(
                        "no conversations yet: connect with someone (natter connections \
                         request) and write to them (natter chat <username>)"
                    ),
                },
            };
            crate::chat::run(device, conversation).await?;
        }
    }
    Ok(())
}

/// Fails when a sync's server refused queued messages for good (they left the queue):
/// `failed` as in `SyncReport::failed`. The error is [`crate::errors::CliError::Refused`],
/// exit status 5.
fn refused(failed: &[(String, String)]) -> anyhow::Result<()> {
    if failed.is_empty() {
        return Ok(());
    }
    Err(crate::errors::CliError::Refused(failed.to_vec()).into())
}

/// Opens this home's device store with its passphrase; fails with a hint to log in when
/// there is no store or it does not unlock.
async fn open(home: &Home) -> anyhow::Result<Device> {
    Device::open(&home.store(), &home.passphrase()?)
        .await
        .context("opening this device's store (run `natter login` first)")
}

/// A user by username or id (the directory answers while the server is away). Fails when the
/// server knows no such user, or is away and the directory does not know them either.
pub async fn user_id(device: &Device, name: &str) -> anyhow::Result<UserId> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    crate::resolve::user_id(device, &device.directory().await?, name).await
}

/// A conversation by id, unique id prefix, room name, or username (the direct conversation
/// with them), from the directory refreshed when the server answers. An id is taken as
/// given; errors are those of [`crate::resolve::conversation`].
pub async fn conversation(device: &Device, target: &str) -> anyhow::Result<ConversationId> {
    if let Ok(id) = target.parse() {
        return Ok(id);
    }
    crate::resolve::conversation(device, &directory(device, &[]).await?, target).await
}

/// The directory, refreshed from the server when it answers (as remembered when not), with
/// the members of `open` fetched again. Fails only when the store cannot be read or written.
pub async fn directory(device: &Device, open: &[ConversationId]) -> anyhow::Result<Directory> {
    let mut directory = device.directory().await?;
    // Away or refusing: names come from what was remembered; the command's own request says
    // what is wrong if it matters.
    let _ = device.refresh_directory(&mut directory, open).await;
    Ok(directory)
}

/// Runs a connections command and prints the outcome (or every connection, for `list`);
/// errors are the server's refusals and the name lookups'.
async fn connections(
    device: &Device,
    out: &Out,
    command: ConnectionsCommand,
) -> anyhow::Result<()> {
    let session = device.session();
    let (done, status) = match command {
        ConnectionsCommand::List => {
            let all = session.connections().await?;
            for (label, entries) in [
                ("connected", &all.connections),
                ("incoming", &all.incoming),
                ("outgoing", &all.outgoing),
                ("blocked", &all.blocked),
            ] {
                for entry in entries {
                    out.show(
                        format!("{label:9} {}", entry.profile.username),
                        json!({ "state": label, "user_id": entry.profile.user_id,
                                "username": entry.profile.username }),
                    );
                }
            }
            return Ok(());
        }
        ConnectionsCommand::Request { user } => {
            let peer = user_id(device, &user).await?;
            ("requested", session.request_connection(peer, None).await?)
        }
        ConnectionsCommand::Accept { user } => {
            let peer = user_id(device, &user).await?;
            ("accepted", session.answer_request(peer, true, None).await?)
        }
        ConnectionsCommand::Reject { user } => {
            let peer = user_id(device, &user).await?;
            ("rejected", session.answer_request(peer, false, None).await?)
        }
        ConnectionsCommand::Delete { user } => {
            let peer = user_id(device, &user).await?;
            ("removed", session.remove_connection(peer, None).await?)
        }
        ConnectionsCommand::Block { user } => return block(device, out, &user, true).await,
        ConnectionsCommand::Unblock { user } => return block(device, out, &user, false).await,
    };
    // A request to someone who had asked first connects at once.
    let text = if status.state == ConnectionState::Accepted {
        "connected"
    } else {
        done
    };
    out.show(
        text,
        json!({ "user_id": status.user_id, "done": done, "state": status.state }),
    );
    Ok(())
}

/// Blocks or unblocks `user` locally, then syncs to tell the server; prints whether the
/// server was told (it is told at a later sync when it was away).
async fn block(device: &Device, out: &Out, user: &str, blocking: bool) -> anyhow::Result<()> {
    let peer = user_id(device, user).await?;
    device.block(peer, blocking).await?;
    let flushed = device.sync().await.is_ok();
    let word = if blocking { "blocked" } else { "unblocked" };
    let text = if flushed {
        word.to_owned()
    } else {
        format!("{word} here; the server will be told once it is reachable")
    };
    out.show(
        text,
        json!({ "user_id": peer, "blocked": blocking, "confirmed": flushed }),
    );
    Ok(())
}

/// Runs a rooms command; returns the room whose members changed, if one did, so the caller
/// fetches its members again. `list` fetches every conversation's members again.
async fn rooms(
    device: &Device,
    out: &Out,
    command: RoomsCommand,
) -> anyhow::Result<Option<ConversationId>> {
    let session = device.session();
    let changed = match command {
        RoomsCommand::Create { name, members } => {
            let mut ids = Vec::new();
            for member in &members {
                ids.push(user_id(device, member).await?);
            }
            let room = session.create_room(&name, &ids).await?;
            out.show(
                format!("created {name} ({})", room.summary.id),
                json!({ "id": room.summary.id }),
            );
            Some(room.summary.id)
        }
        RoomsCommand::Add { room, users } => {
            let room = conversation(device, &room).await?;
            let mut ids = Vec::new();
            for user in &users {
                ids.push(user_id(device, user).await?);
            }
            let details = session.add_members(room, &ids).await?;
            out.show(
                format!("{} members", details.members.len()),
                json!({ "members": details.members.len() }),
            );
            Some(room)
        }
        RoomsCommand::Remove { room, user } => {
            let room = conversation(device, &room).await?;
            session
                .remove_member(room, user_id(device, &user).await?)
                .await?;
            out.show("removed", json!({ "removed": true }));
            Some(room)
        }
        RoomsCommand::Leave { room } => {
            let room = conversation(device, &room).await?;
            session.remove_member(room, device.user_id()).await?;
            out.show("left", json!({ "left": true }));
            None
        }
        RoomsCommand::List => {
            // Listed with members: fetch every conversation's members again.
            let summaries = session.conversations().await?;
            let ids: Vec<ConversationId> = summaries.iter().map(|c| c.id).collect();
            let directory = directory(device, &ids).await?;
            let labels = directory.labels();
            for c in summaries {
                let (title, members) = match directory.conversation(c.id) {
                    Some(details) => (
                        natter_client::title(&labels, device.user_id(), details),
                        details
                            .members
                            .iter()
                            .map(|m| natter_client::label(&labels, m.user_id))
                            .collect(),
                    ),
                    None => (c.name.clone().unwrap_or_default(), Vec::new()),
                };
                let kind = match c.kind {
                    ConversationKind::Direct => "direct",
                    ConversationKind::Room => "room",
                };
                out.show(
                    format!("{}  {kind:6}  {title}  unread {}", c.id, c.unread),
                    json!({ "id": c.id, "kind": c.kind, "name": c.name, "title": title,
                            "members": members, "unread": c.unread, "last_seq": c.last_seq }),
                );
            }
            None
        }
    };
    Ok(changed)
}
