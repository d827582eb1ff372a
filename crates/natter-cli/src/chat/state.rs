//! What the chat screen shows and how keys and events change it: plain data and pure
//! functions, drawn by `view` and fed by the runner in `chat.rs`.

use std::collections::HashMap;

use natter_client::{Event, Notice, StoredMessage};
use natter_proto::conversations::ConversationKind;
use natter_proto::{ConversationId, UserId};

use super::clock::now_ms;
use super::input::Input;
use crate::marks::Marks;
use crate::text::body;

/// One entry of the conversation list, made from the directory when the chat starts or a
/// conversation appears (`listed` in `chat.rs`).
pub struct Conversation {
    /// The conversation.
    pub id: ConversationId,
    /// Direct or room.
    pub kind: ConversationKind,
    /// The room's name, or the other person's.
    pub title: String,
    /// Its members, me included.
    pub members: Vec<UserId>,
    /// Messages from others not read yet: the server's count when listed, plus those that
    /// arrived since while another conversation was open.
    pub unread: i64,
    /// The newest message, as `sender: text`.
    pub last: Option<String>,
}

/// A notice shown in the conversation at the time it arrived. Notes are kept for the whole
/// chat; each shows in every conversation it concerns.
pub struct Note {
    /// When it arrived (ms).
    pub at: i64,
    /// What it says.
    pub notice: Notice,
}

impl Note {
    /// Whether it belongs in `conversation`: a person's safety number or skipped devices where
    /// they are a member, new members where they joined, and a new device of mine everywhere.
    fn concerns(&self, conversation: &Conversation) -> bool {
        match &self.notice {
            Notice::SafetyNumberChanged { user_id, .. }
            | Notice::DevicesSkipped { user_id, .. } => conversation.members.contains(user_id),
            Notice::NewDevice { .. } => true,
            Notice::MembersAdded {
                conversation_id, ..
            } => *conversation_id == conversation.id,
        }
    }
}

/// The screen's state: changed through its methods by keys and events, and read by `view`
/// to draw.
pub struct Chat {
    /// This user.
    pub me: UserId,
    /// The conversations, most recently active first.
    pub list: Vec<Conversation>,
    /// The open one, as an index into `list`.
    pub open: usize,
    /// How each person is shown.
    pub names: HashMap<UserId, String>,
    /// The open conversation's newest messages, oldest first.
    pub messages: Vec<StoredMessage>,
    /// How many messages to load (grows when scrolling past the oldest loaded).
    pub limit: usize,
    /// My messages still queued here, oldest first.
    pub pending: Vec<String>,
    /// How far each other member got: (user, delivered seq, read seq), me never among them.
    pub receipts: Vec<(UserId, i64, i64)>,
    /// Who is typing in the open conversation, and when they last said so (ms).
    pub typing: HashMap<UserId, i64>,
    /// Notices, oldest first.
    pub notes: Vec<Note>,
    /// Connection state, or the last error.
    pub status: String,
    /// The input line.
    pub input: Input,
    /// The first log line shown when scrolled back; `None` follows the newest.
    pub top: Option<usize>,
    /// Messages that arrived while scrolled back.
    pub unseen: usize,
    /// The "new messages" line goes after this seq (my read cursor when opened).
    pub unread_from: Option<i64>,
    /// Whether rooms list who read each of my messages.
    pub show_readers: bool,
    /// The newest message from someone else that arrived here since the last refresh.
    pub arrived: Option<i64>,
    /// A message arrived in a conversation the list does not have yet.
    pub unlisted: bool,
    /// The log's line count and height at the last draw.
    pub drawn: (usize, usize),
}

/// How long someone shows as typing after they last said so (ms); a typing client repeats it
/// more often than this.
pub const TYPING_FOR: i64 = 8_000;

/// How many messages a conversation loads at first, and more each time the oldest is reached.
pub const PAGE: usize = 500;

impl Chat {
    /// A screen on the conversation `open` of `list`, with nothing loaded yet: the runner
    /// loads its messages before the first draw.
    pub fn new(me: UserId, list: Vec<Conversation>, open: usize) -> Self {
        Self {
            me,
            list,
            open,
            names: HashMap::new(),
            messages: Vec::new(),
            limit: PAGE,
            pending: Vec::new(),
            receipts: Vec::new(),
            typing: HashMap::new(),
            notes: Vec::new(),
            status: "connecting…".into(),
            input: Input::default(),
            top: None,
            unseen: 0,
            unread_from: None,
            show_readers: false,
            arrived: None,
            unlisted: false,
            drawn: (0, 0),
        }
    }

    /// The open conversation.
    pub fn current(&self) -> &Conversation {
        &self.list[self.open]
    }

    /// How a person is shown: their label in the directory, else the start of their id (see
    /// [`natter_client::label`]).
    pub fn name(&self, user: UserId) -> String {
        natter_client::label(&self.names, user)
    }

