//! A worker process: holds its share of the devices' connections, sends what the coordinator
//! asks, counts what arrives, and reports over stdout (JSON lines; commands come on stdin).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use natter_proto::ConversationId;
use natter_proto::ws::{ClientFrame, SendMessage, ServerFrame};
use rand::Rng;
use rand::seq::IndexedRandom;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::conn::{Conn, Incoming};
use crate::control::{Command, Counters, DeviceSpec, Event};
use crate::{payload, stats};

/// Commands queued for one device before further sends to it are skipped.
const DEVICE_QUEUE: usize = 64;
/// Consecutive failed connection attempts after which a device gives up.
const MAX_FAILURES: u32 = 30;
/// Longest backoff between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long `Finish` waits for the devices to close.
const FINISH_TIMEOUT: Duration = Duration::from_secs(20);
/// Connection errors kept for the report.
const KEPT_ERRORS: usize = 5;

/// What a device task is told.
enum DeviceCommand {
    /// Send one message to a random conversation of the device (skipped while it reconnects).
    Send,
    /// Drop the connection without a close frame; the device reconnects after a backoff.
    Cut,
    /// Report what was delivered, close the connection and stop.
    Finish,
}

/// How one connection of a device ended.
enum Ended {
    /// Closed on `Finish`: the device stops.
    Finished,
    /// Cut on purpose (`Cut` or churn): not counted as a drop.
    Cut,
    /// The server closed it or it failed: counted in `dropped`, and the device reconnects.
    Dropped,
}

/// What every device task of this worker shares.
struct Shared {
    /// This run's id, stamped in every body; messages of other runs count as `stale`.
    run: u64,
    /// Size of each message body.
    payload_bytes: usize,
    /// How often each device reports what it received (`delivered` frames).
    ack_interval: Duration,
    /// Limits how many devices open their connection at once (`--connect-concurrency`).
    handshakes: Semaphore,
    /// The worker's counts, sent to the coordinator every 200 ms and at the end.
    counters: Mutex<Counters>,
    /// Send-to-delivery latencies (µs) of this run's messages, from the stamp in the body.
    delivery: Mutex<Histogram<u64>>,
    /// Send-to-ack latencies (µs), from the first send of each message.
    ack: Mutex<Histogram<u64>>,
    /// The first [`KEPT_ERRORS`] connection and server errors, for the report.
    errors: Mutex<Vec<String>>,
    /// The host assigner to ask before each reconnection (`--gateway`).
    gateway: Option<natter_client::Client>,
    /// Devices per node of their last connection, counted as they finish.
    nodes: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    /// Changes the counters under their lock.
    fn count(&self, change: impl FnOnce(&mut Counters)) {
        change(&mut self.counters.lock().expect("counters lock"));
    }

    /// Keeps `error` for the report unless [`KEPT_ERRORS`] are kept already.
    fn error(&self, error: String) {
        let mut errors = self.errors.lock().expect("errors lock");
        if errors.len() < KEPT_ERRORS {
            errors.push(error);
        }
    }
}

