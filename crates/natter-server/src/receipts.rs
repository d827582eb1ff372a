//! Receipt coalescing: in a busy conversation, cursor moves go out as one `receipts` frame per
//! conversation every [`WINDOW`] instead of one `receipt` frame each.
//!
//! In a 1,000-member room every member's `delivered` cursor moves after each post, and each
//! move concerns the post's sender: a thousand frames per post to one device, more work than
//! the posts themselves (docs/benchmarks.md). Here the first move in a quiet conversation goes
//! out at once (a 1:1 chat sees its receipts without delay) and opens a window; moves during
//! the window are merged (the latest per device) and sent together when it closes, to everyone
//! any of them concerned. The window stays open while moves keep coming.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use natter_proto::ws::{Receipt, ServerFrame};
use natter_proto::{ConversationId, DeviceId, UserId};

use crate::fanout::{Bus, Outbound};
use crate::messages::encode;

/// How long cursor moves in one conversation are gathered before they go out together.
pub const WINDOW: Duration = Duration::from_millis(250);

/// Moves gathered in one conversation's open window.
#[derive(Default)]
struct Gathered {
    /// Who the moves concern.
    recipients: HashSet<UserId>,
    /// The latest move per device.
    receipts: HashMap<DeviceId, Receipt>,
}

/// Coalesces receipts per conversation on this node.
pub struct Receipts {
    bus: Arc<dyn Bus>,
    open: Mutex<HashMap<ConversationId, Gathered>>,
}

