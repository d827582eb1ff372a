//! The marks after my messages: ✓ sent, ✓✓ delivered, ✓✓ read; in rooms, how many of the
//! other members it reached and read ("read by 3 of 5"), and who.

use natter_proto::UserId;
use natter_proto::conversations::ConversationKind;

/// What a conversation's other members got to: (user, delivered seq, read seq) each.
pub struct Marks<'a> {
    /// Direct or room.
    pub kind: ConversationKind,
    /// How many other members there are.
    pub others: usize,
    /// Their cursors, as far as known.
    pub receipts: &'a [(UserId, i64, i64)],
}

impl Marks<'_> {
    /// The other members who read my message `seq`.
    pub fn readers(&self, seq: i64) -> Vec<UserId> {
        self.receipts
            .iter()
            .filter(|(_, _, read)| *read >= seq)
            .map(|(user, _, _)| *user)
            .collect()
    }

    /// The mark after my message `seq`.
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
