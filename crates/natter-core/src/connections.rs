//! The connection service: requests, answers, blocks and removals between two users, and who
//! may see whose profile and device keys.
//!
//! # State machine
//!
//! Each user has a *side* of every relationship, stored as one row (user, peer) with a state
//! and a version that grows with every change. A user sees and controls only their own side.
//!
//! | action by U on P        | U's side before          | U's side after | P's side after                      |
//! |-------------------------|--------------------------|----------------|-------------------------------------|
//! | request                 | none, rejected           | requested      | incoming (stays blocked if P blocked U) |
//! | request                 | incoming (mutual)        | accepted       | accepted                            |
//! | request                 | requested, accepted      | unchanged      | unchanged                           |
//! | request                 | blocked                  | refused (409: unblock first)  |                      |
//! | accept                  | incoming                 | accepted       | accepted                            |
//! | reject                  | incoming                 | none           | rejected                            |
//! | accept/reject           | anything else            | refused (409: no pending request) |                  |
//! | block                   | anything                 | blocked        | none if it was accepted or incoming, else unchanged |
//! | unblock                 | blocked                  | none, or incoming if P's request is waiting | unchanged |
//! | remove                  | none                     | unchanged      | unchanged                           |
//! | remove                  | blocked                  | refused (409: unblock instead) |                     |
//! | remove                  | requested/incoming/accepted/rejected | none | none if accepted or incoming, rejected if requested |
//!
//! Blocking hides the blocker: the blocked user's side becomes what a stranger's would be,
//! their later requests are stored on their side only (the blocker never sees them unless they
//! unblock), so the blocked user cannot tell a block from an ignored request or a removal.
//! Profiles and device keys are visible only to oneself, between accepted connections, and
//! between members of a room (who must encrypt for each other).
//!
//! # Concurrency
//!
//! Every change locks both sides and runs in one transaction, so two devices of one user that
//! block and unblock at once end in one of the two orders. A change may carry the version its
//! device last saw (`If-Match`); if the side changed since, it is refused with the current
//! version and the device re-reads the server's state instead of overwriting it blindly.

use std::collections::HashMap;

use natter_proto::UserId;
use natter_proto::accounts::Profile;
use natter_proto::connections::{
    ConnectionEntry, ConnectionState, ConnectionStatus, ConnectionsResponse,
};

use crate::keys::device_info;
use crate::service_error::ServiceError;
use crate::store::{Refusal, Side, Sides, Store, UserRecord};

/// What a user does to their side of a relationship.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ask to connect.
    Request,
    /// Answer an incoming request.
    Respond {
        /// True to accept, false to reject.
        accept: bool,
    },
    /// Block (true) or unblock (false).
    Block(bool),
    /// Remove the relationship.
    Remove,
}

/// The pure state machine: the new states of (my side, their side), or why not.
pub fn transition(
    action: Action,
    if_match: Option<i64>,
    Sides { mine, theirs }: Sides,
) -> Result<(ConnectionState, ConnectionState), Refusal> {
    use ConnectionState::{Accepted, Blocked, Incoming, None, Rejected, Requested};
    if let Some(expected) = if_match.filter(|v| *v != mine.version) {
        return Err(Refusal::VersionMismatch {
            expected,
            current: mine.version,
        });
    }
    let (me, them) = (mine.state, theirs.state);
    Ok(match action {
        Action::Request => match me {
            Blocked => return Err(Refusal::Blocked),
            Requested | Accepted => (me, them),
            // They asked first (or asked while I blocked them): asking back connects us.
            Incoming => (Accepted, Accepted),
            None | Rejected if them == Requested => (Accepted, Accepted),
            // A blocked requester's side looks the same as anyone's; the blocker sees nothing.
            None | Rejected if them == Blocked => (Requested, Blocked),
            None | Rejected => (Requested, Incoming),
        },
        Action::Respond { accept } => match (me, accept) {
            (Incoming, true) => (Accepted, Accepted),
            (Incoming, false) => (None, Rejected),
            _ => return Err(Refusal::NoPendingRequest),
        },
        Action::Block(true) => match them {
            Accepted | Incoming => (Blocked, None),
            _ => (Blocked, them),
        },
        Action::Block(false) => match (me, them) {
            (Blocked, Requested) => (Incoming, them),
            (Blocked, _) => (None, them),
            _ => (me, them),
        },
        Action::Remove => match me {
            Blocked => return Err(Refusal::Blocked),
            None => (me, them),
            _ => match them {
                Accepted | Incoming => (None, None),
                Requested => (None, Rejected),
                _ => (None, them),
            },
        },
    })
}

/// Applies `action` by `user` on their relationship with `peer`.
///
/// # Errors
/// `peer` is `user` or does not exist; the state machine refuses; the store fails.
pub async fn change(
    store: &dyn Store,
    user: UserId,
    peer: UserId,
    action: Action,
    if_match: Option<i64>,
    now: i64,
) -> Result<ConnectionStatus, ServiceError> {
    if user == peer {
        return Err(ServiceError::Invalid(
            "you cannot connect to yourself".into(),
        ));
    }
    if store.user(peer).await?.is_none() {
        return Err(ServiceError::NotFound("no such user"));
    }
    let sides = store
        .change_connection(user, peer, now, &|sides| {
            transition(action, if_match, sides)
        })
        .await??;
    Ok(status(peer, sides.mine))
}

