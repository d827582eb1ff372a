//! The commands about trust that talk to the person: approving a device by comparing codes, and
//! printing notices (safety numbers that changed, devices left out, new devices). Safety
//! numbers themselves are `natter verify`'s (in `commands`); the approval protocol is
//! natter-client's.

use anyhow::{Context, bail};
use natter_client::{ApprovalEvent, ClientError, Device, Event, Notice};
use natter_proto::{DeviceId, UserId};
use serde_json::json;

use crate::out::Out;
use crate::prompt::secret_line;

/// How long `natter approve` keeps its connection after handing the secrets over, so the
/// frames queued on it go out before it closes.
const HAND_OVER_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);
/// How long `natter approve` waits for the other device: time to reach it, run the command
/// there and compare the codes.
const APPROVAL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs one approval live: on the approved device (`target` given) it starts one; on the new
/// device it waits for one. Either way it shows the code and asks whether both screens show it.
/// Fails when the person does not answer `yes`, the other device cancels, the connection
/// ends, or nothing completes within [`APPROVAL_PATIENCE`].
pub async fn approve(device: &Device, out: &Out, target: Option<DeviceId>) -> anyhow::Result<()> {
    let (events_in, mut events) = tokio::sync::mpsc::channel(64);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = device.clone();
    let task = tokio::spawn(async move {
        runner
            .run(events_in, async move {
                let _ = stopped.await;
            })
            .await
    });
    let outcome = tokio::time::timeout(APPROVAL_PATIENCE, async {
        let mut next = async || events.recv().await.context("the connection ended");
        let mut flow = None;
        if target.is_none() {
            eprintln!(
                "waiting for an approved device of yours: run `natter approve {}` on it...",
                device.device_id()
            );
        }
        let mut synced = false;
        loop {
            // Steps that were waiting in this device's inbox arrive during the sync, before
            // `Synced`: they count as much as the live ones.
            let event = match next().await? {
                Event::Synced if !synced => {
                    synced = true;
                    if let Some(target) = target {
                        flow = Some(device.approve_device(target).await?);
                        eprintln!("waiting for the new device (run `natter approve` on it)...");
                    }
                    continue;
                }
                Event::Approval(event) => event,
                Event::Disconnected(reason) => {
                    eprintln!("connection lost ({reason}); reconnecting...");
                    continue;
                }
                _ => continue,
            };
            match event {
                ApprovalEvent::Requested { flow_id, .. } if flow.is_none() => flow = Some(flow_id),
                ApprovalEvent::Code { flow_id, code, .. } if flow.as_ref() == Some(&flow_id) => {
                    eprintln!("code: {code}");
                    let answer = secret_line(
                        "NATTER_APPROVAL_CONFIRM",
                        "do both screens show this code? (yes/no)",
                    )?;
                    if !answer.trim().eq_ignore_ascii_case("yes") {
                        bail!("not confirmed: nothing was approved");
                    }
                    if device.confirm_approval(&flow_id).await?
                        && let Some(target) = target
                    {
                        // The last frames (the MAC and the secrets) are queued on the live
                        // connection: give it a moment to send them before it closes.
                        tokio::time::sleep(HAND_OVER_FLUSH).await;
                        return Ok(target);
                    }
                }
                ApprovalEvent::Done { flow_id, device_id } if flow.as_ref() == Some(&flow_id) => {
                    return Ok(device_id);
                }
                ApprovalEvent::Cancelled { flow_id, reason } if flow.as_ref() == Some(&flow_id) => {
                    bail!("the approval failed: {reason}");
                }
                _ => {}
            }
        }
    })
    .await;
    let _ = stop.send(());
    let _ = task.await;
    let other = outcome.context("gave up waiting for the other device")??;
    out.show(
        format!("approved (with device {other})"),
        json!({ "approved": true, "device_id": other }),
    );
    Ok(())
}

