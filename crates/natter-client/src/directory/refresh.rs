//! Bringing the directory up to date from the server.

use natter_proto::conversations::ConversationDetails;
use natter_proto::{ConversationId, UserId};

use super::Directory;
use crate::{ClientError, Device};

impl Device {
    /// Refreshes the directory from the server and keeps it: this user's and their connections'
    /// profiles, the conversation list, the members of conversations new here or in `open` (the
    /// others keep the members last fetched, so a command costs a few requests however many
    /// conversations there are), and the profiles of members not known yet. What cannot be
    /// fetched stays as it was known.
    ///
    /// # Errors
    /// The server cannot be reached or refuses; the store cannot be written.
    pub async fn refresh_directory(
        &self,
        directory: &mut Directory,
        open: &[ConversationId],
    ) -> Result<(), ClientError> {
        let session = self.session();
        directory.remember(session.me().await?.profile);
        let connections = session.connections().await?;
        for entry in connections
            .connections
            .into_iter()
            .chain(connections.incoming)
        {
            directory.remember(entry.profile);
        }
        // Requests I sent and blocks show only the username: keep a fuller profile if known.
        for entry in connections.outgoing.into_iter().chain(connections.blocked) {
            if directory.person(entry.profile.user_id).is_none() {
                directory.remember(entry.profile);
            }
        }
        let mut conversations = Vec::new();
        for summary in session.conversations().await? {
            let details = match directory.conversation(summary.id) {
                Some(known) if !open.contains(&summary.id) => ConversationDetails {
                    summary,
                    members: known.members.clone(),
                },
                _ => session.conversation(summary.id).await?,
            };
            conversations.push(details);
        }
        directory.conversations = conversations;
        let mut unknown: Vec<UserId> = Vec::new();
        for details in &directory.conversations {
            for member in &details.members {
                let user = member.user_id;
                if directory.person(user).is_none() && !unknown.contains(&user) {
                    unknown.push(user);
                }
            }
        }
        self.fetch_profiles(directory, &unknown).await;
        self.save_directory(directory).await
    }

    /// Fetches the profiles of `shown` (but this user's own) again, so a changed display name
    /// shows, and keeps them.
    ///
    /// # Errors
    /// The store cannot be written.
    pub async fn refresh_people(
        &self,
        directory: &mut Directory,
        shown: &[UserId],
    ) -> Result<(), ClientError> {
        let me = self.user_id();
        let mut wanted: Vec<UserId> = Vec::new();
        for &user in shown {
            if user != me && !wanted.contains(&user) {
                wanted.push(user);
            }
        }
        self.fetch_profiles(directory, &wanted).await;
        self.save_directory(directory).await
    }

    /// Fetches profiles one by one; a member who left may be hidden now, and a server away
    /// answers nothing: what was known stays.
    async fn fetch_profiles(&self, directory: &mut Directory, users: &[UserId]) {
        for &user in users {
            match self.session().profile(user).await {
                Ok(profile) => directory.remember(profile),
                Err(error) if error.status().is_none() => return,
                Err(_) => {}
            }
        }
    }
}