impl Receipts {
    /// Coalescing over `bus`.
    pub fn new(bus: Arc<dyn Bus>) -> Arc<Self> {
        Arc::new(Self {
            bus,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Tells `recipients` (except the device that moved) about a cursor move: now if the
    /// conversation is quiet, else with the rest of its window.
    pub fn push(self: &Arc<Self>, recipients: Vec<UserId>, receipt: Receipt) {
        let conversation = receipt.conversation_id;
        {
            let mut open = self.open.lock().expect("receipts lock");
            if let Some(gathered) = open.get_mut(&conversation) {
                gathered.recipients.extend(recipients);
                gathered.receipts.insert(receipt.device_id, receipt);
                return;
            }
            open.insert(conversation, Gathered::default());
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
        let this = Arc::clone(self);
        tokio::spawn(async move { this.flush_until_quiet(conversation).await });
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
            let recipients: Vec<UserId> = gathered.recipients.into_iter().collect();
            let receipts: Vec<Receipt> = gathered.receipts.into_values().collect();
            metrics::histogram!("natter_receipts_coalesced").record(receipts.len() as f64);
            // The moving devices get their own receipts back here: they already know them.
            self.bus.publish_to_users(
                &recipients,
                None,
                Outbound::Frame {
                    kind: "receipts",
                    frame: encode(&ServerFrame::Receipts { receipts }),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::{LocalBus, Registry};

    fn moved(conversation: ConversationId, user: UserId, device: DeviceId, seq: i64) -> Receipt {
        Receipt {
            conversation_id: conversation,
            user_id: user,
            device_id: device,
            delivered_seq: seq,
            read_seq: 0,
        }
    }

    fn frames(registration: &mut crate::fanout::Registration) -> Vec<ServerFrame> {
        std::iter::from_fn(|| registration.events.try_recv().ok())
            .map(|event| match event {
                Outbound::Frame { frame, .. } => serde_json::from_str(frame.as_str()).unwrap(),
                other => panic!("unexpected event {other:?}"),
            })
            .collect()
    }

    /// Waits (up to 10 s) until `done` holds.
    async fn eventually(mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // One thread: the window's task cannot start before the test awaits, so every move below
    // lands in the same window however slow the machine is.
    #[tokio::test(flavor = "current_thread")]
    async fn a_busy_conversation_gets_one_frame_per_window() {
        let registry = Arc::new(Registry::default());
        let receipts = Receipts::new(Arc::new(LocalBus::new(Arc::clone(&registry))));
        let (sender, sender_device) = (UserId::new(), DeviceId::new());
        let mut to_sender = registry.register(sender, sender_device, 64);
        let conversation = ConversationId::new();
        let readers: Vec<(UserId, DeviceId)> =
            (0..5).map(|_| (UserId::new(), DeviceId::new())).collect();

        // Five members move at once, the first one twice.
        let moves = readers
            .iter()
            .map(|reader| (*reader, 1))
            .chain([(readers[0], 2)]);
        for ((user, device), seq) in moves {
            receipts.push(vec![sender], moved(conversation, user, device, seq));
        }
        // The first went out alone, at once.
        let first = frames(&mut to_sender);
        assert_eq!(
            first,
            vec![ServerFrame::Receipt(moved(
                conversation,
                readers[0].0,
                readers[0].1,
                1
            ))]
        );
        // The rest, the latest per device, together when the window closes.
        let mut later = Vec::new();
        eventually(|| {
            later.extend(frames(&mut to_sender));
            !later.is_empty()
        })
        .await;
        let mut gathered = match later.as_slice() {
            [ServerFrame::Receipts { receipts }] => receipts.clone(),
            other => panic!("expected one receipts frame, got {other:?}"),
        };
        gathered.sort_by_key(|r| (r.user_id.to_string(), r.delivered_seq));
        let mut expected: Vec<Receipt> = readers
            .iter()
            .skip(1)
            .map(|(user, device)| moved(conversation, *user, *device, 1))
            .chain([moved(conversation, readers[0].0, readers[0].1, 2)])
            .collect();
        expected.sort_by_key(|r| (r.user_id.to_string(), r.delivered_seq));
        assert_eq!(gathered, expected);

        // A window with no moves closes it: the next move goes out at once again.
        eventually(|| receipts.open.lock().unwrap().is_empty()).await;
        receipts.push(
            vec![sender],
            moved(conversation, readers[1].0, readers[1].1, 3),
        );
        assert!(matches!(
            frames(&mut to_sender).as_slice(),
            [ServerFrame::Receipt(r)] if r.delivered_seq == 3
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_window_goes_to_everyone_its_moves_concern() {
        let registry = Arc::new(Registry::default());
        let receipts = Receipts::new(Arc::new(LocalBus::new(Arc::clone(&registry))));
        let conversation = ConversationId::new();
        let (first_sender, second_sender) = (UserId::new(), UserId::new());
        let mut to_first = registry.register(first_sender, DeviceId::new(), 64);
        let mut to_second = registry.register(second_sender, DeviceId::new(), 64);
        let (reader, reader_device) = (UserId::new(), DeviceId::new());
        let mut to_reader = registry.register(reader, reader_device, 64);
        let (one, one_device) = (UserId::new(), DeviceId::new());
        let (two, two_device) = (UserId::new(), DeviceId::new());

        // The reader's move concerns the first sender and the reader's own devices.
        receipts.push(
            vec![first_sender, reader],
            moved(conversation, reader, reader_device, 1),
        );
        // It goes out at once, to the first sender but not to the device that moved.
        assert_eq!(frames(&mut to_first).len(), 1);
        assert!(frames(&mut to_reader).is_empty());
        // Two more moves in the window, each concerning one sender.
        receipts.push(vec![second_sender], moved(conversation, one, one_device, 1));
        receipts.push(vec![first_sender], moved(conversation, two, two_device, 1));
        let mut later = Vec::new();
        eventually(|| {
            later.extend(frames(&mut to_second));
            !later.is_empty()
        })
        .await;
        let gathered = |frames: &[ServerFrame]| match frames {
            [ServerFrame::Receipts { receipts }] => {
                let mut devices: Vec<DeviceId> = receipts.iter().map(|r| r.device_id).collect();
                devices.sort_by_key(ToString::to_string);
                devices
            }
            other => panic!("expected one receipts frame, got {other:?}"),
        };
        let mut both = vec![one_device, two_device];
        both.sort_by_key(ToString::to_string);
        // Both senders get both moves; the reader, whom neither concerns, nothing.
        assert_eq!(gathered(&later), both);
        assert_eq!(gathered(&frames(&mut to_first)), both);
        assert!(frames(&mut to_reader).is_empty());
    }
}
