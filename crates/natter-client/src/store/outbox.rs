//! What waits to be sent (messages, read marks, blocks) in order, and the block list.

use natter_proto::{ConversationId, UserId};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Store, sql};
use crate::ClientError;

/// One queued operation, sent in order once the server is reachable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Queued {
    /// A message; `ciphertext` is set once it was encrypted (resends reuse it).
    Send {
        /// The conversation.
        conversation_id: ConversationId,
        /// Its id, the same on every resend.
        client_msg_id: String,
        /// The text.
        text: String,
        /// The encrypted form, once made.
        ciphertext: Option<String>,
    },
    /// A read cursor.
    Read {
        /// The conversation.
        conversation_id: ConversationId,
        /// Everything up to here was read.
        seq: i64,
    },
    /// A block (true) or unblock (false).
    Block {
        /// The user.
        user_id: UserId,
        /// Block or unblock.
        block: bool,
    },
}

impl Store {
    pub(crate) fn set_blocked(&self, user: UserId, blocked: bool) -> Result<(), ClientError> {
        let statement = if blocked {
            "INSERT OR IGNORE INTO blocks (user) VALUES (?1)"
        } else {
            "DELETE FROM blocks WHERE user = ?1"
        };
        self.run(statement, [self.user_tag(user)])
    }

    pub(crate) fn is_blocked(&self, user: UserId) -> Result<bool, ClientError> {
        Ok(self
            .find::<i64>(
                "SELECT 1 FROM blocks WHERE user = ?1",
                [self.user_tag(user)],
            )?
            .is_some())
    }

    pub(crate) fn enqueue(&self, item: &Queued) -> Result<(), ClientError> {
        let message = match item {
            Queued::Send { client_msg_id, .. } => Some(self.keys.tag("client_msg", client_msg_id)),
            Queued::Read { .. } | Queued::Block { .. } => None,
        };
        let mut db = self.db();
        // The row id is part of the sealed item's associated data, so the row comes first.
        let transaction = db.transaction().map_err(sql)?;
        let id: i64 = transaction
            .query_row(
                "INSERT INTO outbox (message, item) VALUES (?1, x'') RETURNING id",
                [message],
                |r| r.get(0),
            )
            .map_err(sql)?;
        transaction
            .execute(
                "UPDATE outbox SET item = ?2 WHERE id = ?1",
                params![id, self.seal_json("outbox.item", &id.to_be_bytes(), item)],
            )
            .map_err(sql)?;
        transaction.commit().map_err(sql)
    }

    /// The queue, oldest first, with each item's row id.
    pub(crate) fn outbox(&self) -> Result<Vec<(i64, Queued)>, ClientError> {
        let rows: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = {
            let db = self.db();
            let mut statement = db
                .prepare("SELECT id, item, ciphertext FROM outbox ORDER BY id")
                .map_err(sql)?;
            let rows = statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        rows.into_iter()
            .map(|(id, item, sealed)| {
                let mut item: Queued = self.open_json("outbox.item", &id.to_be_bytes(), &item)?;
                if let (Queued::Send { ciphertext, .. }, Some(sealed)) = (&mut item, sealed) {
                    *ciphertext = Some(self.keys.open_text(
                        "outbox.ciphertext",
                        &id.to_be_bytes(),
                        &sealed,
                    )?);
                }
                Ok((id, item))
            })
            .collect()
    }

    pub(crate) fn set_ciphertext(&self, id: i64, ciphertext: &str) -> Result<(), ClientError> {
        let sealed = self.keys.seal(
            "outbox.ciphertext",
            &id.to_be_bytes(),
            ciphertext.as_bytes(),
        );
        self.run(
            "UPDATE outbox SET ciphertext = ?2 WHERE id = ?1",
            params![id, sealed],
        )
    }

    pub(crate) fn dequeue(&self, id: i64) -> Result<(), ClientError> {
        self.run("DELETE FROM outbox WHERE id = ?1", [id])
    }

    /// Removes an acked send and returns its text.
    pub(crate) fn take_sent(&self, client_msg_id: &str) -> Result<Option<String>, ClientError> {
        let taken: Option<(i64, Vec<u8>)> = self
            .db()
            .query_row(
                "DELETE FROM outbox WHERE message = ?1 RETURNING id, item",
                [self.keys.tag("client_msg", client_msg_id)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql)?;
        let Some((id, item)) = taken else {
            return Ok(None);
        };
        match self.open_json("outbox.item", &id.to_be_bytes(), &item)? {
            Queued::Send { text, .. } => Ok(Some(text)),
            Queued::Read { .. } | Queued::Block { .. } => Ok(None),
        }
    }
}
