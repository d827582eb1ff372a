//! `natter chat`: a full-screen conversation. Messages arrive live; your own carry marks
//! (… queued, ✓ sent, ✓✓ delivered, ✓✓ read); the title shows unread counts elsewhere and
//! who is typing. Enter sends, Esc or Ctrl-C quits.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use natter_client::{Device, Event, Queued, StoredMessage};
use natter_proto::{ConversationId, UserId};
use ratatui::crossterm::event::{self, Event as Input, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};
use tokio::sync::{mpsc, oneshot};

use crate::commands::{body, names};

/// What the screen shows.
struct Screen {
    me: UserId,
    title: String,
    messages: Vec<StoredMessage>,
    queued: Vec<String>,
    receipts: (i64, i64),
    typing: HashSet<UserId>,
    unread_elsewhere: HashMap<ConversationId, i64>,
    status: String,
    input: String,
    /// The newest message from someone else that arrived here since the last refresh.
    arrived: Option<i64>,
}

/// Runs the chat until the user quits.
pub async fn run(
    device: Device,
    conversation: ConversationId,
    title: String,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        anyhow::bail!(
            "natter chat needs a terminal; without one, use `natter send` and `natter history`"
        );
    }
    let names = names(&device).await.unwrap_or_default();
    let unread_elsewhere = device
        .session()
        .conversations()
        .await?
        .into_iter()
        .filter(|c| c.id != conversation && c.unread > 0)
        .map(|c| (c.id, c.unread))
        .collect();
    let (events, mut received) = mpsc::channel(256);
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = {
        let device = device.clone();
        tokio::spawn(async move {
            device
                .run(events, async move {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let mut screen = Screen {
        me: device.user_id(),
        title,
        messages: Vec::new(),
        queued: Vec::new(),
        receipts: (0, 0),
        typing: HashSet::new(),
        unread_elsewhere,
        status: "connecting…".into(),
        input: String::new(),
        arrived: None,
    };
    screen.reload(&device, conversation).await?;
    let mut terminal = ratatui::init();
    let outcome = async {
        loop {
            terminal.draw(|frame| screen.draw(frame, &names))?;
            // A burst of events (a sync catching up) costs one read mark and one reload.
            let mut changed = false;
            while let Ok(event) = received.try_recv() {
                changed |= screen.apply(conversation, event);
            }
            if changed {
                screen.refresh(&device, conversation).await?;
            }
            let input = tokio::task::block_in_place(|| -> std::io::Result<Option<Input>> {
                if event::poll(Duration::from_millis(50))? {
                    event::read().map(Some)
                } else {
                    Ok(None)
                }
            })?;
            let Some(Input::Key(key)) = input else {
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            match key.code {
                KeyCode::Esc => break,
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => break,
                KeyCode::Enter if !screen.input.trim().is_empty() => {
                    let text = std::mem::take(&mut screen.input);
                    device.typing(conversation, false);
                    match device.send_text(conversation, &text).await {
                        Ok(_) => screen.reload(&device, conversation).await?,
                        Err(error) => screen.status = error.to_string(),
                    }
                }
                KeyCode::Backspace => {
                    screen.input.pop();
                    if screen.input.is_empty() {
                        device.typing(conversation, false);
                    }
                }
                KeyCode::Char(c) => {
                    if screen.input.is_empty() {
                        device.typing(conversation, true);
                    }
                    screen.input.push(c);
                }
                _ => {}
            }
        }
        anyhow::Ok(())
    }
    .await;
    ratatui::restore();
    let _ = stop.send(());
    runner.await??;
    outcome
}

impl Screen {
    async fn reload(
        &mut self,
        device: &Device,
        conversation: ConversationId,
    ) -> anyhow::Result<()> {
        self.messages = device.messages(conversation, 500).await?;
        self.receipts = device.receipts(conversation).await?;
        self.queued = device
            .queued()
            .await?
            .into_iter()
            .filter_map(|item| match item {
                Queued::Send {
                    conversation_id,
                    text,
                    ..
                } if conversation_id == conversation => Some(text),
                _ => None,
            })
            .collect();
        Ok(())
    }

    /// Marks what arrived here as read (it is on screen), then reloads.
    async fn refresh(
        &mut self,
        device: &Device,
        conversation: ConversationId,
    ) -> anyhow::Result<()> {
        if let Some(seq) = self.arrived.take() {
            device.mark_read(conversation, seq).await?;
        }
        self.reload(device, conversation).await
    }

    /// Takes in one event; true when what the store holds for the screen may have changed.
    fn apply(&mut self, conversation: ConversationId, event: Event) -> bool {
        match event {
            Event::Connected => self.status = "syncing…".into(),
            Event::Synced => self.status = "online".into(),
            Event::Disconnected(reason) => {
                self.status = format!("offline ({reason}); reconnecting…")
            }
            Event::Message(message) if message.conversation_id == conversation => {
                self.typing.remove(&message.sender_id);
                if message.sender_id != self.me {
                    self.arrived = self.arrived.max(Some(message.seq));
                }
                return true;
            }
            Event::Message(message) => {
                *self
                    .unread_elsewhere
                    .entry(message.conversation_id)
                    .or_default() += 1;
            }
            Event::Failed { code, .. } => {
                self.status = format!("a message was refused: {code}");
                return true;
            }
            Event::Notice(notice) => {
                self.status = notice.to_string();
                return true;
            }
            // Approvals are run by `natter devices approve`, not from the chat screen.
            Event::Approval(_) => {}
            Event::Typing {
                conversation_id,
                user_id,
                typing,
            } if conversation_id == conversation => {
                if typing {
                    self.typing.insert(user_id);
                } else {
                    self.typing.remove(&user_id);
                }
            }
            Event::Sent {
                conversation_id, ..
            }
            | Event::Receipt(natter_proto::ws::Receipt {
                conversation_id, ..
            }) => return conversation_id == conversation,
            Event::Typing { .. } => {}
        }
        false
    }

    fn draw(&self, frame: &mut ratatui::Frame<'_>, names: &HashMap<UserId, String>) {
        let [log, typing, input] = Layout::vertical([
            Constraint::Min(3),
            Constraint::Length(1),
            Constraint::Length(3),
        ])
        .areas(frame.area());
        let name = |user: &UserId| names.get(user).cloned().unwrap_or_else(|| user.to_string());
        let (delivered, read) = self.receipts;
        let mut lines: Vec<Line<'_>> = self
            .messages
            .iter()
            .map(|m| {
                let mark = if m.sender_id != self.me {
                    ""
                } else if m.seq <= read {
                    " ✓✓ read"
                } else if m.seq <= delivered {
                    " ✓✓"
                } else {
                    " ✓"
                };
                Line::from(format!("{}: {}{}", name(&m.sender_id), body(m), mark))
            })
            .collect();
        lines.extend(
            self.queued
                .iter()
                .map(|text| Line::from(format!("me: {text} …"))),
        );
        let height = usize::from(log.height.saturating_sub(2));
        let scroll = u16::try_from(lines.len().saturating_sub(height)).unwrap_or(u16::MAX);
        let unread: i64 = self.unread_elsewhere.values().sum();
        let title = format!(
            " {} — {} — {unread} unread elsewhere ",
            self.title, self.status
        );
        frame.render_widget(
            Paragraph::new(lines)
                .block(Block::bordered().title(title))
                .wrap(Wrap { trim: false })
                .scroll((scroll, 0)),
            log,
        );
        let typers: Vec<String> = self.typing.iter().map(name).collect();
        let typing_line = if typers.is_empty() {
            String::new()
        } else {
            format!(" {} typing…", typers.join(", "))
        };
        frame.render_widget(Paragraph::new(typing_line), typing);
        frame.render_widget(
            Paragraph::new(self.input.as_str())
                .block(Block::bordered().title(" message (Enter sends, Esc quits) ")),
            input,
        );
        let x = input.x + 1 + u16::try_from(self.input.chars().count()).unwrap_or(0);
        frame.set_cursor_position((x.min(input.right().saturating_sub(2)), input.y + 1));
    }
}

#[cfg(test)]
mod tests {
    use natter_client::Event;
    use natter_proto::ws::Receipt;
    use natter_proto::{ConversationId, DeviceId, UserId};

    use super::Screen;

    fn screen() -> Screen {
        Screen {
            me: UserId::new(),
            title: "bob".into(),
            messages: Vec::new(),
            queued: Vec::new(),
            receipts: (0, 0),
            typing: Default::default(),
            unread_elsewhere: Default::default(),
            status: String::new(),
            input: String::new(),
            arrived: None,
        }
    }

    #[test]
    fn only_sends_and_receipts_of_the_open_conversation_reload_it() {
        let (open, other) = (ConversationId::new(), ConversationId::new());
        let sent = |conversation_id| Event::Sent {
            conversation_id,
            client_msg_id: "m".into(),
            seq: 1,
        };
        let receipt = |conversation_id| {
            Event::Receipt(Receipt {
                conversation_id,
                user_id: UserId::new(),
                device_id: DeviceId::new(),
                delivered_seq: 1,
                read_seq: 1,
            })
        };
        let mut screen = screen();
        assert!(screen.apply(open, sent(open)));
        assert!(screen.apply(open, receipt(open)));
        assert!(!screen.apply(open, sent(other)));
        assert!(!screen.apply(open, receipt(other)));
    }
}
