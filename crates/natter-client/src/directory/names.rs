//! How people and conversations are named on screen, so that no one can pass for someone else.

use std::collections::{HashMap, HashSet};

use natter_proto::UserId;
use natter_proto::conversations::{ConversationDetails, ConversationKind};

use super::Directory;

impl Directory {
    /// How each known person is shown: their display name, with `@username` added when the
    /// display name alone could mislead (someone else has it too, or it is another's username).
    pub fn labels(&self) -> HashMap<UserId, String> {
        let directory = self;
        let key = |name: &str| name.trim().to_lowercase();
        let mut taken: HashMap<String, usize> = HashMap::new();
        for person in &directory.people {
            *taken.entry(key(&person.display_name)).or_default() += 1;
        }
        let usernames: HashSet<String> =
            directory.people.iter().map(|p| key(&p.username)).collect();
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
    use natter_proto::UserId;
    use natter_proto::accounts::Profile;

    use super::Directory;

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
        let shown = directory.labels();
        let of = |i: usize| shown[&people[i].user_id].as_str();
        assert_eq!(of(0), "Alice Liddell (@alice)");
        assert_eq!(of(1), "bob");
        assert_eq!(of(2), "Alice Liddell (@mallory)");
        assert_eq!(of(3), "bob (@eve)", "eve may not pass for bob");
        assert_eq!(of(4), "Carol");
    }
}
