//! Messages: their sealed contents, in order per conversation, with the ciphertexts of those
//! still waiting for a key.

use std::sync::atomic::Ordering;

use natter_crypto::UnableToDecrypt;
use natter_proto::{ConversationId, DeviceId, UserId};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoredMessage, search, sql};
use crate::ClientError;

/// A message's sealed content: everything about it but where it sits (conversation, seq)
/// and when the server stored it.
#[derive(Serialize, Deserialize)]
struct Content {
    conversation_id: ConversationId,
    sender_id: UserId,
    sender_device_id: DeviceId,
    client_msg_id: String,
    body: Option<String>,
    failure: Option<String>,
}

impl Content {
    fn of(message: &StoredMessage) -> Self {
        let (body, failure) = match &message.body {
            Ok(text) => (Some(text.clone()), None),
            Err(reason) => (None, Some(reason.code().to_owned())),
        };
        Self {
            conversation_id: message.conversation_id,
            sender_id: message.sender_id,
            sender_device_id: message.sender_device_id,
            client_msg_id: message.client_msg_id.clone(),
            body,
            failure,
        }
    }

    fn into_message(self, seq: i64, server_ts: i64) -> StoredMessage {
        StoredMessage {
            conversation_id: self.conversation_id,
            seq,
            sender_id: self.sender_id,
            sender_device_id: self.sender_device_id,
            client_msg_id: self.client_msg_id,
            server_ts,
            body: self.body.ok_or_else(|| {
                UnableToDecrypt::from_code(self.failure.as_deref().unwrap_or("corrupt"))
            }),
        }
    }
}

/// A message row as stored: its place, time and sealed content.
struct MessageRow {
    conversation: Vec<u8>,
    seq: i64,
    server_ts: i64,
    content: Vec<u8>,
}

impl MessageRow {
    /// The columns [`MessageRow::read`] reads, in order.
    const COLUMNS: &str = "m.conversation, m.seq, m.server_ts, m.content";

    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            conversation: r.get(0)?,
            seq: r.get(1)?,
            server_ts: r.get(2)?,
            content: r.get(3)?,
        })
    }
}

/// The stored key of a message row: its conversation's tag and its seq.
fn message_row(conversation: &[u8], seq: i64) -> Vec<u8> {
    [conversation, &seq.to_be_bytes()].concat()
}

