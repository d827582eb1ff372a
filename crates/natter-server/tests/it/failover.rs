//! Failover under traffic: three real natterd processes in one cluster, end-to-end encrypted
//! devices sending all the while. One node is killed (`kill -9`), or every node is restarted
//! in turn (SIGTERM); every acknowledged message still reaches every other device of its
//! conversation exactly once, and every device finds its way back through the gateway.
//!
//! Every client starts with the first node's URL, so losing that node also moves REST calls
//! and gateway lookups to the nodes the client learned about.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use natter_client::{Client, ClientError, Device, Event, StoredMessage};
use natter_proto::ConversationId;
use natter_server::ratelimit::Kind;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::helpers::{
    Backend, PATIENCE, TestDatabase, cluster_name, connect_users, eventually, gateway, sample,
    scrape, ws_url,
};
use crate::process::Natterd;

/// How often each sending device queues a message.
const SEND_EVERY: Duration = Duration::from_millis(200);
const PASSWORD: &str = "password123";
const USERS: [&str; 6] = ["ana", "ben", "cat", "dan", "eve", "fay"];
/// (user, device name): the first three users have a second device.
const DEVICES: [(usize, &str); 9] = [
    (0, "laptop"),
    (0, "phone"),
    (1, "laptop"),
    (1, "phone"),
    (2, "laptop"),
    (2, "phone"),
    (3, "laptop"),
    (4, "laptop"),
    (5, "laptop"),
];
/// The direct conversations, by user; a room holds everyone as well.
const DIRECTS: [(usize, usize); 3] = [(0, 1), (2, 3), (4, 5)];
/// The devices that send, each to its user's direct conversation and the room in turn.
const SENDERS: [usize; 5] = [0, 3, 4, 6, 8];

/// Three natterd processes on one fresh PostgreSQL database and one cluster of their own.
struct Cluster {
    nodes: Vec<Natterd>,
    args: Vec<String>,
    dir: tempfile::TempDir,
    // Declared last: the nodes stop before their database is dropped.
    database: TestDatabase,
}

impl Cluster {
    /// Starts the nodes and waits until each one's gateway lists all three; `None` when
    /// PostgreSQL or Redis is not configured here.
    async fn start() -> Option<Self> {
        let redis = natter_test_support::redis_url()?;
        let database = TestDatabase::create(Backend::Postgres).await?;
        let limits = Kind::ALL
            .map(|kind| format!("{}=1000000000:1000000000", kind.name()))
            .join(",");
        let mut cluster = Self {
            nodes: Vec::new(),
            args: vec![
                "--redis-url".into(),
                redis,
                "--cluster-name".into(),
                cluster_name(),
                "--limit".into(),
                limits,
                // Closes spread over two seconds rather than natterd's five: a shorter test.
                "--drain-secs".into(),
                "2".into(),
            ],
            dir: tempfile::tempdir().unwrap(),
            database,
        };
        for _ in 0..3 {
            let node = cluster.start_node(crate::process::free_port()).await;
            cluster.nodes.push(node);
        }
        cluster.wait_for_full_gateway().await;
        Some(cluster)
    }

    /// Starts a node of this cluster listening on `port`.
    async fn start_node(&self, port: u16) -> Natterd {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let url = self.database.url_text();
        Natterd::start_on(port, self.dir.path(), Some(&url), &args).await
    }

    /// Waits until every node's gateway lists exactly the running nodes (heartbeats are
    /// periodic, and a stopped node is withdrawn).
    async fn wait_for_full_gateway(&self) {
        let mut expected: Vec<String> = self.nodes.iter().map(|n| ws_url(&n.url)).collect();
        expected.sort();
        eventually("every gateway to list the three nodes", async || {
            for node in &self.nodes {
                let mut listed = gateway(&node.url).await.map(|g| g.nodes);
                if let Some(listed) = &mut listed {
                    listed.sort();
                }
                if listed.as_ref() != Some(&expected) {
                    return Err((node.url.clone(), listed));
                }
            }
            Ok(())
        })
        .await;
    }
}