/// Prints the notices recorded since the last command, on standard error (as warnings); each
/// is shown once. Fails only when the store cannot be read.
pub async fn print_new_notices(device: &Device, out: &Out) -> anyhow::Result<()> {
    for notice in device.take_new_notices().await? {
        print_notice(device, out, &notice).await;
    }
    Ok(())
}

/// One notice, with usernames where the server tells them (ids where it does not): on
/// standard error as text, or on standard output as `{"notice": ...}` with `--json`.
pub async fn print_notice(device: &Device, out: &Out, notice: &Notice) {
    let name = async |user: UserId| match device.session().profile(user).await {
        Ok(profile) => profile.username,
        Err(_) => user.to_string(),
    };
    let text = match notice {
        Notice::SafetyNumberChanged {
            user_id,
            was_verified,
        } => {
            let who = name(*user_id).await;
            if *was_verified {
                format!(
                    "warning: {who}'s safety number changed since you verified it; nothing is \
                     sent to them until you compare it again (natter verify {who})"
                )
            } else {
                format!("notice: {who}'s safety number changed (natter verify {who})")
            }
        }
        Notice::DevicesSkipped { user_id, devices } => format!(
            "warning: {} device(s) of {} are not signed by their identity and got no keys: {}",
            devices.len(),
            name(*user_id).await,
            devices
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Notice::NewDevice { device_id, name } => format!(
            "warning: a new device '{name}' ({device_id}) logged in to your account; if it is \
             not yours, remove it: natter devices --remove {device_id}"
        ),
        Notice::MembersAdded {
            conversation_id,
            user_ids,
        } => {
            let mut names = Vec::new();
            for user in user_ids {
                names.push(name(*user).await);
            }
            format!(
                "notice: {} joined conversation {conversation_id} since you last sent to it; \
                 they read what you send from now on",
                names.join(", ")
            )
        }
    };
    if out.json {
        println!("{}", json!({ "notice": notice }));
    } else {
        eprintln!("{text}");
    }
}

/// `natter devices --remove`: removes one of this user's devices. An approved one held the
/// identity's keys, so they are replaced, which needs the recovery key; the devices that stay
/// are told the new keys at once (or as this device next connects). Fails when the server
/// refuses the removal or the recovery key it asked for is wrong.
pub async fn remove_device(device: &Device, out: &Out, removed: DeviceId) -> anyhow::Result<()> {
    let removal = match device.remove_device(removed, None).await {
        Err(ClientError::RecoveryKeyNeeded) => {
            eprintln!(
                "device {removed} is approved: it holds your identity's keys, so removing it \
                 replaces them, which needs your recovery key"
            );
            let key = secret_line("NATTER_RECOVERY_KEY", "recovery key")?;
            device.remove_device(removed, Some(&key)).await?
        }
        other => other?,
    };
    let mut text = format!("removed {removed}");
    if removal.was_approved {
        let kept: Vec<String> = removal.kept.iter().map(ToString::to_string).collect();
        text.push_str(&format!(
            "; your identity's keys were replaced (your safety number stays). Devices that stay \
             approved: {}",
            kept.join(", ")
        ));
        if let Err(error) = device.sync().await {
            text.push_str(&format!(
                "\nthe other devices get the new keys when this one next connects ({error})"
            ));
        }
    }
    out.show(
        text,
        json!({ "removed": removed, "was_approved": removal.was_approved, "kept": removal.kept }),
    );
    Ok(())
}

/// `natter reset-identity`: starts the identity anew with the password (for a lost recovery
/// key); prints the new recovery key. Fails when the server refuses the password or cannot
/// be reached.
pub async fn reset_identity(device: &Device, out: &Out, password: &str) -> anyhow::Result<()> {
    let key = device.reset_identity(password).await?;
    out.show(
        format!(
            "your identity was reset. Your other devices must be approved again, and your \
             contacts are told your safety number changed. Your new recovery key (write it \
             down):\n  {}",
            key.as_str()
        ),
        json!({ "reset": true, "recovery_key": key.as_str() }),
    );
    Ok(())
}