/// Runs the worker until `Finish` (or the coordinator goes away). The first line on stdin must
/// be the plan; ends with an `Event::Final` of the counters, latencies, errors and nodes.
/// Fails on a malformed or out-of-order command, or when the host assigner does not answer.
pub async fn run() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let (events, mut outbox) = mpsc::unbounded_channel::<Event>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(event) = outbox.recv().await {
            let mut line = serde_json::to_vec(&event).expect("events serialize");
            line.push(b'\n');
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let first = lines.next_line().await?.context("no plan on stdin")?;
    let Command::Plan {
        devices,
        payload_bytes,
        run,
        connect_concurrency,
        ack_interval_ms,
        gateway,
    } = serde_json::from_str(&first).context("reading the plan")?
    else {
        bail!("the first command must be the plan");
    };
    let gateway = match gateway {
        Some(base) => {
            let client = natter_client::Client::new(&base)?;
            // Learn the cluster's nodes now, so the assigner can still be asked through
            // another node once this one is gone.
            client
                .cluster_gateway()
                .await
                .context("asking the host assigner for the cluster's nodes")?;
            Some(client)
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        run,
        payload_bytes,
        ack_interval: Duration::from_millis(ack_interval_ms.max(10)),
        handshakes: Semaphore::new(connect_concurrency.max(1)),
        counters: Mutex::new(Counters::default()),
        delivery: Mutex::new(stats::histogram()),
        ack: Mutex::new(stats::histogram()),
        errors: Mutex::new(Vec::new()),
        gateway,
        nodes: Mutex::new(BTreeMap::new()),
    });
    let mut specs = Some(devices);
    let mut queues: Vec<mpsc::Sender<DeviceCommand>> = Vec::new();
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                match serde_json::from_str(&line).context("reading a command")? {
                    Command::Plan { .. } => bail!("a second plan"),
                    Command::Connect => {
                        for spec in specs.take().context("connected twice")? {
                            let (queue, commands) = mpsc::channel(DEVICE_QUEUE);
                            queues.push(queue);
                            tasks.push(tokio::spawn(device(spec, Arc::clone(&shared), commands)));
                        }
                    }
                    Command::Load { rate, secs } => {
                        let (queues, shared, events) = (queues.clone(), Arc::clone(&shared), events.clone());
                        tokio::spawn(async move {
                            pace(&queues, &shared, rate, secs).await;
                            // Counters with every issued send before LoadDone, for the drain.
                            let counters = *shared.counters.lock().expect("counters lock");
                            let _ = events.send(Event::Stats(counters));
                            let _ = events.send(Event::LoadDone);
                        });
                    }
                    Command::Cut => broadcast(&queues, || DeviceCommand::Cut).await,
                    Command::Churn { fraction } => {
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
                        let count = (queues.len() as f64 * fraction.clamp(0.0, 1.0)).round() as usize;
                        let chosen: Vec<_> = queues.choose_multiple(&mut rand::rng(), count).cloned().collect();
                        broadcast(&chosen, || DeviceCommand::Cut).await;
                    }
                    Command::Finish => break,
                }
            }
            _ = ticker.tick() => {
                let counters = *shared.counters.lock().expect("counters lock");
                let _ = events.send(Event::Stats(counters));
            }
        }
    }
    broadcast(&queues, || DeviceCommand::Finish).await;
    drop(queues);
    let deadline = tokio::time::Instant::now() + FINISH_TIMEOUT;
    for task in tasks {
        if tokio::time::timeout_at(deadline, &mut Box::pin(task))
            .await
            .is_err()
        {
            shared.error("a device did not close in time".into());
        }
    }
    let final_event = Event::Final {
        counters: *shared.counters.lock().expect("counters lock"),
        delivery: stats::to_buckets(&shared.delivery.lock().expect("histogram lock")),
        ack: stats::to_buckets(&shared.ack.lock().expect("histogram lock")),
        errors: shared.errors.lock().expect("errors lock").clone(),
        nodes: shared.nodes.lock().expect("nodes lock").clone(),
    };
    let _ = events.send(final_event);
    drop(events);
    writer.await?;
    Ok(())
}

/// Queues a command for every device (waiting a bounded time for full queues): a device whose
/// queue stays full for a second misses it.
async fn broadcast(queues: &[mpsc::Sender<DeviceCommand>], command: impl Fn() -> DeviceCommand) {
    for queue in queues {
        let _ = queue.send_timeout(command(), Duration::from_secs(1)).await;
    }
}