/// The WebSocket connections open on a node now, from its metrics: connections accepted
/// less connections ended (counters, unlike the periodically set gauge).
async fn connections_on(node: &Natterd) -> u64 {
    let metrics = scrape(&node.admin_url).await;
    let open =
        sample(&metrics, "natter_connects_total") - sample(&metrics, "natter_disconnects_total");
    open as u64
}

/// One device running live ([`Device::run`]), with every event it reported and when.
struct Live {
    user: usize,
    device: Device,
    events: Arc<Mutex<Vec<(Instant, Event)>>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ClientError>>,
}

impl Live {
    fn start(user: usize, device: Device) -> Self {
        let (sender, mut received) = mpsc::channel(1024);
        let (stop, stopped) = oneshot::channel::<()>();
        let running = device.clone();
        let task = tokio::spawn(async move {
            running
                .run(sender, async move {
                    let _ = stopped.await;
                })
                .await
        });
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&events);
        tokio::spawn(async move {
            while let Some(event) = received.recv().await {
                log.lock().unwrap().push((Instant::now(), event));
            }
        });
        Self {
            user,
            device,
            events,
            stop,
            task,
        }
    }

    /// The longest time this device was away: from a drop to the next completed sync.
    fn longest_outage(&self) -> Duration {
        let mut dropped_at = None;
        let mut longest = Duration::ZERO;
        for (at, event) in self.events() {
            match event {
                Event::Disconnected(_) => {
                    dropped_at.get_or_insert(at);
                }
                Event::Synced => {
                    if let Some(dropped) = dropped_at.take() {
                        longest = longest.max(at - dropped);
                    }
                }
                _ => {}
            }
        }
        longest
    }

    /// Stops the device; it ran until stopped (no refused token).
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .unwrap()
            .expect("the device ran until stopped");
    }

    /// A copy of the events so far.
    fn events(&self) -> Vec<(Instant, Event)> {
        self.events.lock().unwrap().clone()
    }

    /// Whether the device is connected and synced now, having dropped after `since`: `None`
    /// while it is not back, else when it was back (`None` inside if it never dropped).
    fn back_since(&self, since: Instant) -> Option<Option<Instant>> {
        let events = self.events();
        let mut dropped = false;
        let mut back = None;
        let mut up = false;
        for (at, event) in events {
            match event {
                Event::Disconnected(_) => {
                    up = false;
                    dropped |= at >= since;
                }
                Event::Synced => {
                    up = true;
                    if dropped {
                        back = Some(at);
                    }
                }
                _ => {}
            }
        }
        up.then_some(back)
    }
}

/// A message a device queued.
struct Queued {
    sender: usize,
    conversation: ConversationId,
    text: String,
}

/// The sending devices at work.
struct Traffic {
    stop: watch::Sender<bool>,
    senders: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// Stops queueing new messages (what is queued is still sent).
    async fn stop(self) {
        self.stop.send(true).unwrap();
        for sender in self.senders {
            sender.await.unwrap();
        }
    }
}

/// Six users on nine devices, all connected to each other, with three direct conversations
/// and one room, every device live.
struct Chat {
    devices: Vec<Live>,
    /// Each conversation and its members (by user).
    conversations: Vec<(ConversationId, Vec<usize>)>,
    /// Every queued message, by `client_msg_id`.
    sent: Arc<Mutex<HashMap<String, Queued>>>,
    _stores: tempfile::TempDir,
}

