//! Names for people and conversations: display names from the server, remembered in the
//! device's encrypted store (its directory) so they show at once, refresh when the server
//! says they changed, and still resolve while the server is away.

use std::collections::{HashMap, HashSet};

use natter_client::{Device, Directory};
use natter_proto::conversations::{ConversationDetails, ConversationKind};
use natter_proto::{ConversationId, UserId};

/// Refreshes the directory from the server and keeps it: this user's and their connections'
/// profiles, the conversation list, the members of conversations new here or in `open` (the
/// others keep the members last fetched, so a command costs a few requests however many
/// conversations there are), and the profiles of members not known yet. What cannot be
/// fetched stays as it was known.
///
/// # Errors
/// The server cannot be reached or refuses; the store cannot be written.
pub async fn refresh(
    device: &Device,
    directory: &mut Directory,
    open: &[ConversationId],
) -> anyhow::Result<()> {
    let session = device.session();
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
    fetch_profiles(device, directory, &unknown).await;
    device.save_directory(directory).await?;
    Ok(())
}

/// Fetches the profiles of `shown` (but this user's own) again, so a changed display name
/// shows, and keeps them.
///
/// # Errors
/// The store cannot be written.
pub async fn refresh_people(
    device: &Device,
    directory: &mut Directory,
    shown: &[UserId],
) -> anyhow::Result<()> {
    let me = device.user_id();
    let mut wanted: Vec<UserId> = Vec::new();
    for &user in shown {
        if user != me && !wanted.contains(&user) {
            wanted.push(user);
        }
    }
    fetch_profiles(device, directory, &wanted).await;
    device.save_directory(directory).await?;
    Ok(())
}

/// Fetches profiles one by one; a member who left may be hidden now, and a server away
/// answers nothing: what was known stays.
async fn fetch_profiles(device: &Device, directory: &mut Directory, users: &[UserId]) {
    for &user in users {
        match device.session().profile(user).await {
            Ok(profile) => directory.remember(profile),
            Err(error) if error.status().is_none() => return,
            Err(_) => {}
        }
    }
}

/// How each known person is shown: their display name, with `@username` added when the
/// display name alone could mislead (someone else has it too, or it is another's username).
pub fn labels(directory: &Directory) -> HashMap<UserId, String> {
    let key = |name: &str| name.trim().to_lowercase();
    let mut taken: HashMap<String, usize> = HashMap::new();
    for person in &directory.people {
        *taken.entry(key(&person.display_name)).or_default() += 1;
    }
    let usernames: HashSet<String> = directory.people.iter().map(|p| key(&p.username)).collect();
    directory
        .people
        .iter()
        .map(|person| {
            let shown = person.display_name.trim();
            let label = if shown.is_empty() {
                person.username.clone()
            } else if key(shown) == key(&person.username) {
                shown.to_owned()
            } else if taken[&key(shown)] > 1 || usernames.contains(&key(shown)) {
                format!("{shown} (@{})", person.username)
            } else {
                shown.to_owned()
            };
            (person.user_id, label)
        })
        .collect()
}

/// How a person is shown: their label, else the start of their id.
pub fn label(labels: &HashMap<UserId, String>, user: UserId) -> String {
    labels.get(&user).cloned().unwrap_or_else(|| {
        let id = user.to_string();
        format!("user {}", &id[..8])
    })
}

/// A conversation's title: a room's name, or the other person in a direct conversation.
pub fn title(
    labels: &HashMap<UserId, String>,
    me: UserId,
    details: &ConversationDetails,
) -> String {
    match (&details.summary.kind, &details.summary.name) {
        (ConversationKind::Room, Some(name)) => name.clone(),
        _ => details
            .members
            .iter()
            .find(|m| m.user_id != me)
            .map_or_else(|| "(just you)".into(), |m| label(labels, m.user_id)),
    }
}

#[cfg(test)]
mod tests {
    use natter_client::Directory;
    use natter_proto::UserId;
    use natter_proto::accounts::Profile;

    use super::labels;

    fn person(username: &str, display_name: &str) -> Profile {
        Profile {
            user_id: UserId::new(),
            username: username.into(),
            display_name: display_name.into(),
            avatar_url: None,
        }
    }

    #[test]
    fn display_names_show_unless_they_could_mislead() {
        let people = vec![
            person("alice", "Alice Liddell"),
            person("bob", "bob"),
            person("mallory", "Alice Liddell"),
            person("eve", "bob"),
            person("carol", "Carol"),
        ];
        let directory = Directory {
            people: people.clone(),
            conversations: Vec::new(),
        };
        let shown = labels(&directory);
        let of = |i: usize| shown[&people[i].user_id].as_str();
        assert_eq!(of(0), "Alice Liddell (@alice)");
        assert_eq!(of(1), "bob");
        assert_eq!(of(2), "Alice Liddell (@mallory)");
        assert_eq!(of(3), "bob (@eve)", "eve may not pass for bob");
        assert_eq!(of(4), "Carol");
    }
}