impl Store {
    /// Stores a message once per (conversation, seq); false when it was already there.
    pub(crate) fn insert_message(
        &self,
        message: &StoredMessage,
        session_id: Option<&str>,
        ciphertext: Option<&str>,
    ) -> Result<bool, ClientError> {
        let conversation = self.conversation_tag(message.conversation_id);
        let row = message_row(&conversation, message.seq);
        // The ciphertext is kept only while undecrypted, to retry when the key arrives.
        let waiting = match (&message.body, session_id, ciphertext) {
            (Err(_), Some(session), Some(ciphertext)) => Some((
                self.keys.tag("room_session", session),
                self.keys
                    .seal("messages.ciphertext", &row, ciphertext.as_bytes()),
            )),
            _ => None,
        };
        let (session, ciphertext) = waiting.unzip();
        let db = self.db();
        let inserted = db
            .execute(
                "INSERT OR IGNORE INTO messages (conversation, seq, sender, server_ts, content,
                 session, ciphertext) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    conversation,
                    message.seq,
                    self.user_tag(message.sender_id),
                    message.server_ts,
                    self.seal_json("messages.content", &row, &Content::of(message)),
                    session,
                    ciphertext,
                ],
            )
            .map_err(sql)?
            == 1;
        if inserted
            && let Ok(text) = &message.body
            && self.indexed.load(Ordering::Relaxed)
        {
            search::add(&db, &conversation, message.seq, text)?;
        }
        Ok(inserted)
    }

    /// Opens the sealed content of a message row.
    fn open_content(&self, row: &MessageRow) -> Result<Content, ClientError> {
        let place = message_row(&row.conversation, row.seq);
        self.open_json("messages.content", &place, &row.content)
    }

    /// Opens a message row.
    fn open_message(&self, row: &MessageRow) -> Result<StoredMessage, ClientError> {
        Ok(self.open_content(row)?.into_message(row.seq, row.server_ts))
    }

    /// Messages still waiting for the key of `session_id`, with their ciphertexts.
    pub(crate) fn pending(
        &self,
        session_id: &str,
    ) -> Result<Vec<(StoredMessage, String)>, ClientError> {
        let session = self.keys.tag("room_session", session_id);
        let rows: Vec<(MessageRow, Vec<u8>)> = {
            let db = self.db();
            let mut statement = db
                .prepare(&format!(
                    "SELECT {}, m.ciphertext FROM messages m
                     WHERE m.session = ?1 AND m.ciphertext IS NOT NULL ORDER BY m.seq",
                    MessageRow::COLUMNS
                ))
                .map_err(sql)?;
            let rows = statement
                .query_map([&session], |r| Ok((MessageRow::read(r)?, r.get(4)?)))
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        rows.into_iter()
            .map(|(row, ciphertext)| {
                let place = message_row(&row.conversation, row.seq);
                let ciphertext = self
                    .keys
                    .open_text("messages.ciphertext", &place, &ciphertext)?;
                Ok((self.open_message(&row)?, ciphertext))
            })
            .collect()
    }

    /// Records that a pending message was decrypted.
    pub(crate) fn resolve(&self, message: &StoredMessage, text: &str) -> Result<(), ClientError> {
        let conversation = self.conversation_tag(message.conversation_id);
        let row = message_row(&conversation, message.seq);
        let readable = StoredMessage {
            body: Ok(text.to_owned()),
            ..message.clone()
        };
        let db = self.db();
        db.execute(
            "UPDATE messages SET content = ?3, session = NULL, ciphertext = NULL
             WHERE conversation = ?1 AND seq = ?2",
            params![
                conversation,
                message.seq,
                self.seal_json("messages.content", &row, &Content::of(&readable))
            ],
        )
        .map_err(sql)?;
        if self.indexed.load(Ordering::Relaxed) {
            search::add(&db, &conversation, message.seq, text)?;
        }
        Ok(())
    }

    /// Runs a query of [`MessageRow::COLUMNS`] and opens the messages it finds.
    fn query_messages(
        &self,
        db: &Connection,
        statement: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let rows: Vec<MessageRow> = {
            let mut statement = db.prepare(statement).map_err(sql)?;
            let rows = statement.query_map(params, MessageRow::read).map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        rows.iter().map(|row| self.open_message(row)).collect()
    }

    /// The newest `limit` messages of a conversation, oldest first, without blocked senders.
    pub(crate) fn messages(
        &self,
        conversation: ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_messages(
            &self.db(),
            &format!(
                "SELECT * FROM (SELECT {} FROM messages m WHERE m.conversation = ?1
                 AND m.sender NOT IN (SELECT user FROM blocks) ORDER BY m.seq DESC LIMIT ?2)
                 ORDER BY seq",
                MessageRow::COLUMNS
            ),
            params![self.conversation_tag(conversation), limit],
        )
    }

    /// Fills the in-memory search index from every readable message, once per unlock.
    fn build_index(&self, db: &mut Connection) -> Result<(), ClientError> {
        if self.indexed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let transaction = db.transaction().map_err(sql)?;
        {
            let mut statement = transaction
                .prepare(&format!(
                    "SELECT {} FROM messages m WHERE m.session IS NULL",
                    MessageRow::COLUMNS
                ))
                .map_err(sql)?;
            let mut rows = statement.query([]).map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let row = MessageRow::read(row).map_err(sql)?;
                if let Some(body) = &self.open_content(&row)?.body {
                    search::add(&transaction, &row.conversation, row.seq, body)?;
                }
            }
        }
        transaction.commit().map_err(sql)?;
        self.indexed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Full-text search over decrypted messages, newest first, without blocked senders.
    pub(crate) fn search(
        &self,
        query: &str,
        conversation: Option<ConversationId>,
        sender: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let Some(phrase) = search::phrase(query) else {
            return Ok(Vec::new());
        };
        let mut db = self.db();
        self.build_index(&mut db)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_messages(
            &db,
            &format!(
                "SELECT {} FROM messages m JOIN search.bodies f
                   ON f.conversation = m.conversation AND f.seq = m.seq
                 WHERE bodies MATCH ?1
                   AND (?2 IS NULL OR m.conversation = ?2)
                   AND (?3 IS NULL OR m.sender = ?3)
                   AND m.sender NOT IN (SELECT user FROM blocks)
                 ORDER BY m.server_ts DESC LIMIT ?4",
                MessageRow::COLUMNS
            ),
            params![
                phrase,
                conversation.map(|c| self.conversation_tag(c)),
                sender.map(|s| self.user_tag(s)),
                limit
            ],
        )
    }
}