impl Chat {
    /// Registers and logs everyone in through the first node, connects them and opens the
    /// conversations; then brings every device online, with at least one on each node.
    async fn start(cluster: &Cluster) -> Self {
        let first = &cluster.nodes[0];
        let stores = tempfile::tempdir().unwrap();
        let client = Client::new(&first.url).unwrap();
        for name in USERS {
            client.register(name, PASSWORD, None).await.unwrap();
        }
        let mut devices = Vec::new();
        let mut recovery_keys = HashMap::new();
        for (user, name) in DEVICES {
            let path = stores.path().join(format!("{}-{name}.db", USERS[user]));
            let device = Device::login(&first.url, USERS[user], PASSWORD, name, &path, "store")
                .await
                .expect("logging in");
            // A user's first device shows the recovery key; later ones are approved with it.
            match device.take_recovery_key().await.unwrap() {
                Some(key) => {
                    recovery_keys.insert(user, key);
                }
                None => {
                    device.recover(&recovery_keys[&user]).await.unwrap();
                }
            }
            devices.push((user, device));
        }
        let firsts: Vec<&Device> = (0..USERS.len())
            .map(|u| &devices.iter().find(|(user, _)| *user == u).unwrap().1)
            .collect();
        for a in 0..USERS.len() {
            for b in a + 1..USERS.len() {
                connect_users(firsts[a].session(), firsts[b].session()).await;
            }
        }
        let mut conversations = Vec::new();
        for (a, b) in DIRECTS {
            let direct = firsts[a]
                .session()
                .open_direct(firsts[b].user_id())
                .await
                .unwrap();
            conversations.push((direct.summary.id, vec![a, b]));
        }
        let others: Vec<_> = firsts[1..].iter().map(|d| d.user_id()).collect();
        let room = firsts[0]
            .session()
            .create_room("everyone", &others)
            .await
            .unwrap();
        conversations.push((room.summary.id, (0..USERS.len()).collect()));

        let mut chat = Self {
            devices: Vec::new(),
            conversations,
            sent: Arc::default(),
            _stores: stores,
        };
        for (user, device) in devices {
            chat.devices.push(Live::start(user, device));
        }
        chat.wait_all_back(Instant::now()).await;
        // The gateway picks the less loaded of two random nodes, by loads seconds old: move
        // devices (a reconnecting device asks again) until every node has one.
        for moved in 0.. {
            let mut empty = Vec::new();
            for node in &cluster.nodes {
                if connections_on(node).await == 0 {
                    empty.push(node.url.clone());
                }
            }
            if empty.is_empty() {
                break;
            }
            assert!(moved < 50, "no device lands on {empty:?}");
            chat.restart(moved % DEVICES.len()).await;
        }
        chat
    }

    /// Starts the sending devices, each queueing a message every [`SEND_EVERY`], and
    /// returns once the server has acked a few.
    async fn traffic(&self) -> Traffic {
        let (stop, stopped) = watch::channel(false);
        let senders = SENDERS
            .iter()
            .map(|&index| {
                let live = &self.devices[index];
                let device = live.device.clone();
                let mut stopped = stopped.clone();
                let sent = Arc::clone(&self.sent);
                let targets: Vec<ConversationId> = self
                    .conversations
                    .iter()
                    .filter(|(_, members)| members.contains(&live.user))
                    .map(|(id, _)| *id)
                    .collect();
                tokio::spawn(async move {
                    for i in 0.. {
                        let conversation = targets[i % targets.len()];
                        let text = format!("device {index} message {i}");
                        let id = device.send_text(conversation, &text).await.unwrap();
                        let queued = Queued {
                            sender: index,
                            conversation,
                            text,
                        };
                        sent.lock().unwrap().insert(id, queued);
                        tokio::select! {
                            _ = stopped.wait_for(|stop| *stop) => return,
                            () = tokio::time::sleep(SEND_EVERY) => {}
                        }
                    }
                })
            })
            .collect();
        eventually("traffic to flow", async || match self.acked() {
            acked if acked >= 20 => Ok(()),
            acked => Err(acked),
        })
        .await;
        Traffic { stop, senders }
    }

    /// How many queued messages the server has acked so far.
    fn acked(&self) -> usize {
        let acked = |live: &Live| {
            live.events()
                .iter()
                .filter(|(_, e)| matches!(e, Event::Sent { .. }))
                .count()
        };
        self.devices.iter().map(acked).sum()
    }

    /// Waits until every device is connected and synced; returns, for each, when it was
    /// back if it dropped after `since`.
    async fn wait_all_back(&self, since: Instant) -> Vec<Option<Instant>> {
        eventually("every device to be connected and synced", async || {
            let back: Vec<_> = self.devices.iter().map(|d| d.back_since(since)).collect();
            back.iter().copied().collect::<Option<Vec<_>>>().ok_or(back)
        })
        .await
    }

    /// The longest any device was away.
    fn longest_outage(&self) -> Duration {
        self.devices
            .iter()
            .map(Live::longest_outage)
            .max()
            .unwrap_or_default()
    }

