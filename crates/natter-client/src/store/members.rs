//! How far each member got in a conversation, from the receipts this device saw: the store
//! keeps one row per (conversation, user) under blind indexes, so members are looked up by id.

use natter_proto::ws::Receipt;
use natter_proto::{ConversationId, DeviceId, UserId};

use super::Store;
use crate::ClientError;

impl Store {
    /// Each of `members`' (delivered, read) cursors in a conversation, (0, 0) where no receipt
    /// was seen; in the order given.
    pub(crate) fn member_receipts(
        &self,
        conversation: ConversationId,
        members: &[UserId],
    ) -> Result<Vec<(UserId, i64, i64)>, ClientError> {
        let conversation = self.conversation_tag(conversation);
        members
            .iter()
            .map(|&member| {
                let user = self.user_tag(member);
                let row = [&conversation[..], &user].concat();
                let seqs = self.find::<Vec<u8>>(
                    "SELECT seqs FROM receipts WHERE conversation = ?1 AND user = ?2",
                    [&conversation, &user],
                )?;
                let (delivered, read): (i64, i64) = match seqs {
                    Some(seqs) => self.open_json("receipts.seqs", &row, &seqs)?,
                    None => (0, 0),
                };
                Ok((member, delivered, read))
            })
            .collect()
    }
}

impl Store {
    /// Raises members' cursors to at least (delivered, read) seqs learnt other than by a
    /// receipt frame; never lowers one.
    pub(crate) fn raise_member_cursors(
        &self,
        conversation: ConversationId,
        cursors: &[(UserId, i64, i64)],
    ) -> Result<(), ClientError> {
        let receipts: Vec<Receipt> = cursors
            .iter()
            .map(|&(user_id, delivered_seq, read_seq)| Receipt {
                conversation_id: conversation,
                user_id,
                // The store keeps one cursor per user: the device is not recorded.
                device_id: DeviceId::new(),
                delivered_seq,
                read_seq,
            })
            .collect();
        self.save_receipts(&receipts)
    }
}

#[cfg(test)]
mod tests {
    use natter_proto::ws::Receipt;
    use natter_proto::{ConversationId, DeviceId, UserId};

    use super::super::{NewKeyring, Store};

    #[test]
    fn each_member_has_their_own_furthest_cursors() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::create(&dir.path().join("s.db"), NewKeyring::new("pass").unwrap()).unwrap();
        let (room, other) = (ConversationId::new(), ConversationId::new());
        let [carol, dave, erin] = [UserId::new(), UserId::new(), UserId::new()];
        let receipt = |conversation_id, user_id, delivered_seq, read_seq| Receipt {
            conversation_id,
            user_id,
            device_id: DeviceId::new(),
            delivered_seq,
            read_seq,
        };
        store
            .save_receipts(&[
                receipt(room, carol, 5, 3),
                receipt(room, carol, 4, 4),
                receipt(room, dave, 2, 0),
                receipt(other, erin, 9, 9),
            ])
            .unwrap();
        assert_eq!(
            store.member_receipts(room, &[erin, carol, dave]).unwrap(),
            [(erin, 0, 0), (carol, 5, 4), (dave, 2, 0)]
        );
        store
            .raise_member_cursors(room, &[(carol, 3, 3), (erin, 6, 6)])
            .unwrap();
        assert_eq!(
            store.member_receipts(room, &[carol, erin]).unwrap(),
            [(carol, 5, 4), (erin, 6, 6)],
            "raised, never lowered"
        );
    }
}