    /// Opens the conversation `step` places down the list (up if negative), wrapping around.
    /// Forgets what was loaded for the old one and scrolls to the bottom; the runner then
    /// loads the new one.
    pub fn switch(&mut self, step: isize) {
        let count = isize::try_from(self.list.len()).unwrap_or(isize::MAX);
        if count <= 1 {
            return;
        }
        let at = isize::try_from(self.open).unwrap_or(0);
        self.open = usize::try_from((at + step).rem_euclid(count)).unwrap_or(0);
        self.messages.clear();
        self.pending.clear();
        self.receipts.clear();
        self.typing.clear();
        self.limit = PAGE;
        self.top = None;
        self.unseen = 0;
        self.unread_from = None;
        self.arrived = None;
    }

    /// Takes in one event; true when what the store holds for the screen may have changed.
    /// Updates the list's last message and unread counts, the status line, typing and
    /// notices; a message of a conversation not listed sets `unlisted`.
    pub fn apply(&mut self, event: Event) -> bool {
        let open = self.current().id;
        match event {
            Event::Connected => self.status = "syncing…".into(),
            Event::Synced => self.status = "online".into(),
            Event::Disconnected(reason) => {
                self.status = format!("offline ({reason}); reconnecting…");
            }
            Event::Message(message) => {
                let preview = format!("{}: {}", self.name(message.sender_id), body(&message));
                let mine = message.sender_id == self.me;
                let here = message.conversation_id == open;
                match self
                    .list
                    .iter_mut()
                    .find(|c| c.id == message.conversation_id)
                {
                    Some(entry) => {
                        entry.last = Some(preview);
                        if !mine && !here {
                            entry.unread += 1;
                        }
                    }
                    None => self.unlisted = true,
                }
                if !here {
                    return false;
                }
                self.typing.remove(&message.sender_id);
                if !mine {
                    if self.top.is_some() {
                        self.unseen += 1;
                    } else {
                        self.arrived = self.arrived.max(Some(message.seq));
                    }
                }
                return true;
            }
            Event::Failed { code, .. } => {
                self.status = format!("a message was refused: {code}");
                return true;
            }
            Event::Notice(notice) => {
                self.notes.push(Note {
                    at: now_ms(),
                    notice,
                });
            }
            // Approvals are run by `natter approve`, not from the chat screen.
            Event::Approval(_) => {}
            Event::Typing {
                conversation_id,
                user_id,
                typing,
            } if conversation_id == open && user_id != self.me => {
                if typing {
                    self.typing.insert(user_id, now_ms());
                } else {
                    self.typing.remove(&user_id);
                }
            }
            Event::Typing { .. } => {}
            Event::Sent {
                conversation_id, ..
            }
            | Event::Receipt(natter_proto::ws::Receipt {
                conversation_id, ..
            }) => return conversation_id == open,
        }
        false
    }

    /// Forgets typing indicators older than [`TYPING_FOR`] at `now` (ms): a "stopped" may
    /// never come. True when one went.
    pub fn expire_typing(&mut self, now: i64) -> bool {
        let before = self.typing.len();
        self.typing.retain(|_, since| now - *since < TYPING_FOR);
        self.typing.len() != before
    }

    /// The notices that belong in the open conversation.
    pub fn notes_here(&self) -> impl Iterator<Item = &Note> {
        let conversation = self.current();
        self.notes.iter().filter(move |n| n.concerns(conversation))
    }

    /// Whether the newest message is in view.
    pub fn following(&self) -> bool {
        self.top.is_none()
    }

    /// Scrolls back `lines`; true when the oldest loaded line is shown and older messages
    /// may exist (so more should be loaded).
    pub fn scroll_up(&mut self, lines: usize) -> bool {
        let (total, height) = self.drawn;
        let bottom = total.saturating_sub(height);
        let top = self.top.unwrap_or(bottom).saturating_sub(lines);
        if top < bottom {
            self.top = Some(top);
        }
        top == 0 && self.messages.len() >= self.limit
    }

    /// Scrolls forward `lines`, following the newest again once it is in view.
    pub fn scroll_down(&mut self, lines: usize) {
        let Some(top) = self.top else {
            return;
        };
        let (total, height) = self.drawn;
        let top = top + lines;
        if top >= total.saturating_sub(height) {
            self.newest();
        } else {
            self.top = Some(top);
        }
    }

    /// Jumps to the newest message.
    pub fn newest(&mut self) {
        self.top = None;
        self.unseen = 0;
    }

    /// Loads more history: the line the person looked at stays where it was. `lines_before` is
    /// the log's line count before the load.
    pub fn loaded_more(&mut self, lines_before: usize) {
        if let Some(top) = self.top.as_mut() {
            *top += self.drawn.0.saturating_sub(lines_before);
        }
    }

    /// The marks of my messages in the open conversation, out of every member but me.
    pub fn marks(&self) -> Marks<'_> {
        Marks {
            kind: self.current().kind,
            others: self
                .current()
                .members
                .iter()
                .filter(|&&m| m != self.me)
                .count(),
            receipts: &self.receipts,
        }
    }
}