    /// Waits until every queued message is acked and has reached every other device of its
    /// conversation, then checks that each arrived exactly once, at its acked seq, readable,
    /// and that the server stored each once. Returns how many messages were checked.
    async fn verify(&self) -> usize {
        // The senders have stopped: take what they queued.
        let sent = std::mem::take(&mut *self.sent.lock().unwrap());
        let acked = eventually("every queued message to be acked", async || {
            let acked = self.acks();
            if acked.len() == sent.len() {
                Ok(acked)
            } else {
                Err(format!("{} of {}", acked.len(), sent.len()))
            }
        })
        .await;
        for live in &self.devices {
            for (_, event) in live.events() {
                assert!(!matches!(event, Event::Failed { .. }), "refused: {event:?}");
            }
        }
        let expected = |live_index: usize| -> Vec<(&String, &Queued)> {
            let user = self.devices[live_index].user;
            sent.iter()
                .filter(|(_, q)| q.sender != live_index && self.is_member(q.conversation, user))
                .collect()
        };
        // Which device lacks which message in readable form (and what it has of it).
        let missing = || -> Vec<(usize, &Queued, Vec<StoredMessage>)> {
            let mut missing = Vec::new();
            for (index, live) in self.devices.iter().enumerate() {
                let received = received(&live.events());
                for (id, queued) in expected(index) {
                    let copies = received.get(id.as_str()).cloned().unwrap_or_default();
                    if !copies.iter().any(|m| m.body.is_ok()) {
                        missing.push((index, queued, copies));
                    }
                }
            }
            missing
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            let missing = missing();
            if missing.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let mut report = Vec::new();
                for (index, queued, copies) in missing.iter().take(10) {
                    let stored = self.devices[*index]
                        .device
                        .messages(queued.conversation, 10_000)
                        .await
                        .unwrap();
                    let stored = stored
                        .iter()
                        .find(|m| m.body.as_deref() == Ok(&queued.text));
                    report.push(format!(
                        "device {index} lacks {:?}: events {copies:?}, its store {stored:?}",
                        queued.text
                    ));
                }
                panic!(
                    "{} acked deliveries never arrived, such as:\n{}",
                    missing.len(),
                    report.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (index, live) in self.devices.iter().enumerate() {
            let received = received(&live.events());
            for (id, queued) in expected(index) {
                let copies = &received[id];
                let seq = acked[id];
                assert!(
                    copies.iter().all(|m| m.seq == seq),
                    "device {index} got {id} at another seq than its ack's {seq}: {copies:?}"
                );
                let readable: Vec<_> = copies.iter().filter(|m| m.body.is_ok()).collect();
                assert_eq!(readable.len(), 1, "device {index} got {id} {copies:?}");
                assert_eq!(readable[0].body.as_deref(), Ok(queued.text.as_str()));
            }
        }
        self.verify_stored(&sent).await;
        sent.len()
    }

    /// Every `Sent` event: the acked seq by `client_msg_id` (each acked once).
    fn acks(&self) -> HashMap<String, i64> {
        let mut acked = HashMap::new();
        for live in &self.devices {
            for (_, event) in live.events() {
                if let Event::Sent {
                    client_msg_id, seq, ..
                } = event
                {
                    assert!(
                        acked.insert(client_msg_id.clone(), seq).is_none(),
                        "{client_msg_id} acked twice"
                    );
                }
            }
        }
        acked
    }

    fn is_member(&self, conversation: ConversationId, user: usize) -> bool {
        self.conversations
            .iter()
            .any(|(id, members)| *id == conversation && members.contains(&user))
    }

    /// The server's history of each conversation holds each queued message exactly once.
    async fn verify_stored(&self, sent: &HashMap<String, Queued>) {
        for (conversation, members) in &self.conversations {
            let reader = self.devices.iter().find(|d| d.user == members[0]).unwrap();
            let mut stored: HashMap<String, usize> = HashMap::new();
            let mut after = 0;
            loop {
                let page = reader
                    .device
                    .session()
                    .history(*conversation, Some(after), None, Some(500))
                    .await
                    .unwrap();
                let Some(last) = page.last() else { break };
                after = last.seq;
                for message in page {
                    *stored.entry(message.client_msg_id).or_default() += 1;
                }
            }
            let mine = sent.iter().filter(|(_, q)| q.conversation == *conversation);
            for (id, _) in mine {
                assert_eq!(stored.get(id), Some(&1), "{id} stored other than once");
            }
        }
    }

    /// Stops device `index` and starts it again, connected and synced: it reconnects through
    /// the gateway.
    async fn restart(&mut self, index: usize) {
        let live = self.devices.remove(index);
        let (user, device) = (live.user, live.device.clone());
        live.stop().await;
        self.devices.insert(index, Live::start(user, device));
        self.wait_all_back(Instant::now()).await;
    }

    /// Stops every device.
    async fn stop(self) {
        for live in self.devices {
            live.stop().await;
        }
    }
}

/// The messages a device received, by `client_msg_id` (an unreadable one may be followed
/// by the same message once its key arrives).
fn received(events: &[(Instant, Event)]) -> HashMap<String, Vec<StoredMessage>> {
    let mut received: HashMap<String, Vec<StoredMessage>> = HashMap::new();
    for (_, event) in events {
        if let Event::Message(message) = event {
            received
                .entry(message.client_msg_id.clone())
                .or_default()
                .push(message.clone());
        }
    }
    received
}

/// How long after `since` the last device that dropped was back, and how many dropped.
fn summary(back: &[Option<Instant>], since: Instant) -> (usize, Option<Duration>) {
    let dropped = back.iter().flatten();
    (dropped.clone().count(), dropped.max().map(|at| *at - since))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_reach_every_device_once_when_a_node_is_killed() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let chat = Chat::start(&cluster).await;
    let traffic = chat.traffic().await;

    let on_killed = connections_on(&cluster.nodes[0]).await;
    // Chat::start put a device on every node: the kill drops at least one.
    assert!(on_killed > 0, "no device is on the node to be killed");
    let killed_url = cluster.nodes[0].url.clone();
    let killed = Instant::now();
    cluster.nodes[0].signal("KILL").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    traffic.stop().await;
    let back = chat.wait_all_back(killed).await;
    let (dropped, all_back) = summary(&back, killed);
    assert!(
        dropped as u64 >= on_killed,
        "{on_killed} devices were on the killed node, {dropped} reconnected"
    );
    for (live, back) in chat.devices.iter().zip(&back) {
        if back.is_some() {
            let now = live.device.session().client().base_url();
            assert_ne!(
                now, killed_url,
                "a reconnected device's client moved off the dead node"
            );
        }
    }
    let checked = chat.verify().await;
    eprintln!(
        "kill -9: {on_killed} of {} devices were on the killed node; all back {all_back:?} \
         after the kill (longest outage {:?}); {checked} messages each reached every other \
         member device once",
        chat.devices.len(),
        chat.longest_outage(),
    );
    chat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_reach_every_device_once_through_a_rolling_restart() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let chat = Chat::start(&cluster).await;
    let traffic = chat.traffic().await;

    let started = Instant::now();
    for index in 0..cluster.nodes.len() {
        let port = cluster.nodes[index].url.rsplit(':').next().unwrap();
        let port: u16 = port.parse().unwrap();
        let signalled = Instant::now();
        let (status, log) = cluster.nodes[index].signal("TERM").await;
        assert!(
            status.success(),
            "node {index} exits cleanly: {status}\n{log}"
        );
        let drained = signalled.elapsed();
        // The replacement listens where the old node did, as a restarted process would.
        cluster.nodes[index] = cluster.start_node(port).await;
        cluster.wait_for_full_gateway().await;
        eprintln!(
            "rolling restart: node {index} drained and exited in {drained:?}, replaced and \
             listed again after {:?}",
            signalled.elapsed()
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    traffic.stop().await;
    let (dropped, all_back) = summary(&chat.wait_all_back(started).await, started);
    let checked = chat.verify().await;
    eprintln!(
        "rolling restart: {dropped} of {} devices moved; all back {all_back:?} after the first \
         SIGTERM (longest outage {:?}); {checked} messages each reached every other member \
         device once",
        chat.devices.len(),
        chat.longest_outage(),
    );
    chat.stop().await;
}