/// Issues `rate` sends a second to random devices for `secs` seconds (plus one second to catch
/// up). A send whose device queue is full is counted as `skipped`, not waited for.
async fn pace(queues: &[mpsc::Sender<DeviceCommand>], shared: &Shared, rate: f64, secs: f64) {
    if queues.is_empty() {
        return;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = (rate * secs).round().max(0.0) as u64;
    let start = tokio::time::Instant::now();
    let stop = start + Duration::from_secs_f64(secs + 1.0);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut issued = 0u64;
    while issued < total && tokio::time::Instant::now() < stop {
        tick.tick().await;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
        while issued < due {
            issued += 1;
            shared.count(|c| c.issued += 1);
            let queue = queues.choose(&mut rand::rng()).expect("not empty");
            if queue.try_send(DeviceCommand::Send).is_err() {
                shared.count(|c| c.skipped += 1);
            }
        }
    }
}

/// One device: connects, reconnects with backoff and jitter when its connection ends, until
/// `Finish` or too many failures in a row. With `--gateway` it asks the host assigner again
/// before each reconnection and tries the nodes it names in order, as natter-client does.
/// Failed attempts count in `connect_failures`, a reconnection to another node in `moved`, and
/// the node it finishes on in the worker's `nodes`.
async fn device(
    spec: DeviceSpec,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<DeviceCommand>,
) {
    let mut state = DeviceState::default();
    let mut failures = 0u32;
    let mut node = spec.server.clone();
    let mut candidates = vec![node.clone()];
    let mut first = true;
    while failures < MAX_FAILURES {
        if !std::mem::take(&mut first)
            && let Some(gateway) = &shared.gateway
        {
            match gateway.gateway().await {
                Ok(urls) => candidates = urls,
                Err(error) => shared.error(format!("asking the host assigner: {error}")),
            }
        }
        let opened = {
            let _permit = shared.handshakes.acquire().await;
            open_first(&candidates, &spec).await
        };
        match opened {
            Ok((conn, url)) => {
                failures = 0;
                if url != node {
                    shared.count(|c| c.moved += 1);
                    node = url;
                }
                shared.count(|c| c.open += 1);
                let ended = state.session(conn, &spec, &shared, &mut commands).await;
                shared.count(|c| c.open -= 1);
                match ended {
                    Ended::Finished => {
                        *shared
                            .nodes
                            .lock()
                            .expect("nodes lock")
                            .entry(node)
                            .or_default() += 1;
                        return;
                    }
                    Ended::Cut => {}
                    Ended::Dropped => shared.count(|c| c.dropped += 1),
                }
            }
            Err(error) => {
                failures += 1;
                shared.count(|c| c.connect_failures += 1);
                shared.error(format!("{error:#}"));
            }
        }
        if !backoff(failures, &shared, &mut commands).await {
            return;
        }
    }
}

/// Opens a connection to the first of `urls` that takes it; the last failure otherwise.
async fn open_first(urls: &[String], spec: &DeviceSpec) -> anyhow::Result<(Conn, String)> {
    let mut failure = None;
    for url in urls {
        match Conn::open(url, &spec.token, spec.source).await {
            Ok(conn) => return Ok((conn, url.clone())),
            Err(error) => failure = Some(error),
        }
    }
    Err(failure.unwrap_or_else(|| anyhow::anyhow!("no node to connect to")))
}

/// Waits before the next attempt (exponential, with jitter: half to all of the step); false if
/// told to finish. Sends asked of the device meanwhile are counted as `skipped`.
async fn backoff(
    failures: u32,
    shared: &Shared,
    commands: &mut mpsc::Receiver<DeviceCommand>,
) -> bool {
    let cap = Duration::from_millis(100 << failures.min(6)).min(MAX_BACKOFF);
    let wait = cap.mul_f64(rand::rng().random_range(0.5..1.0));
    let sleep = tokio::time::sleep(wait);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            command = commands.recv() => match command {
                None | Some(DeviceCommand::Finish) => return false,
                Some(DeviceCommand::Send) => shared.count(|c| c.skipped += 1),
                Some(DeviceCommand::Cut) => {}
            },
        }
    }
}

/// What a device remembers across its connections.
#[derive(Default)]
struct DeviceState {
    /// Highest seq seen per conversation (over all connections).
    highest: HashMap<ConversationId, i64>,
    /// Highest seq reported in a `delivered` frame per conversation.
    reported: HashMap<ConversationId, i64>,
    /// Sends not yet acked: id -> (first send time, conversation, frame), resent after a
    /// reconnect.
    pending: HashMap<String, (Instant, ConversationId, String)>,
    /// Sends refused with a retry time, by when to make them again (in refusal order).
    retries: VecDeque<(tokio::time::Instant, String)>,
}