#[cfg(test)]
pub mod tests {
    use natter_client::{Event, StoredMessage};
    use natter_proto::conversations::ConversationKind;
    use natter_proto::ws::Receipt;
    use natter_proto::{ConversationId, DeviceId, UserId};

    use super::{Chat, Conversation};

    /// A room of `members` (the first is me) and a direct conversation with the second.
    pub fn chat(members: &[UserId]) -> Chat {
        let room = Conversation {
            id: ConversationId::new(),
            kind: ConversationKind::Room,
            title: "plans".into(),
            members: members.to_vec(),
            unread: 0,
            last: None,
        };
        let direct = Conversation {
            id: ConversationId::new(),
            kind: ConversationKind::Direct,
            title: "bob".into(),
            members: members[..2].to_vec(),
            unread: 0,
            last: None,
        };
        Chat::new(members[0], vec![room, direct], 0)
    }

    /// A readable message.
    pub fn message(chat: &Chat, sender: UserId, seq: i64, text: &str) -> StoredMessage {
        StoredMessage {
            conversation_id: chat.current().id,
            seq,
            sender_id: sender,
            sender_device_id: DeviceId::new(),
            client_msg_id: format!("m{seq}"),
            server_ts: 1_800_000_000_000 + seq * 60_000,
            body: Ok(text.into()),
        }
    }

    fn people(count: usize) -> Vec<UserId> {
        (0..count).map(|_| UserId::new()).collect()
    }

    #[test]
    fn rooms_count_who_read_and_direct_conversations_say_read() {
        let members = people(5);
        let mut chat = chat(&members);
        assert_eq!(chat.marks().mark(3), "✓");
        chat.receipts = vec![
            (members[1], 3, 3),
            (members[2], 3, 3),
            (members[3], 5, 4),
            (members[4], 3, 0),
        ];
        assert_eq!(chat.marks().mark(3), "✓✓ read by 3 of 4");
        assert_eq!(chat.marks().mark(5), "✓✓ delivered to 1 of 4");
        assert_eq!(chat.marks().mark(6), "✓");
        assert_eq!(chat.marks().readers(4), [members[3]]);
        chat.switch(1);
        assert_eq!(chat.current().kind, ConversationKind::Direct);
        chat.receipts = vec![(members[1], 7, 5)];
        assert_eq!(chat.marks().mark(5), "✓✓ read");
        assert_eq!(chat.marks().mark(7), "✓✓");
        assert_eq!(chat.marks().mark(8), "✓");
    }

    #[test]
    fn messages_arriving_while_scrolled_back_are_counted_not_read() {
        let members = people(2);
        let mut chat = chat(&members);
        let arrive = |chat: &mut Chat, seq| {
            let message = message(chat, members[1], seq, "hi");
            chat.apply(Event::Message(message))
        };
        assert!(arrive(&mut chat, 1));
        assert_eq!(chat.arrived, Some(1), "in view: read");
        chat.drawn = (100, 20);
        chat.scroll_up(10);
        assert_eq!(chat.top, Some(70));
        assert!(arrive(&mut chat, 2));
        assert!(arrive(&mut chat, 3));
        assert_eq!((chat.unseen, chat.arrived), (2, Some(1)));
        chat.scroll_down(5);
        assert_eq!(chat.top, Some(75));
        chat.scroll_down(50);
        assert!(chat.following());
        assert_eq!(chat.unseen, 0);
        chat.apply(Event::Typing {
            conversation_id: chat.current().id,
            user_id: members[1],
            typing: true,
        });
        let since = chat.typing[&members[1]];
        assert!(!chat.expire_typing(since + 1_000));
        assert!(chat.expire_typing(since + super::TYPING_FOR));
        assert!(chat.typing.is_empty());
        // Scrolling up from the top of fewer lines than the screen does nothing.
        chat.drawn = (5, 20);
        chat.scroll_up(3);
        assert!(chat.following());
    }

    #[test]
    fn other_conversations_count_unread_and_keep_their_last_message() {
        let members = people(2);
        let mut chat = chat(&members);
        let other = chat.list[1].id;
        let mut message = message(&chat, members[1], 9, "elsewhere");
        message.conversation_id = other;
        assert!(!chat.apply(Event::Message(message)));
        assert_eq!(chat.list[1].unread, 1);
        assert!(
            chat.list[1]
                .last
                .as_deref()
                .unwrap()
                .ends_with(": elsewhere")
        );
        let receipt = |conversation_id| {
            Event::Receipt(Receipt {
                conversation_id,
                user_id: members[1],
                device_id: DeviceId::new(),
                delivered_seq: 1,
                read_seq: 1,
            })
        };
        assert!(chat.apply(receipt(chat.current().id)));
        assert!(!chat.apply(receipt(other)));
    }
}
