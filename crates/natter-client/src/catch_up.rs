//! Catching up on receipts: a sync replays messages, not the cursor moves other members made
//! while this device was away, so the read marks of my messages are asked for over REST.

use natter_proto::ConversationId;

use crate::{ClientError, Device};

/// How many of my newest messages in a conversation are asked about.
const ASKED: usize = 3;

impl Device {
    /// Asks the server who received and read my newest messages in a conversation (up to
    /// three, newest first, stopping at one that everyone it reached read) and raises the stored
    /// cursors to match, so read marks include reads made while this device was away.
    ///
    /// # Errors
    /// The server cannot be reached or refuses; the store fails.
    pub async fn catch_up_receipts(&self, conversation: ConversationId) -> Result<(), ClientError> {
        let me = self.user_id();
        let mine: Vec<i64> = self
            .messages(conversation, 200)
            .await?
            .iter()
            .rev()
            .filter(|m| m.sender_id == me)
            .take(ASKED)
            .map(|m| m.seq)
            .collect();
        for seq in mine {
            let receipts = self.session().receipts(conversation, seq).await?;
            let cursors: Vec<_> = receipts
                .delivered_users
                .iter()
                .map(|&user| {
                    let read = if receipts.read_users.contains(&user) {
                        seq
                    } else {
                        0
                    };
                    (user, seq, read)
                })
                .collect();
            self.lock()
                .await
                .store
                .raise_member_cursors(conversation, &cursors)?;
            let delivered = receipts.delivered_users.len();
            if delivered > 0 && receipts.read_users.len() == delivered {
                break;
            }
        }
        Ok(())
    }
}
