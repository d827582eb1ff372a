//! Receipt coalescing: in a busy conversation, cursor moves go out as one `receipts` frame per
//! conversation every [`WINDOW`] instead of one `receipt` frame each.
//!
//! In a 1,000-member room every member's `delivered` cursor moves after each post, and each
//! move concerns the post's sender: a thousand frames per post to one device, more work than
//! the posts themselves (docs/benchmarks.md). Here the first move in a quiet conversation goes
//! out at once (a 1:1 chat sees its receipts without delay) and opens a window; moves during
//! the window are merged (the latest per device) and sent together when it closes to the
//! senders of the messages the moves covered (looked up once per window, with the blocks between
//! them and the movers). A mover's other devices get that mover's own moves only: in a big room
//! nearly every member moves in every window, and sending each of them everyone's moves was most
//! of the work. The window stays open while moves keep coming.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use natter_proto::ws::{Receipt, ServerFrame};
use natter_proto::{ConversationId, DeviceId, UserId};

use crate::fanout::{Bus, Outbound, encode};
use crate::store::{Store, StoreError};

/// How long cursor moves in one conversation are gathered before they go out together.
pub const WINDOW: Duration = Duration::from_millis(250);

/// Moves gathered in one conversation's open window.
#[derive(Default)]
struct Gathered {
    /// The seqs the moves covered, `(after, up_to]`, merged into one span.
    covered: Option<(i64, i64)>,
    /// The latest move per device.
    receipts: HashMap<DeviceId, Receipt>,
}

/// Coalesces receipts per conversation on this node.
pub struct Receipts {
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    open: Mutex<HashMap<ConversationId, Gathered>>,
}

