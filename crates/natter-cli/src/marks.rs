//! The marks after my messages: ✓ sent, ✓✓ delivered, ✓✓ read; in rooms, how many of the
//! other members it reached and read ("read by 3 of 5"), and who. The receipts are read by
//! the callers (`history`, the chat); this only words them.

use natter_proto::UserId;
use natter_proto::conversations::ConversationKind;

/// What a conversation's other members got to: (user, delivered seq, read seq) each. Only
/// my own messages carry marks; the callers ask for no others.
pub struct Marks<'a> {
    /// Direct or room.
    pub kind: ConversationKind,
    /// How many other members there are.
    pub others: usize,
    /// Their cursors, as far as known; a member with no receipt yet counts as reaching
    /// nothing.
    pub receipts: &'a [(UserId, i64, i64)],
}

impl Marks<'_> {
    /// The other members who read my message `seq`, in the order of `receipts`; a read
    /// cursor at or past `seq` counts.
    pub fn readers(&self, seq: i64) -> Vec<UserId> {
        self.receipts
            .iter()
            .filter(|(_, _, read)| *read >= seq)
            .map(|(user, _, _)| *user)
            .collect()
    }

    /// The mark after my message `seq`: in a direct conversation ✓, ✓✓ or ✓✓ read; in a room
    /// how many of the others it reached or was read by, once any did.
    pub fn mark(&self, seq: i64) -> String {
        let reached = |pick: fn(&(UserId, i64, i64)) -> i64| {
            self.receipts.iter().filter(|r| pick(r) >= seq).count()
        };
        let (delivered, read) = (reached(|r| r.1), reached(|r| r.2));
        if self.kind == ConversationKind::Direct {
            return match (delivered, read) {
                (_, 1..) => "✓✓ read",
                (1.., _) => "✓✓",
                _ => "✓",
            }
            .into();
        }
        if read > 0 {
            format!("✓✓ read by {read} of {}", self.others)
        } else if delivered > 0 {
            format!("✓✓ delivered to {delivered} of {}", self.others)
        } else {
            "✓".into()
        }
    }
}