impl DeviceState {
    /// Runs one connection until it ends: resends every pending message first, then takes in
    /// frames and commands, pings at a third of the idle timeout and reports deliveries.
    async fn session(
        &mut self,
        mut conn: Conn,
        spec: &DeviceSpec,
        shared: &Shared,
        commands: &mut mpsc::Receiver<DeviceCommand>,
    ) -> Ended {
        let mut seen: HashMap<ConversationId, i64> = HashMap::new();
        // Every pending send is made again now; waits from the old connection are void.
        self.retries.clear();
        for (_, _, frame) in self.pending.values() {
            if conn.send_text(frame.clone()).await.is_err() {
                return Ended::Dropped;
            }
        }
        let heartbeat = conn.idle_timeout / 3;
        let jitter = heartbeat.mul_f64(rand::rng().random_range(0.0..1.0));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + jitter, heartbeat);
        let mut report = tokio::time::interval(shared.ack_interval);
        loop {
            let sent = tokio::select! {
                incoming = conn.next() => match incoming {
                    Ok(Incoming::Frame(frame)) => {
                        self.receive(*frame, &mut seen, shared);
                        Ok(())
                    }
                    Ok(Incoming::Closed(code)) => {
                        shared.error(format!("closed by the server (code {code:?})"));
                        return Ended::Dropped;
                    }
                    Err(error) => {
                        shared.error(format!("{error:#}"));
                        return Ended::Dropped;
                    }
                },
                command = commands.recv() => match command {
                    None | Some(DeviceCommand::Finish) => {
                        let _ = self.report_delivered(&mut conn).await;
                        conn.close().await;
                        return Ended::Finished;
                    }
                    Some(DeviceCommand::Cut) => return Ended::Cut,
                    Some(DeviceCommand::Send) => self.send(&mut conn, spec, shared).await,
                },
                () = sleep_until_first(&self.retries) => self.retry_due(&mut conn, shared).await,
                _ = ping.tick() => conn.send(&ClientFrame::Ping { nonce: None }).await,
                _ = report.tick() => self.report_delivered(&mut conn).await,
            };
            if let Err(error) = sent {
                shared.error(format!("{error:#}"));
                return Ended::Dropped;
            }
        }
    }

    /// Counts one frame from the server: a message seen twice on one connection is a
    /// duplicate, one seen on an earlier connection is redelivered; an ack ends a pending send;
    /// an error frame either schedules a retry or refuses the send for good.
    fn receive(
        &mut self,
        frame: ServerFrame,
        seen: &mut HashMap<ConversationId, i64>,
        shared: &Shared,
    ) {
        match frame {
            ServerFrame::Message(message) => {
                let on_this = seen.entry(message.conversation_id).or_insert(0);
                if message.seq <= *on_this {
                    shared.count(|c| c.duplicates += 1);
                    return;
                }
                *on_this = message.seq;
                let highest = self.highest.entry(message.conversation_id).or_insert(0);
                if message.seq <= *highest {
                    shared.count(|c| c.redelivered += 1);
                    return;
                }
                *highest = message.seq;
                match payload::stamp(&message.ciphertext) {
                    Some((sent, run)) if run == shared.run => {
                        let latency = payload::now_micros().saturating_sub(sent);
                        stats::record(&mut shared.delivery.lock().expect("lock"), latency);
                        shared.count(|c| c.delivered += 1);
                    }
                    _ => shared.count(|c| c.stale += 1),
                }
            }
            ServerFrame::Ack(ack) => {
                if let Some((at, _, _)) = self.pending.remove(&ack.client_msg_id) {
                    let latency = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                    stats::record(&mut shared.ack.lock().expect("lock"), latency);
                    shared.count(|c| c.acked += 1);
                }
            }
            ServerFrame::Error(error) => {
                let refused = error
                    .client_msg_id
                    .filter(|id| self.pending.contains_key(id));
                let wait = error.retry_after_ms.map(Duration::from_millis).or_else(|| {
                    natter_client::is_retryable(&error.code)
                        .then_some(natter_client::RETRY_AFTER_DEFAULT)
                });
                match (refused, wait) {
                    // As natter-client does: the same message again once the wait is over.
                    (Some(id), Some(wait)) => {
                        let at = tokio::time::Instant::now() + wait;
                        self.retries.push_back((at, id));
                        shared.count(|c| c.retried += 1);
                    }
                    (refused, _) => {
                        if let Some(id) = refused {
                            self.pending.remove(&id);
                            shared.count(|c| c.refused += 1);
                        }
                        shared.error(format!("error frame: {} {}", error.code, error.message));
                    }
                }
            }
            ServerFrame::Synced { .. } => shared.count(|c| c.syncs += 1),
            _ => {}
        }
    }

    /// Sends one message to a random conversation of this device and keeps it pending until
    /// acked; it waits behind refused sends to keep their order. Errors are the connection's.
    async fn send(
        &mut self,
        conn: &mut Conn,
        spec: &DeviceSpec,
        shared: &Shared,
    ) -> anyhow::Result<()> {
        let Some(&conversation_id) = spec.conversations.choose(&mut rand::rng()) else {
            return Ok(());
        };
        // Time-ordered, as natter-client makes them (the server indexes them cheaper).
        let client_msg_id = uuid::Uuid::now_v7().to_string();
        let frame = send_frame(conversation_id, &client_msg_id, shared)?;
        self.pending.insert(
            client_msg_id.clone(),
            (Instant::now(), conversation_id, frame.clone()),
        );
        shared.count(|c| c.sent += 1);
        // Behind sends waiting to be made again, as a client keeps its order.
        if let Some(&(at, _)) = self.retries.back() {
            self.retries.push_back((at, client_msg_id));
            return Ok(());
        }
        conn.send_text(frame).await
    }

    /// Makes again the refused sends whose wait is over, in the order they were refused.
    /// The server stored none of them, so each body is stamped anew: delivery latency counts
    /// from the send the server accepted (the wait before it shows in `send_to_ack`).
    async fn retry_due(&mut self, conn: &mut Conn, shared: &Shared) -> anyhow::Result<()> {
        let now = tokio::time::Instant::now();
        while let Some((at, id)) = self.retries.front() {
            if *at > now {
                break;
            }
            if let Some((_, conversation_id, frame)) = self.pending.get_mut(id) {
                *frame = send_frame(*conversation_id, id, shared)?;
                conn.send_text(frame.clone()).await?;
            }
            self.retries.pop_front();
        }
        Ok(())
    }

    /// Sends `delivered` for every conversation whose highest seq moved since the last report.
    async fn report_delivered(&mut self, conn: &mut Conn) -> anyhow::Result<()> {
        for (&conversation_id, &seq) in &self.highest {
            if self.reported.get(&conversation_id) != Some(&seq) {
                conn.send(&ClientFrame::Delivered {
                    conversation_id,
                    seq,
                })
                .await?;
                self.reported.insert(conversation_id, seq);
            }
        }
        Ok(())
    }
}

/// A `send` frame of a new body stamped now, as JSON text; fails only if it does not
/// serialize.
fn send_frame(
    conversation_id: ConversationId,
    client_msg_id: &str,
    shared: &Shared,
) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&ClientFrame::Send(SendMessage {
        conversation_id,
        client_msg_id: client_msg_id.to_owned(),
        ciphertext: payload::make(shared.run, shared.payload_bytes),
        client_ts: None,
    }))?)
}

/// Sleeps until the first refused send may be made again, or forever when none waits.
async fn sleep_until_first(retries: &VecDeque<(tokio::time::Instant, String)>) {
    match retries.front() {
        Some((at, _)) => tokio::time::sleep_until(*at).await,
        None => std::future::pending().await,
    }
}