/// `user`'s connections, requests and blocks, with profiles and (for connections) devices.
///
/// # Errors
/// The store fails.
pub async fn list(store: &dyn Store, user: UserId) -> Result<ConnectionsResponse, ServiceError> {
    let records = store.connections_of(user).await?;
    let connected: Vec<UserId> = records
        .iter()
        .filter(|r| r.side.state == ConnectionState::Accepted)
        .map(|r| r.peer.id)
        .collect();
    let mut devices: HashMap<UserId, Vec<_>> = HashMap::new();
    for device in store.devices(&connected, crate::clock::now_ms()).await? {
        devices
            .entry(device.user_id)
            .or_default()
            .push(device_info(device));
    }
    let mut response = ConnectionsResponse {
        connections: Vec::new(),
        incoming: Vec::new(),
        outgoing: Vec::new(),
        blocked: Vec::new(),
    };
    for record in records {
        let state = record.side.state;
        let full_profile = matches!(state, ConnectionState::Accepted | ConnectionState::Incoming);
        let entry = ConnectionEntry {
            status: status(record.peer.id, record.side),
            devices: devices.remove(&record.peer.id).unwrap_or_default(),
            profile: if full_profile {
                profile(record.peer)
            } else {
                username_only(record.peer)
            },
        };
        match state {
            ConnectionState::Accepted => response.connections.push(entry),
            ConnectionState::Incoming => response.incoming.push(entry),
            ConnectionState::Requested | ConnectionState::Rejected => response.outgoing.push(entry),
            ConnectionState::Blocked => response.blocked.push(entry),
            ConnectionState::None => {}
        }
    }
    Ok(response)
}

/// My side of a connection as the API shows it.
pub fn status(peer: UserId, side: Side) -> ConnectionStatus {
    ConnectionStatus {
        user_id: peer,
        state: side.state,
        version: side.version,
        updated_at: side.updated_at,
    }
}

/// A user's whole public profile.
pub fn profile(user: UserRecord) -> Profile {
    Profile {
        user_id: user.id,
        display_name: user.display_name,
        avatar_url: user.avatar_url,
        username: user.username,
    }
}

/// A profile with only the username (as the display name too), for a peer whose full profile
/// the viewer does not get: neither connected nor asking to connect.
fn username_only(user: UserRecord) -> Profile {
    Profile {
        user_id: user.id,
        display_name: user.username.clone(),
        avatar_url: None,
        username: user.username,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionState::*;

    fn sides(me: ConnectionState, them: ConnectionState) -> Sides {
        Sides {
            mine: Side {
                state: me,
                version: 3,
                updated_at: 1,
            },
            theirs: Side {
                state: them,
                version: 5,
                updated_at: 1,
            },
        }
    }

    /// An action, both sides before it, and both sides after it (or the refusal).
    type Case = (
        Action,
        ConnectionState,
        ConnectionState,
        Result<(ConnectionState, ConnectionState), Refusal>,
    );

    #[test]
    fn every_transition() {
        let cases: &[Case] = &[
            (Action::Request, None, None, Ok((Requested, Incoming))),
            (Action::Request, Rejected, None, Ok((Requested, Incoming))),
            (
                Action::Request,
                Incoming,
                Requested,
                Ok((Accepted, Accepted)),
            ),
            (Action::Request, None, Requested, Ok((Accepted, Accepted))),
            (
                Action::Request,
                Requested,
                Incoming,
                Ok((Requested, Incoming)),
            ),
            (
                Action::Request,
                Accepted,
                Accepted,
                Ok((Accepted, Accepted)),
            ),
            (Action::Request, None, Blocked, Ok((Requested, Blocked))),
            (Action::Request, Blocked, None, Err(Refusal::Blocked)),
            (
                Action::Respond { accept: true },
                Incoming,
                Requested,
                Ok((Accepted, Accepted)),
            ),
            (
                Action::Respond { accept: false },
                Incoming,
                Requested,
                Ok((None, Rejected)),
            ),
            (
                Action::Respond { accept: true },
                None,
                None,
                Err(Refusal::NoPendingRequest),
            ),
            (
                Action::Respond { accept: false },
                Accepted,
                Accepted,
                Err(Refusal::NoPendingRequest),
            ),
            (Action::Block(true), Accepted, Accepted, Ok((Blocked, None))),
            (
                Action::Block(true),
                Requested,
                Incoming,
                Ok((Blocked, None)),
            ),
            (
                Action::Block(true),
                Incoming,
                Requested,
                Ok((Blocked, Requested)),
            ),
            (Action::Block(true), None, Blocked, Ok((Blocked, Blocked))),
            (Action::Block(true), Blocked, None, Ok((Blocked, None))),
            (
                Action::Block(false),
                Blocked,
                Requested,
                Ok((Incoming, Requested)),
            ),
            (Action::Block(false), Blocked, None, Ok((None, None))),
            (
                Action::Block(false),
                Accepted,
                Accepted,
                Ok((Accepted, Accepted)),
            ),
            (Action::Remove, Accepted, Accepted, Ok((None, None))),
            (Action::Remove, Requested, Incoming, Ok((None, None))),
            (Action::Remove, Incoming, Requested, Ok((None, Rejected))),
            (Action::Remove, Requested, Blocked, Ok((None, Blocked))),
            (Action::Remove, None, None, Ok((None, None))),
            (Action::Remove, Blocked, None, Err(Refusal::Blocked)),
        ];
        for (action, me, them, expected) in cases {
            assert_eq!(
                &transition(*action, Option::None, sides(*me, *them)),
                expected,
                "{action:?} from ({me:?}, {them:?})"
            );
        }
    }

    #[test]
    fn stale_version_is_refused_before_anything_else() {
        let refused = transition(Action::Block(true), Some(2), sides(Accepted, Accepted));
        assert_eq!(
            refused,
            Err(Refusal::VersionMismatch {
                expected: 2,
                current: 3
            })
        );
        assert!(transition(Action::Block(true), Some(3), sides(Accepted, Accepted)).is_ok());
    }
}
