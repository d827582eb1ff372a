//! Pairwise (Olm) and room (Megolm) session pickles, and the device keys of contacts this
//! device verified, under blind indexes of the ids they are found by.

use natter_proto::{ConversationId, DeviceId, UserId};
use rusqlite::params;

use super::{Store, sql};
use crate::ClientError;

impl Store {
    /// Pickles of the pairwise sessions with a device, most recently used first.
    pub(crate) fn olm_sessions(&self, their_key: &str) -> Result<Vec<String>, ClientError> {
        let their = self.keys.tag("curve25519", their_key);
        let rows: Vec<(Vec<u8>, Vec<u8>)> = {
            let db = self.db();
            let mut statement = db
                .prepare(
                    "SELECT session, pickle FROM olm_sessions WHERE their_key = ?1
                     ORDER BY used_at DESC",
                )
                .map_err(sql)?;
            let rows = statement
                .query_map([&their], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        rows.into_iter()
            .map(|(session, pickle)| {
                self.keys.open_text(
                    "olm_sessions.pickle",
                    &[&their[..], &session].concat(),
                    &pickle,
                )
            })
            .collect()
    }

    pub(crate) fn save_olm_session(
        &self,
        their_key: &str,
        session_id: &str,
        pickle: &str,
        used_at: i64,
    ) -> Result<(), ClientError> {
        let their = self.keys.tag("curve25519", their_key);
        let session = self.keys.tag("olm_session", session_id);
        let row = [&their[..], &session].concat();
        let pickle = self
            .keys
            .seal("olm_sessions.pickle", &row, pickle.as_bytes());
        self.run(
            "INSERT INTO olm_sessions (their_key, session, pickle, used_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (their_key, session)
             DO UPDATE SET pickle = excluded.pickle, used_at = excluded.used_at",
            params![their, session, pickle, used_at],
        )
    }

    pub(crate) fn outbound(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<String>, ClientError> {
        let tag = self.conversation_tag(conversation);
        self.find::<Vec<u8>>(
            "SELECT pickle FROM outbound_sessions WHERE conversation = ?1",
            [&tag],
        )?
        .map(|pickle| {
            self.keys
                .open_text("outbound_sessions.pickle", &tag, &pickle)
        })
        .transpose()
    }

    pub(crate) fn save_outbound(
        &self,
        conversation: ConversationId,
        pickle: &str,
    ) -> Result<(), ClientError> {
        let tag = self.conversation_tag(conversation);
        let pickle = self
            .keys
            .seal("outbound_sessions.pickle", &tag, pickle.as_bytes());
        self.run(
            "INSERT INTO outbound_sessions (conversation, pickle) VALUES (?1, ?2)
             ON CONFLICT (conversation) DO UPDATE SET pickle = excluded.pickle",
            params![tag, pickle],
        )
    }

    /// Drops every outbound room session: the next message in each conversation starts a new
    /// one, shared to all its devices.
    pub(crate) fn forget_outbound_sessions(&self) -> Result<(), ClientError> {
        self.run("DELETE FROM outbound_sessions", [])
    }

    pub(crate) fn inbound(&self, session_id: &str) -> Result<Option<String>, ClientError> {
        let tag = self.keys.tag("room_session", session_id);
        self.find::<Vec<u8>>(
            "SELECT pickle FROM inbound_sessions WHERE session = ?1",
            [&tag],
        )?
        .map(|pickle| {
            self.keys
                .open_text("inbound_sessions.pickle", &tag, &pickle)
        })
        .transpose()
    }

    pub(crate) fn save_inbound(
        &self,
        session_id: &str,
        conversation: ConversationId,
        pickle: &str,
    ) -> Result<(), ClientError> {
        let tag = self.keys.tag("room_session", session_id);
        let pickle = self
            .keys
            .seal("inbound_sessions.pickle", &tag, pickle.as_bytes());
        self.run(
            "INSERT INTO inbound_sessions (session, conversation, pickle) VALUES (?1, ?2, ?3)
             ON CONFLICT (session) DO UPDATE SET pickle = excluded.pickle",
            params![tag, self.conversation_tag(conversation), pickle],
        )
    }

    /// The stored key of a device row: its user's and its own tag.
    fn device_row(&self, user: UserId, device: DeviceId) -> (Vec<u8>, Vec<u8>) {
        (
            self.user_tag(user),
            self.keys.tag("device", &device.to_string()),
        )
    }

    /// A device's verified keys (Curve25519, Ed25519), if cached.
    pub(crate) fn device_keys(
        &self,
        user: UserId,
        device: DeviceId,
    ) -> Result<Option<(String, String)>, ClientError> {
        let (user, device) = self.device_row(user, device);
        self.find::<Vec<u8>>(
            "SELECT keys FROM devices WHERE user = ?1 AND device = ?2",
            [&user, &device],
        )?
        .map(|keys| self.open_json("devices.keys", &[user, device].concat(), &keys))
        .transpose()
    }

    fn save_device(&self, device: &natter_crypto::VerifiedDevice) -> Result<(), ClientError> {
        let (user, id) = self.device_row(device.user_id, device.device_id);
        let keys = self.seal_json(
            "devices.keys",
            &[&user[..], &id].concat(),
            &(&device.curve25519, &device.ed25519),
        );
        self.run(
            "INSERT INTO devices (user, device, keys) VALUES (?1, ?2, ?3)
             ON CONFLICT (user, device) DO UPDATE SET keys = excluded.keys",
            params![user, id, keys],
        )
    }

    /// Replaces the cached devices of `user` with `devices` (those its identity signs now), in
    /// one transaction: a device no longer signed (removed, or of a replaced identity) drops
    /// out of the cache.
    pub(crate) fn replace_devices(
        &self,
        user: UserId,
        devices: &[natter_crypto::VerifiedDevice],
    ) -> Result<(), ClientError> {
        self.run("SAVEPOINT replace_devices", [])?;
        let replaced = self
            .run("DELETE FROM devices WHERE user = ?1", [self.user_tag(user)])
            .and_then(|()| devices.iter().try_for_each(|d| self.save_device(d)));
        match replaced {
            Ok(()) => self.run("RELEASE replace_devices", []),
            Err(error) => {
                self.run("ROLLBACK TO replace_devices", [])?;
                self.run("RELEASE replace_devices", [])?;
                Err(error)
            }
        }
    }
}
