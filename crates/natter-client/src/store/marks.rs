//! This device's delivered and read cursors per conversation, and the receipts of its own
//! messages.

use natter_proto::{ConversationId, UserId};
use rusqlite::{OptionalExtension, params};

use super::{Store, sql};
use crate::ClientError;

impl Store {
    /// This device's (delivered, read) cursors in a conversation.
    pub(crate) fn cursors(&self, conversation: ConversationId) -> Result<(i64, i64), ClientError> {
        let tag = self.conversation_tag(conversation);
        self.find::<Vec<u8>>("SELECT seqs FROM cursors WHERE conversation = ?1", [&tag])?
            .map_or(Ok((0, 0)), |seqs| {
                self.open_json("cursors.seqs", &tag, &seqs)
            })
    }

    /// Moves a cursor forward (never back); returns true when it moved.
    pub(crate) fn advance_cursor(
        &self,
        conversation: ConversationId,
        seq: i64,
        read: bool,
    ) -> Result<bool, ClientError> {
        let (mut delivered, mut was_read) = self.cursors(conversation)?;
        let cursor = if read { &mut was_read } else { &mut delivered };
        if seq <= *cursor {
            return Ok(false);
        }
        *cursor = seq;
        let tag = self.conversation_tag(conversation);
        let seqs = self.seal_json("cursors.seqs", &tag, &(delivered, was_read));
        self.run(
            "INSERT INTO cursors (conversation, seqs) VALUES (?1, ?2)
             ON CONFLICT (conversation) DO UPDATE SET seqs = excluded.seqs",
            params![tag, seqs],
        )?;
        Ok(true)
    }

    /// Records other users' cursors (the furthest of each user's devices), all in one
    /// transaction: a `receipts` frame can carry many, and this runs under the device lock.
    pub(crate) fn save_receipts(
        &self,
        receipts: &[natter_proto::ws::Receipt],
    ) -> Result<(), ClientError> {
        let mut db = self.db();
        let transaction = db.transaction().map_err(sql)?;
        for receipt in receipts {
            let conversation = self.conversation_tag(receipt.conversation_id);
            let user = self.user_tag(receipt.user_id);
            let row = [&conversation[..], &user].concat();
            let known: Option<Vec<u8>> = transaction
                .query_row(
                    "SELECT seqs FROM receipts WHERE conversation = ?1 AND user = ?2",
                    [&conversation, &user],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            let (delivered, read): (i64, i64) = known.map_or(Ok((0, 0)), |seqs| {
                self.open_json("receipts.seqs", &row, &seqs)
            })?;
            let seqs = (
                receipt.delivered_seq.max(delivered),
                receipt.read_seq.max(read),
            );
            transaction
                .execute(
                    "INSERT INTO receipts (conversation, user, seqs) VALUES (?1, ?2, ?3)
                     ON CONFLICT (conversation, user) DO UPDATE SET seqs = excluded.seqs",
                    params![
                        conversation,
                        user,
                        self.seal_json("receipts.seqs", &row, &seqs)
                    ],
                )
                .map_err(sql)?;
        }
        transaction.commit().map_err(sql)
    }

    /// How far others got in a conversation: (highest delivered, highest read) over other users.
    pub(crate) fn receipts(
        &self,
        conversation: ConversationId,
        me: UserId,
    ) -> Result<(i64, i64), ClientError> {
        let conversation = self.conversation_tag(conversation);
        let rows: Vec<(Vec<u8>, Vec<u8>)> = {
            let db = self.db();
            let mut statement = db
                .prepare("SELECT user, seqs FROM receipts WHERE conversation = ?1 AND user != ?2")
                .map_err(sql)?;
            let rows = statement
                .query_map([&conversation, &self.user_tag(me)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        rows.into_iter()
            .try_fold((0, 0), |(delivered, read), (user, seqs)| {
                let row = [&conversation[..], &user].concat();
                let (d, r): (i64, i64) = self.open_json("receipts.seqs", &row, &seqs)?;
                Ok((delivered.max(d), read.max(r)))
            })
    }
}
