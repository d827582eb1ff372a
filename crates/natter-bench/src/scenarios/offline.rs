//! `offline`: queue M messages for a device while it is offline, connect it, and time until it
//! has them all.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use natter_proto::ConversationId;
use natter_proto::ws::{ClientFrame, SendMessage, ServerFrame};

use crate::cli::{Common, OfflineArgs};
use crate::conn::{Conn, Incoming};
use crate::payload;
use crate::report::{self, Report};
use crate::setup::Setup;

/// Runs the scenario with two accounts of their own (pool `o`) in one direct conversation;
/// messages of earlier runs are received and acknowledged first, so only this run's are timed.
/// Fails when a step times out, a send is refused or a connection closes.
pub async fn run(common: Common, args: OfflineArgs) -> anyhow::Result<()> {
    if common.gateway {
        bail!("offline connects both its devices to --server itself; it does not take --gateway");
    }
    let mut setup = Setup::open(&common).await?;
    let (users, conversations) = setup.direct("o", 2, 1).await?;
    let conversation = conversations[0].id;
    let server = natter_client::ws_url(&common.server);
    let timeout = Duration::from_secs_f64(args.timeout_secs);
    let source = Ipv4Addr::LOCALHOST;
    let run = super::run_id();
    let mut report = Report::new("offline", &common);
    report.add("messages", args.messages);

    // The receiver catches up with earlier runs, then goes offline.
    let mut receiver = Conn::open(&server, &users[1].token, source).await?;
    let earlier = within(timeout, receive_until_synced(&mut receiver, run, 0)).await?;
    settle(&mut receiver, &earlier.highest).await?;
    receiver.close().await;

    let mut sender = Conn::open(&server, &users[0].token, source).await?;
    let start = Instant::now();
    within(
        timeout,
        queue(&mut sender, conversation, run, &common, &args),
    )
    .await?;
    let queued = start.elapsed();
    sender.close().await;
    report.add("queue_secs", queued.as_secs_f64());
    #[allow(clippy::cast_precision_loss)]
    report.add(
        "queue_messages_per_sec",
        args.messages as f64 / queued.as_secs_f64().max(1e-3),
    );

    let start = Instant::now();
    let mut receiver = Conn::open(&server, &users[1].token, source).await?;
    let ready = start.elapsed();
    let got = within(
        timeout,
        receive_until_synced(&mut receiver, run, args.messages),
    )
    .await?;
    let synced = start.elapsed();
    settle(&mut receiver, &got.highest).await?;
    receiver.close().await;
    report.add("connect_to_ready_secs", ready.as_secs_f64());
    report.add(
        "connect_to_all_received_secs",
        got.all_at.map_or(f64::NAN, |t| (t - start).as_secs_f64()),
    );
    report.add("connect_to_synced_secs", synced.as_secs_f64());
    #[allow(clippy::cast_precision_loss)]
    report.add(
        "sync_messages_per_sec",
        got.this_run as f64 / synced.as_secs_f64().max(1e-3),
    );
    report.add("received", got.this_run);
    report.add("lost", args.messages.saturating_sub(got.this_run as usize));
    report.add("duplicated", got.duplicates);
    report.add("target", "10,000 messages synced in under 2 s");
    report.emit(&common)
}

/// Runs `step`, failing after `timeout`.
async fn within<T>(
    timeout: Duration,
    step: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(timeout, step)
        .await
        .context("timed out")?
}

/// Sends the messages, at most `window` unacked at a time, and waits for every ack. Fails on
/// the first refusal: the offline scenario measures storage, not retries.
async fn queue(
    sender: &mut Conn,
    conversation_id: ConversationId,
    run: u64,
    common: &Common,
    args: &OfflineArgs,
) -> anyhow::Result<()> {
    let bar = report::bar(args.messages as u64, "queueing (acked)");
    let (mut sent, mut acked) = (0usize, 0usize);
    while acked < args.messages {
        while sent < args.messages && sent - acked < args.window.max(1) {
            sent += 1;
            sender
                .send(&ClientFrame::Send(SendMessage {
                    conversation_id,
                    client_msg_id: uuid::Uuid::now_v7().to_string(),
                    ciphertext: payload::make(run, common.payload_bytes as usize),
                    client_ts: None,
                }))
                .await?;
        }
        match sender.next().await? {
            Incoming::Frame(frame) => match *frame {
                ServerFrame::Ack(_) => {
                    acked += 1;
                    bar.inc(1);
                }
                ServerFrame::Error(error) => {
                    bail!("send refused: {} {}", error.code, error.message)
                }
                _ => {}
            },
            Incoming::Closed(code) => bail!("the sender's connection closed ({code:?})"),
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// What a receiving connection got before `synced`.
struct Received {
    /// The highest seq received per conversation, to acknowledge with `delivered`.
    highest: HashMap<ConversationId, i64>,
    /// Messages stamped with this run's id.
    this_run: u64,
    /// Messages at or below a seq already received on this connection.
    duplicates: u64,
    /// When the last of the expected messages of this run arrived, if it did.
    all_at: Option<Instant>,
}

/// Reads until `synced`, counting messages of this run (`expect` of them, for the progress bar).
async fn receive_until_synced(
    conn: &mut Conn,
    run: u64,
    expect: usize,
) -> anyhow::Result<Received> {
    let mut got = Received {
        highest: HashMap::new(),
        this_run: 0,
        duplicates: 0,
        all_at: None,
    };
    let bar = report::bar(expect as u64, "syncing");
    loop {
        match conn.next().await? {
            Incoming::Frame(frame) => match *frame {
                ServerFrame::Message(message) => {
                    let highest = got.highest.entry(message.conversation_id).or_insert(0);
                    if message.seq <= *highest {
                        got.duplicates += 1;
                        continue;
                    }
                    *highest = message.seq;
                    if payload::stamp(&message.ciphertext).is_some_and(|(_, r)| r == run) {
                        got.this_run += 1;
                        bar.inc(1);
                        if got.this_run as usize == expect {
                            got.all_at = Some(Instant::now());
                        }
                    }
                }
                ServerFrame::Synced { .. } => break,
                _ => {}
            },
            Incoming::Closed(code) => bail!("the receiver's connection closed ({code:?})"),
        }
    }
    bar.finish_and_clear();
    Ok(got)
}

/// Moves the delivered cursors to what was received and waits until the server has them
/// (its answer to a later ping).
async fn settle(conn: &mut Conn, highest: &HashMap<ConversationId, i64>) -> anyhow::Result<()> {
    for (&conversation_id, &seq) in highest {
        conn.send(&ClientFrame::Delivered {
            conversation_id,
            seq,
        })
        .await?;
    }
    conn.send(&ClientFrame::Ping { nonce: Some(1) }).await?;
    loop {
        match conn.next().await? {
            Incoming::Frame(frame) if matches!(*frame, ServerFrame::Pong { .. }) => return Ok(()),
            Incoming::Frame(_) => {}
            Incoming::Closed(code) => bail!("closed while settling ({code:?})"),
        }
    }
}
