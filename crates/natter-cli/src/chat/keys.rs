//! What each key does on the chat screen: a key changes the [`Chat`] and returns an
//! [`Action`]; the runner in `chat.rs` does what needs the store or the server.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::state::Chat;

/// What the runner does after a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    Nothing,
    /// Leave the chat.
    Quit,
    /// Send this text in the open conversation.
    Send(String),
    /// The input changed: tell the others whether I am typing.
    Typing(bool),
    /// Another conversation was opened: load it.
    Opened,
    /// Scrolled to the oldest loaded message: load older ones.
    LoadMore,
}

/// Lines a mouse wheel step moves (Shift- and Ctrl-arrows move one line, the page keys a
/// screen).
pub const WHEEL: usize = 3;

/// Applies one key press: editing and history go to the input line, Shift/Ctrl-arrows and
/// the page keys scroll, Tab and Shift-Tab switch conversations, Esc or Ctrl-C/D quit.
/// Returns what the runner must do; [`Action::Typing`] only when the text changed.
pub fn press(chat: &mut Chat, key: KeyEvent) -> Action {
    let control = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let shift = key.modifiers.contains(KeyModifiers::SHIFT);
    let page = chat.drawn.1.saturating_sub(1).max(1);
    let before = chat.input.text().to_owned();
    match key.code {
        KeyCode::Esc => return Action::Quit,
        KeyCode::Char('c' | 'd') if control => return Action::Quit,
        KeyCode::Enter if alt || shift => chat.input.insert("\n"),
        KeyCode::Char('j') if control => chat.input.insert("\n"),
        KeyCode::Enter => {
            return match chat.input.submit() {
                Some(text) => {
                    chat.newest();
                    Action::Send(text)
                }
                None => Action::Nothing,
            };
        }
        KeyCode::Char('r') if control => chat.show_readers = !chat.show_readers,
        KeyCode::Char('g') if control => chat.newest(),
        KeyCode::Char(c) if !control => chat.input.insert(c.encode_utf8(&mut [0; 4])),
        KeyCode::Backspace => chat.input.backspace(),
        KeyCode::Delete => chat.input.delete(),
        KeyCode::Left => chat.input.left(),
        KeyCode::Right => chat.input.right(),
        KeyCode::Home => chat.input.home(),
        KeyCode::End if control => chat.newest(),
        KeyCode::End => chat.input.end(),
        KeyCode::Up if shift || control => return scroll_up(chat, 1),
        KeyCode::Down if shift || control => chat.scroll_down(1),
        KeyCode::Up => chat.input.history_back(),
        KeyCode::Down => chat.input.history_forward(),
        KeyCode::PageUp => return scroll_up(chat, page),
        KeyCode::PageDown => chat.scroll_down(page),
        KeyCode::Tab => {
            chat.switch(1);
            return Action::Opened;
        }
        KeyCode::BackTab => {
            chat.switch(-1);
            return Action::Opened;
        }
        _ => {}
    }
    if chat.input.text() == before {
        Action::Nothing
    } else {
        Action::Typing(!chat.input.text().is_empty())
    }
}

/// Scrolls back `lines`, asking for older messages ([`Action::LoadMore`]) once the oldest
/// loaded line is in view and the last load was a full page.
pub fn scroll_up(chat: &mut Chat, lines: usize) -> Action {
    if chat.scroll_up(lines) {
        Action::LoadMore
    } else {
        Action::Nothing
    }
}

#[cfg(test)]
mod tests {
    use natter_proto::UserId;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::{Action, press};
    use crate::chat::state::tests::chat;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn typing_sending_and_new_lines() {
        let mut chat = chat(&[UserId::new(), UserId::new()]);
        assert_eq!(
            press(&mut chat, key(KeyCode::Char('h'))),
            Action::Typing(true)
        );
        assert_eq!(
            press(&mut chat, key(KeyCode::Char('i'))),
            Action::Typing(true)
        );
        assert_eq!(press(&mut chat, key(KeyCode::Left)), Action::Nothing);
        press(&mut chat, key(KeyCode::End));
        press(&mut chat, KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT));
        press(&mut chat, key(KeyCode::Char('!')));
        assert_eq!(
            press(&mut chat, key(KeyCode::Enter)),
            Action::Send("hi\n!".into())
        );
        assert_eq!(press(&mut chat, key(KeyCode::Enter)), Action::Nothing);
        press(&mut chat, key(KeyCode::Char('x')));
        assert_eq!(
            press(&mut chat, key(KeyCode::Backspace)),
            Action::Typing(false)
        );
        press(&mut chat, key(KeyCode::Up));
        assert_eq!(chat.input.text(), "hi\n!");
        assert_eq!(press(&mut chat, key(KeyCode::Esc)), Action::Quit);
    }

    #[test]
    fn paging_scrolls_and_tab_switches() {
        let mut chat = chat(&[UserId::new(), UserId::new()]);
        chat.drawn = (100, 21);
        press(&mut chat, key(KeyCode::PageUp));
        assert_eq!(chat.top, Some(59));
        press(&mut chat, KeyEvent::new(KeyCode::Down, KeyModifiers::SHIFT));
        assert_eq!(chat.top, Some(60));
        press(
            &mut chat,
            KeyEvent::new(KeyCode::End, KeyModifiers::CONTROL),
        );
        assert!(chat.following());
        // At the oldest loaded line, with a full page loaded, older messages are asked for.
        let members = [chat.me, chat.list[0].members[1]];
        for seq in 1..=i64::try_from(crate::chat::state::PAGE).unwrap() {
            let message = crate::chat::state::tests::message(&chat, members[1], seq, "m");
            chat.messages.push(message);
        }
        assert_eq!(press(&mut chat, key(KeyCode::PageUp)), Action::Nothing);
        for _ in 0..3 {
            press(&mut chat, key(KeyCode::PageUp));
        }
        assert_eq!(press(&mut chat, key(KeyCode::PageUp)), Action::LoadMore);
        assert_eq!(press(&mut chat, key(KeyCode::Tab)), Action::Opened);
        assert_eq!(chat.open, 1);
        assert_eq!(press(&mut chat, key(KeyCode::Tab)), Action::Opened);
        assert_eq!(chat.open, 0);
    }
}