impl Receipts {
    /// Coalescing over `bus`, finding who a move concerns in `store`.
    pub fn new(bus: Arc<dyn Bus>, store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            bus,
            store,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Tells whom a cursor move concerns (the current members who sent the messages it covered,
    /// `(after, up_to]`, unless in a block with the mover, and the mover's other devices) about
    /// it: now if the conversation is quiet, else with the rest of its window. Receipts are
    /// live hints (the REST receipts endpoint answers on demand): a store failure drops this
    /// one, logged, and the move itself is stored already.
    pub async fn push(self: &Arc<Self>, covered: (i64, i64), receipt: Receipt) {
        let conversation = receipt.conversation_id;
        {
            let mut open = self.open.lock().expect("receipts lock");
            if let Some(gathered) = open.get_mut(&conversation) {
                gathered.covered = Some(gathered.covered.map_or(covered, |(after, up_to)| {
                    (after.min(covered.0), up_to.max(covered.1))
                }));
                gathered.receipts.insert(receipt.device_id, receipt);
                return;
            }
            open.insert(conversation, Gathered::default());
        }
        let this = Arc::clone(self);
        tokio::spawn(async move { this.flush_until_quiet(conversation).await });
        let mut recipients = match self
            .store
            .senders_between(conversation, covered, Some(receipt.user_id))
            .await
        {
            Ok(senders) => senders,
            Err(e) => return dropped(conversation, &e),
        };
        if !recipients.contains(&receipt.user_id) {
            recipients.push(receipt.user_id);
        }
        let skip = receipt.device_id;
        self.bus.publish_to_users(
            &recipients,
            Some(skip),
            Outbound::Frame {
                kind: "receipt",
                frame: encode(&ServerFrame::Receipt(receipt)),
            },
        );
    }

    /// At the end of each window, sends what it gathered; closes the window once one passes
    /// with no moves.
    async fn flush_until_quiet(&self, conversation: ConversationId) {
        loop {
            tokio::time::sleep(WINDOW).await;
            let gathered = {
                let mut open = self.open.lock().expect("receipts lock");
                match open.get_mut(&conversation) {
                    Some(gathered) if !gathered.receipts.is_empty() => std::mem::take(gathered),
                    _ => {
                        open.remove(&conversation);
                        return;
                    }
                }
            };
            let covered = gathered.covered.unwrap_or_default();
            let mut movers = gathered.receipts.values().map(|r| r.user_id);
            let first_mover = movers.next();
            let one_mover = first_mover.filter(|&first| movers.all(|mover| mover == first));
            let audience = async {
                // One mover (a 1:1 chat, mostly): the lookup leaves out the senders in a block
                // with it, as for a quiet conversation's first move, in one query.
                if let Some(mover) = one_mover {
                    let senders = self
                        .store
                        .senders_between(conversation, covered, Some(mover))
                        .await?;
                    return Ok((senders, Vec::new()));
                }
                let senders = self
                    .store
                    .senders_between(conversation, covered, None)
                    .await?;
                // Only blocks between a sender and a mover matter; with no sender, none do.
                let blocks = match senders.as_slice() {
                    [] => Vec::new(),
                    senders => self.store.blocks_with(conversation, senders).await?,
                };
                Ok::<_, StoreError>((senders, blocks))
            };
            let (senders, blocks) = match audience.await {
                Ok(audience) => audience,
                Err(e) => {
                    dropped(conversation, &e);
                    continue;
                }
            };
            let receipts: Vec<Receipt> = gathered.receipts.into_values().collect();
            metrics::histogram!("natter_receipts_coalesced").record(receipts.len() as f64);
            self.tell_movers(&senders, &receipts);
            self.tell_senders(&senders, &blocks, receipts);
        }
    }

    /// Sends a window's receipts to `senders` in one shared frame, except that a sender in a
    /// block (either way) with a mover gets a frame of their own without that mover's moves.
    /// Senders that moved get their own receipts back: they already know them.
    fn tell_senders(
        &self,
        senders: &[UserId],
        blocks: &[(UserId, UserId)],
        receipts: Vec<Receipt>,
    ) {
        let apart = |a: UserId, b: UserId| blocks.contains(&(a, b)) || blocks.contains(&(b, a));
        let (shared, apart_from_some): (Vec<UserId>, Vec<UserId>) = senders
            .iter()
            .partition(|&&sender| !receipts.iter().any(|r| apart(sender, r.user_id)));
        for sender in apart_from_some {
            let visible: Vec<Receipt> = receipts
                .iter()
                .filter(|r| !apart(sender, r.user_id))
                .cloned()
                .collect();
            if !visible.is_empty() {
                self.send_receipts(&[sender], None, visible);
            }
        }
        if !shared.is_empty() {
            self.send_receipts(&shared, None, receipts);
        }
    }

    /// Tells each mover who is not among `senders` about their own moves, on their other
    /// devices.
    fn tell_movers(&self, senders: &[UserId], receipts: &[Receipt]) {
        let mut by_mover: HashMap<UserId, Vec<Receipt>> = HashMap::new();
        for receipt in receipts.iter().filter(|r| !senders.contains(&r.user_id)) {
            by_mover
                .entry(receipt.user_id)
                .or_default()
                .push(receipt.clone());
        }
        for (mover, own) in by_mover {
            // One device moved: the others need it, that one knows. Several: each gets all.
            let skip = match own.as_slice() {
                [only] => Some(only.device_id),
                _ => None,
            };
            self.send_receipts(&[mover], skip, own);
        }
    }

    /// One `receipts` frame to the devices of `users` (but `skip`).
    fn send_receipts(&self, users: &[UserId], skip: Option<DeviceId>, receipts: Vec<Receipt>) {
        self.bus.publish_to_users(
            users,
            skip,
            Outbound::Frame {
                kind: "receipts",
                frame: encode(&ServerFrame::Receipts { receipts }),
            },
        );
    }
}

/// Logs receipts that could not be sent because the store failed.
fn dropped(conversation: ConversationId, error: &StoreError) {
    tracing::warn!(conversation.id = %conversation, %error, "receipts dropped");
}

/// Checks of the receipts over a real store, which this crate does not have: natter-store's
/// tests run each on both backends.
#[cfg(feature = "store-checks")]
pub mod checks {
    use super::*;
    use crate::fanout::{LocalBus, Registration, Registry};
    use crate::store::{NewMessage, testing};
    use natter_proto::connections::ConnectionState;

    /// A room in a real store, and coalescing into a registry.
    struct Room {
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        receipts: Arc<Receipts>,
        conversation: ConversationId,
        /// The members, each with one device.
        members: Vec<(UserId, DeviceId)>,
    }

    /// A room of `size` members in `store` where member `posters[i]` sent the message with seq
    /// `i + 1`.
    async fn room(store: Arc<dyn Store>, size: usize, posters: &[usize]) -> Room {
        let users = testing::users(store.as_ref(), (0..size).map(|i| format!("member{i}"))).await;
        let members: Vec<(UserId, DeviceId)> =
            users.iter().map(|&user| (user, DeviceId::new())).collect();
        let conversation = ConversationId::new();
        store
            .create_room(conversation, "room", users[0], &users[1..], 0)
            .await
            .unwrap();
        for (n, &poster) in posters.iter().enumerate() {
            let (sender_id, sender_device) = members[poster];
            let message = NewMessage {
                conversation_id: conversation,
                sender_id,
                sender_device,
                client_msg_id: &format!("post-{n}"),
                client_ts: None,
                ciphertext: "opaque",
                server_ts: 0,
            };
            store.append(&message, Box::new(|_| {})).await.unwrap();
        }
        // The lookup a window's first move makes, once: a cold first query (a new PostgreSQL
        // connection) could otherwise outlast the window it opens.
        store
            .senders_between(conversation, (0, 0), None)
            .await
            .unwrap();
        let registry = Arc::new(Registry::default());
        let bus = Arc::new(LocalBus::new(Arc::clone(&registry)));
        Room {
            receipts: Receipts::new(bus, Arc::clone(&store)),
            store,
            registry,
            conversation,
            members,
        }
    }

    impl Room {
        /// Member `i`'s device, connected.
        fn connect(&self, i: usize) -> Registration {
            let (user, device) = self.members[i];
            self.registry.register(user, device, 64)
        }

        /// Member `i` moves its delivered cursor from `after` to `up_to`.
        async fn moves(&self, i: usize, after: i64, up_to: i64) {
            let (user_id, device_id) = self.members[i];
            let receipt = Receipt {
                conversation_id: self.conversation,
                user_id,
                device_id,
                delivered_seq: up_to,
                read_seq: 0,
            };
            self.receipts.push((after, up_to), receipt).await;
        }
    }

    fn frames(registration: &mut Registration) -> Vec<ServerFrame> {
        std::iter::from_fn(|| registration.events.try_recv().ok())
            .map(|event| match &*event {
                Outbound::Frame { frame, .. } => serde_json::from_str(frame.as_str()).unwrap(),
                other => panic!("unexpected event {other:?}"),
            })
            .collect()
    }

    /// Waits (up to 10 s) for frames on `registration`.
    async fn next_frames(registration: &mut Registration) -> Vec<ServerFrame> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = frames(registration);
            if !got.is_empty() {
                return got;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The (device, delivered seq) of each receipt in a lone `receipts` frame, sorted.
    fn gathered(frames: &[ServerFrame]) -> Vec<(String, i64)> {
        let [ServerFrame::Receipts { receipts }] = frames else {
            panic!("expected one receipts frame, got {frames:?}");
        };
        let mut moves: Vec<(String, i64)> = receipts
            .iter()
            .map(|r| (r.device_id.to_string(), r.delivered_seq))
            .collect();
        moves.sort();
        moves
    }

    // One thread: the window's task cannot run before the test awaits something that waits, so
    // every move after the first lands in the same window however slow the machine is.
    /// Checks that a busy conversation gets one frame per window (on a current-thread runtime).
    pub async fn a_busy_conversation_gets_one_frame_per_window(store: Arc<dyn Store>) {
        // Member 0 posted seqs 1 and 2; members 1..=5 read.
        let room = room(store, 6, &[0, 0]).await;
        let mut to_poster = room.connect(0);

        // Five members move at once, the first one twice.
        for reader in 1..=5 {
            room.moves(reader, 0, 1).await;
        }
        room.moves(1, 1, 2).await;
        // The first went out alone, at once.
        let first = frames(&mut to_poster);
        assert!(
            matches!(first.as_slice(), [ServerFrame::Receipt(r)] if r.device_id == room.members[1].1 && r.delivered_seq == 1),
            "{first:?}"
        );
        // The rest, the latest per device, together when the window closes.
        let later = next_frames(&mut to_poster).await;
        let mut expected: Vec<(String, i64)> = (1..=5)
            .map(|reader| {
                (
                    room.members[reader].1.to_string(),
                    if reader == 1 { 2 } else { 1 },
                )
            })
            .collect();
        expected.sort();
        assert_eq!(gathered(&later), expected);

        // A window with no moves closes it: the next move goes out at once again.
        let closed = tokio::time::Instant::now() + Duration::from_secs(10);
        while !room.receipts.open.lock().unwrap().is_empty() {
            assert!(
                tokio::time::Instant::now() < closed,
                "the window never closed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        room.moves(2, 1, 2).await;
        assert!(matches!(
            frames(&mut to_poster).as_slice(),
            [ServerFrame::Receipt(r)] if r.delivered_seq == 2
        ));
        // And its window, opened after the last one closed, goes out too.
        room.moves(3, 1, 2).await;
        assert_eq!(
            gathered(&next_frames(&mut to_poster).await),
            [(room.members[3].1.to_string(), 2)]
        );
    }

    /// Checks that a window goes to everyone its moves concern (on a current-thread runtime).
    pub async fn a_window_goes_to_everyone_its_moves_concern(store: Arc<dyn Store>) {
        // Member 0 posted seq 1, member 1 seq 2, member 2 seq 3.
        let room = room(store, 5, &[0, 1, 2]).await;
        let (mut to_first, mut to_second, mut to_third) =
            (room.connect(0), room.connect(1), room.connect(2));
        let mut to_reader = room.connect(3);
        // The reader's and the first poster's other devices.
        let (reader, _) = room.members[3];
        let mut to_readers_phone = room.registry.register(reader, DeviceId::new(), 64);
        let (first, _) = room.members[0];
        let mut to_firsts_phone = room.registry.register(first, DeviceId::new(), 64);

        // The reader's move covers the first post: it goes out at once, to its poster and to
        // the reader's other device, but not to the device that moved.
        room.moves(3, 0, 1).await;
        assert_eq!(frames(&mut to_first).len(), 1);
        assert_eq!(frames(&mut to_firsts_phone).len(), 1);
        assert_eq!(frames(&mut to_readers_phone).len(), 1);
        assert!(frames(&mut to_reader).is_empty());
        assert!(frames(&mut to_second).is_empty());
        // Two more moves in the window, covering the second post only: one by member 4, one by
        // the first poster.
        room.moves(4, 1, 2).await;
        room.moves(0, 1, 2).await;
        let later = next_frames(&mut to_second).await;
        let mut both = vec![
            (room.members[4].1.to_string(), 2),
            (room.members[0].1.to_string(), 2),
        ];
        both.sort();
        // The second post's sender gets both moves.
        assert_eq!(gathered(&later), both);
        // The first poster's other device gets its own move only, and the device that made it
        // nothing; nor does anyone whose post no move in the window covered.
        assert_eq!(
            gathered(&frames(&mut to_firsts_phone)),
            [(room.members[0].1.to_string(), 2)]
        );
        assert!(frames(&mut to_first).is_empty());
        assert!(frames(&mut to_third).is_empty());
        assert!(frames(&mut to_reader).is_empty());
        assert!(frames(&mut to_readers_phone).is_empty());
    }

    /// Checks that receipts skip former members and both sides of a block (on a current-thread runtime).
    pub async fn receipts_skip_former_members_and_both_sides_of_a_block(store: Arc<dyn Store>) {
        // Members 0, 1 and 2 posted seqs 1, 2 and 3.
        let room = room(store, 6, &[0, 1, 2]).await;
        let (mut to_left, mut to_blocker, mut to_poster) =
            (room.connect(0), room.connect(1), room.connect(2));
        // Member 0 leaves; member 1 blocks member 4; member 5 blocks member 2.
        let user = |i: usize| room.members[i].0;
        room.store
            .remove_member(room.conversation, user(0))
            .await
            .unwrap();
        let block = |_| Ok((ConnectionState::Blocked, ConnectionState::None));
        room.store
            .change_connection(user(1), user(4), 0, &block)
            .await
            .unwrap()
            .unwrap();
        room.store
            .change_connection(user(5), user(2), 0, &block)
            .await
            .unwrap()
            .unwrap();

        // Member 4's move covers all three posts: at once, to the poster still in the room who
        // is not in a block with member 4.
        room.moves(4, 0, 3).await;
        assert_eq!(frames(&mut to_poster).len(), 1);
        assert!(frames(&mut to_blocker).is_empty());
        // In the window, members 3, 4 (again) and 5 move.
        for mover in [3, 4, 5] {
            room.moves(mover, 0, 3).await;
        }
        let device = |i: usize| (room.members[i].1.to_string(), 3);
        // The poster that member 5 blocks gets the others' moves but not member 5's.
        let mut unblocking = vec![device(3), device(4)];
        unblocking.sort();
        assert_eq!(gathered(&next_frames(&mut to_poster).await), unblocking);
        // The blocker gets the others' moves but not member 4's.
        let mut unblocked = vec![device(3), device(5)];
        unblocked.sort();
        assert_eq!(gathered(&frames(&mut to_blocker)), unblocked);
        // The member who left hears of nothing.
        assert!(frames(&mut to_left).is_empty());
    }

    /// Checks that a window of one movers moves skips the senders in a block with it (on a current-thread runtime).
    pub async fn a_window_of_one_movers_moves_skips_the_senders_in_a_block_with_it(
        store: Arc<dyn Store>,
    ) {
        // Member 0 posted seqs 1 and 3, member 1 seq 2; member 1 blocks member 3.
        let room = room(store, 4, &[0, 1, 0]).await;
        let (mut to_poster, mut to_blocker) = (room.connect(0), room.connect(1));
        let block = |_| Ok((ConnectionState::Blocked, ConnectionState::None));
        room.store
            .change_connection(room.members[1].0, room.members[3].0, 0, &block)
            .await
            .unwrap()
            .unwrap();

        // Member 3 reads the first post, then, in the window its move opened, the rest.
        room.moves(3, 0, 1).await;
        assert_eq!(frames(&mut to_poster).len(), 1);
        room.moves(3, 1, 3).await;
        assert_eq!(
            gathered(&next_frames(&mut to_poster).await),
            [(room.members[3].1.to_string(), 3)]
        );
        assert!(
            frames(&mut to_blocker).is_empty(),
            "nothing across the block"
        );
    }
}
