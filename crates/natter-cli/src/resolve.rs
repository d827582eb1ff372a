//! Naming users and conversations on the command line. A user: username or id. A
//! conversation: id, a unique prefix of its id, a room's name, or the username of the other
//! person in a direct conversation. A name that fits several rooms is refused, listing them.
//! The callers pass the directory, refreshed or as remembered (see `commands::directory`).

use anyhow::Context;
use natter_client::{Device, Directory};
use natter_proto::conversations::ConversationKind;
use natter_proto::{ConversationId, UserId};

/// The shortest id prefix that names a conversation.
const PREFIX_MIN: usize = 4;

/// A name that fits several conversations: each with its id and members. Its message lists
/// them; under `--json` they come as `candidates` (see `errors::classify`).
#[derive(Debug)]
pub struct Ambiguous {
    /// The name given.
    pub name: String,
    /// (id, room name, members' names) of each conversation it fits.
    pub candidates: Vec<(ConversationId, String, Vec<String>)>,
}

/// The refusal names how many conversations fit, then lists each on a line of its own as
/// `id  name  (members)`, so the person can pick one by id.
impl std::fmt::Display for Ambiguous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "'{}' names {} conversations; name one by its id (a unique prefix will do):",
            self.name,
            self.candidates.len()
        )?;
        for (id, name, members) in &self.candidates {
            write!(f, "\n  {id}  {name}  ({})", members.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Ambiguous {}

/// A user by username (or id): the server's answer, else the directory's when the server is
/// away. An id is taken as given, without asking whether such a user exists.
///
/// # Errors
/// No such user, or the server is away and the directory does not know them.
pub async fn user_id(device: &Device, directory: &Directory, name: &str) -> anyhow::Result<UserId> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    match device.session().lookup(name).await {
        Ok(found) => Ok(found.user_id),
        Err(error) if error.status().is_none() => match directory.by_username(name) {
            Some(person) => Ok(person.user_id),
            None => Err(anyhow::Error::new(error).context(format!("no user {name} known here"))),
        },
        Err(error) => Err(error).with_context(|| format!("no user {name}")),
    }
}

/// A conversation by id, unique id prefix, room name, or username (the direct conversation
/// with them, opened on the server if new). Tried in that order after a whole id: a room name
/// wins over an id prefix, and a prefix (at least [`PREFIX_MIN`] hex digits) over a username.
/// Away from the server, or after a block, a direct conversation known here still answers.
///
/// # Errors
/// [`Ambiguous`], no such conversation or user, or the server refuses.
pub async fn conversation(
    device: &Device,
    directory: &Directory,
    target: &str,
) -> anyhow::Result<ConversationId> {
    if let Ok(id) = target.parse() {
        return Ok(id);
    }
    let labels = directory.labels();
    let ambiguous = |matches: Vec<&natter_proto::conversations::ConversationDetails>| Ambiguous {
        name: target.to_owned(),
        candidates: matches
            .into_iter()
            .map(|c| {
                let members = c
                    .members
                    .iter()
                    .map(|m| natter_client::label(&labels, m.user_id));
                (
                    c.summary.id,
                    natter_client::title(&labels, device.user_id(), c),
                    members.collect(),
                )
            })
            .collect(),
    };
    let rooms: Vec<_> = directory
        .conversations
        .iter()
        .filter(|c| c.summary.kind == ConversationKind::Room)
        .filter(|c| c.summary.name.as_deref() == Some(target))
        .collect();
    match rooms.len() {
        0 => {}
        1 => return Ok(rooms[0].summary.id),
        _ => return Err(ambiguous(rooms).into()),
    }
    let prefix = target.to_ascii_lowercase();
    if prefix.len() >= PREFIX_MIN && prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        let found: Vec<_> = directory
            .conversations
            .iter()
            .filter(|c| c.summary.id.to_string().starts_with(&prefix))
            .collect();
        match found.len() {
            0 => {}
            1 => return Ok(found[0].summary.id),
            _ => return Err(ambiguous(found).into()),
        }
    }
    let peer = user_id(device, directory, target).await?;
    match device.session().open_direct(peer).await {
        Ok(details) => {
            let id = details.summary.id;
            if directory.conversation(id).is_none() {
                let mut known = directory.clone();
                known.remember_conversation(details);
                device.save_directory(&known).await?;
            }
            Ok(id)
        }
        // Away, or no longer connected (after a block, say): the conversation known here
        // still names its history.
        Err(error)
            if error.status().is_none()
                || error.code() == Some(natter_proto::codes::NOT_CONNECTED) =>
        {
            let known = directory.conversations.iter().find(|c| {
                c.summary.kind == ConversationKind::Direct
                    && c.members.iter().any(|m| m.user_id == peer)
            });
            match known {
                Some(details) => Ok(details.summary.id),
                None => Err(anyhow::Error::new(error)
                    .context(format!("no conversation with {target} known here"))),
            }
        }
        Err(error) => Err(error.into()),
    }
}
