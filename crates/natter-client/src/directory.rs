//! What this device remembers about people and conversations (profiles, rooms and their
//! members), kept in the encrypted store so names show at once and resolve while the server
//! is away; applications refresh it from the server whenever they reach it.

use natter_proto::accounts::Profile;
use natter_proto::conversations::ConversationDetails;
use natter_proto::{ConversationId, UserId};
use serde::{Deserialize, Serialize};

use crate::{ClientError, Device};

mod names;
mod refresh;

pub use names::{label, title};

/// The store's key for the directory.
const DIRECTORY: &str = "directory";

/// People and conversations as last seen on the server.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Directory {
    /// Profiles of this user, their connections and the members of their conversations.
    pub people: Vec<Profile>,
    /// This user's conversations with their members, most recently active first.
    pub conversations: Vec<ConversationDetails>,
}

impl Directory {
    /// A remembered profile.
    pub fn person(&self, user: UserId) -> Option<&Profile> {
        self.people.iter().find(|p| p.user_id == user)
    }

    /// A remembered profile by username (usernames are unique regardless of case).
    pub fn by_username(&self, username: &str) -> Option<&Profile> {
        self.people
            .iter()
            .find(|p| p.username.eq_ignore_ascii_case(username))
    }

    /// A remembered conversation.
    pub fn conversation(&self, id: ConversationId) -> Option<&ConversationDetails> {
        self.conversations.iter().find(|c| c.summary.id == id)
    }

    /// Remembers a profile, replacing what was known of that user.
    pub fn remember(&mut self, profile: Profile) {
        match self
            .people
            .iter_mut()
            .find(|p| p.user_id == profile.user_id)
        {
            Some(known) => *known = profile,
            None => self.people.push(profile),
        }
    }

    /// Remembers a conversation, replacing what was known of it.
    pub fn remember_conversation(&mut self, details: ConversationDetails) {
        let id = details.summary.id;
        match self.conversations.iter_mut().find(|c| c.summary.id == id) {
            Some(known) => *known = details,
            None => self.conversations.push(details),
        }
    }
}

impl Device {
    /// The directory this device remembers (empty at first).
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn directory(&self) -> Result<Directory, ClientError> {
        let json = self.lock().await.store.get(DIRECTORY)?;
        Ok(json
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    /// Keeps `directory` in the encrypted store.
    ///
    /// # Errors
    /// The store cannot be written.
    pub async fn save_directory(&self, directory: &Directory) -> Result<(), ClientError> {
        let json = serde_json::to_string(directory).expect("a directory serializes");
        self.lock().await.store.set(DIRECTORY, &json)
    }

    /// How far each of `members` got in a conversation, as (user, delivered seq, read seq)
    /// from the receipts this device saw; a message of mine at or below a member's read seq
    /// was read by them.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn member_receipts(
        &self,
        conversation: ConversationId,
        members: &[UserId],
    ) -> Result<Vec<(UserId, i64, i64)>, ClientError> {
        self.lock()
            .await
            .store
            .member_receipts(conversation, members)
    }
}
