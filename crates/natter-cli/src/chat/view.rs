//! Drawing the chat screen: the conversation list, the log of the open conversation (laid out
//! by `log`), its members, who is typing, and the input line. It never reads the store: the
//! runner in `chat.rs` loads what [`Chat`] holds.

use natter_proto::UserId;
use natter_proto::conversations::ConversationKind;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::clock::Clock;
use super::log::{Layouts, colour, dim, fit, rule, timeline};
use super::state::Chat;
use crate::text::width;

/// Terminals narrower than this show no conversation list.
const LIST_FROM: u16 = 72;
/// Terminals narrower than this show no member list.
const MEMBERS_FROM: u16 = 100;
/// Columns of the conversation list, borders included, when it is shown.
const LIST_WIDTH: u16 = 24;
/// Columns of a room's member list, borders included, when it is shown.
const MEMBERS_WIDTH: u16 = 22;
/// The input grows to this many lines, then scrolls.
const INPUT_LINES: usize = 5;
/// The key help on the bottom row, cut to the terminal's width.
const HELP: &str = " Enter send · Alt-Enter new line · ↑↓ history · PgUp/PgDn scroll · \
                    Ctrl-End newest · Tab next chat · Ctrl-R who read · Esc quit";

/// Draws the whole screen, and records the log's size for scrolling. Left to right: the
/// conversation list (from [`LIST_FROM`] columns), the log with who is typing and the input
/// below it, and a room's members (from [`MEMBERS_FROM`] columns); the key help at the bottom.
pub fn draw(frame: &mut Frame<'_>, chat: &mut Chat, clock: &Clock, layouts: &mut Layouts) {
    let [main, help] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    frame.render_widget(
        Paragraph::new(Line::styled(fit(HELP, usize::from(help.width)), dim())),
        help,
    );
    let room = chat.current().kind == ConversationKind::Room;
    let list_width = if main.width >= LIST_FROM {
        LIST_WIDTH
    } else {
        0
    };
    let members_width = if room && main.width >= MEMBERS_FROM {
        MEMBERS_WIDTH
    } else {
        0
    };
    let [list, centre, members] = Layout::horizontal([
        Constraint::Length(list_width),
        Constraint::Min(10),
        Constraint::Length(members_width),
    ])
    .areas(main);
    if list_width > 0 {
        draw_list(frame, chat, list);
    }
    if members_width > 0 {
        draw_members(frame, chat, members);
    }
    let inner_width = usize::from(centre.width.saturating_sub(2));
    let (input_lines, (cursor_x, cursor_y)) = chat.input.layout(inner_width);
    let shown = input_lines.len().clamp(1, INPUT_LINES);
    let [log, typing, input] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(u16::try_from(shown + 2).unwrap_or(3)),
    ])
    .areas(centre);
    draw_log(frame, chat, clock, log, layouts);
    let mut typers: Vec<String> = chat.typing.keys().map(|u| chat.name(*u)).collect();
    typers.sort();
    if !typers.is_empty() {
        let verb = if typers.len() == 1 { "is" } else { "are" };
        let text = format!(" {} {verb} typing…", typers.join(", "));
        frame.render_widget(
            Paragraph::new(Line::styled(fit(&text, usize::from(typing.width)), dim())),
            typing,
        );
    }
    let skip = (cursor_y + 1).saturating_sub(shown);
    let visible: Vec<Line<'_>> = input_lines
        .iter()
        .skip(skip)
        .take(shown)
        .map(|l| Line::raw(l.as_str()))
        .collect();
    frame.render_widget(Paragraph::new(visible).block(Block::bordered()), input);
    let x = input.x + 1 + u16::try_from(cursor_x).unwrap_or(0);
    let y = input.y + 1 + u16::try_from(cursor_y - skip).unwrap_or(0);
    frame.set_cursor_position((x.min(input.right().saturating_sub(2)), y));
}

/// Draws the open conversation's log in `area`: the newest lines unless the user scrolled
/// back (`chat.top`), then a marker counting the new messages below takes the last row.
/// Records the log's total and visible heights in `chat.drawn`.
fn draw_log(
    frame: &mut Frame<'_>,
    chat: &mut Chat,
    clock: &Clock,
    area: Rect,
    layouts: &mut Layouts,
) {
    let cells = usize::from(area.width.saturating_sub(2));
    let height = usize::from(area.height.saturating_sub(2));
    let lines = timeline(chat, clock, cells, layouts);
    let total = lines.len();
    chat.drawn = (total, height);
    let bottom = total.saturating_sub(height);
    let start = chat.top.map_or(bottom, |top| top.min(bottom));
    let mut shown: Vec<Line<'static>> = lines.into_iter().skip(start).take(height).collect();
    if !chat.following() && height > 0 {
        let text = match chat.unseen {
            0 => "↓ more below (Ctrl-End)".to_owned(),
            1 => "↓ 1 new message (Ctrl-End)".to_owned(),
            n => format!("↓ {n} new messages (Ctrl-End)"),
        };
        let marker = rule(
            &text,
            cells,
            Style::new().fg(Color::Black).bg(Color::Yellow),
        );
        if shown.len() == height {
            shown.pop();
        }
        shown.push(marker);
    }
    let title = format!(" {} — {} ", chat.current().title, chat.status);
    frame.render_widget(
        Paragraph::new(shown).block(Block::bordered().title(fit(&title, cells))),
        area,
    );
}

/// Draws the conversation list: two rows each (title with its unread count, then the last
/// message), the open one highlighted and kept in view.
fn draw_list(frame: &mut Frame<'_>, chat: &Chat, area: Rect) {
    let cells = usize::from(area.width.saturating_sub(2));
    let mut lines = Vec::new();
    for (index, conversation) in chat.list.iter().enumerate() {
        let open = index == chat.open;
        let unread = if conversation.unread > 0 && !open {
            format!(" {}", conversation.unread)
        } else {
            String::new()
        };
        let title = fit(
            &conversation.title,
            cells.saturating_sub(2 + width(&unread)),
        );
        let pad = cells.saturating_sub(2 + width(&title) + width(&unread));
        let style = if open {
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!(
                    "{} {title}{}",
                    if open { '>' } else { ' ' },
                    " ".repeat(pad)
                ),
                style,
            ),
            Span::styled(
                unread,
                Style::new()
                    .fg(Color::LightRed)
                    .add_modifier(Modifier::BOLD),
            ),
        ]));
        let last = conversation.last.as_deref().unwrap_or("");
        lines.push(Line::styled(
            format!("  {}", fit(last, cells.saturating_sub(2))),
            dim(),
        ));
    }
    // Keep the open conversation in view on short screens.
    let height = usize::from(area.height.saturating_sub(2));
    let skip = (2 * chat.open + 2).saturating_sub(height);
    frame.render_widget(
        Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>())
            .block(Block::bordered().title(" chats ")),
        area,
    );
}

/// Draws the open room's members by name, each in their log colour, this user marked
/// "(you)".
fn draw_members(frame: &mut Frame<'_>, chat: &Chat, area: Rect) {
    let cells = usize::from(area.width.saturating_sub(2));
    let mut members: Vec<(String, UserId)> = chat
        .current()
        .members
        .iter()
        .map(|&u| (chat.name(u), u))
        .collect();
    members.sort();
    let lines: Vec<Line<'static>> = members
        .into_iter()
        .map(|(name, user)| {
            let name = if user == chat.me {
                format!("{name} (you)")
            } else {
                name
            };
            Line::styled(fit(&name, cells), colour(chat, user))
        })
        .collect();
    let title = format!(" {} members ", chat.current().members.len());
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use jiff::tz::TimeZone;
    use natter_client::{Event, Notice, UnableToDecrypt};
    use natter_proto::UserId;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;

    use super::draw;
    use crate::chat::clock::Clock;
    use crate::chat::log::{Layouts, timeline};
    use crate::chat::state::Chat;
    use crate::chat::state::tests::{chat, message};
    use crate::text::width;

    /// The screen's rows as text, each wide character once.
    fn rows(buffer: &Buffer) -> Vec<String> {
        let area = buffer.area;
        (0..area.height)
            .map(|y| {
                let mut row = String::new();
                let mut skip = 0;
                for x in 0..area.width {
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    let symbol = buffer[(x, y)].symbol();
                    skip = width(symbol).saturating_sub(1);
                    row.push_str(symbol);
                }
                row
            })
            .collect()
    }

    fn render(chat: &mut Chat, cells: u16, height: u16) -> Vec<String> {
        let now: Timestamp = "2027-01-15T12:00:00Z".parse().unwrap();
        let clock = Clock::new(TimeZone::UTC, now);
        let mut terminal = Terminal::new(TestBackend::new(cells, height)).unwrap();
        terminal
            .draw(|frame| draw(frame, chat, &clock, &mut Layouts::default()))
            .unwrap();
        rows(terminal.backend().buffer())
    }

    /// What the log shows, as one string without spaces or borders.
    fn squeezed(rows: &[String]) -> String {
        rows.concat()
            .chars()
            .filter(|c| !c.is_whitespace() && !"│─┌┐└┘".contains(*c))
            .collect()
    }

    fn people() -> Vec<UserId> {
        (0..4).map(|_| UserId::new()).collect()
    }

    #[test]
    fn the_newest_message_is_whole_on_screen_at_any_size() {
        let members = people();
        let mut chat = chat(&members);
        chat.names.insert(members[1], "민준".into());
        let long = "긴 메시지입니다 ".repeat(30) + &"日本語のテキスト".repeat(10) + " 🎉🎉🎉";
        for seq in 1..40 {
            let sender = members[usize::try_from(seq % 2).unwrap()];
            let text = if seq % 3 == 0 {
                long.clone()
            } else {
                format!("short {seq}")
            };
            chat.messages.push(message(&chat, sender, seq, &text));
        }
        let newest = format!("{long} newest-e\u{301}nd");
        chat.messages.push(message(&chat, members[1], 40, &newest));
        for (cells, height) in [
            (40, 30),
            (60, 40),
            (80, 24),
            (101, 50),
            (150, 60),
            (230, 40),
        ] {
            let screen = render(&mut chat, cells, height);
            let all = squeezed(&screen);
            let expected: String = newest.chars().filter(|c| !c.is_whitespace()).collect();
            assert!(
                all.contains(&expected),
                "{cells}x{height}:\n{}",
                screen.join("\n")
            );
            assert!(all.contains("민준"), "the sender's name");
        }
    }

    /// How long laying out a full page of history takes (run with `--ignored --nocapture`);
    /// the chat lays it out once per change, not per tick.
    #[test]
    #[ignore = "a measurement"]
    fn timeline_layout_time() {
        let members = people();
        let mut chat = chat(&members);
        let text = "긴 메시지입니다 🎉 the quick brown fox 日本語のテキスト ".repeat(8);
        for seq in 1..=i64::try_from(crate::chat::state::PAGE).unwrap() {
            chat.messages.push(message(&chat, members[1], seq, &text));
        }
        let clock = Clock::new(TimeZone::UTC, Timestamp::now());
        let mut layouts = Layouts::default();
        let started = std::time::Instant::now();
        let lines = timeline(&chat, &clock, 120, &mut layouts).len();
        let first = started.elapsed();
        let rounds = 20;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            timeline(&chat, &clock, 120, &mut layouts);
        }
        eprintln!(
            "{} messages ({lines} lines at 120 columns): {first:?} to lay out, then {:?} per \
             draw",
            chat.messages.len(),
            started.elapsed() / rounds
        );
    }

    #[test]
    fn a_message_that_becomes_readable_is_shown_anew() {
        let members = people();
        let mut chat = chat(&members);
        let mut waiting = message(&chat, members[1], 1, "the key came");
        waiting.body = Err(UnableToDecrypt::MissingKey);
        chat.messages = vec![waiting];
        let now: Timestamp = "2027-01-15T12:00:00Z".parse().unwrap();
        let clock = Clock::new(TimeZone::UTC, now);
        let mut layouts = Layouts::default();
        let text = |lines: Vec<ratatui::text::Line<'_>>| {
            lines
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(text(timeline(&chat, &clock, 80, &mut layouts)).contains("unable to decrypt"));
        chat.messages = vec![message(&chat, members[1], 1, "the key came")];
        let shown = text(timeline(&chat, &clock, 80, &mut layouts));
        assert!(
            shown.contains("the key came") && !shown.contains("unable"),
            "{shown}"
        );
    }

    #[test]
    fn scrolling_back_shows_older_messages_and_counts_new_ones() {
        let members = people();
        let mut chat = chat(&members);
        for seq in 1..=60 {
            chat.messages.push(message(
                &chat,
                members[1],
                seq,
                &format!("message number {seq}"),
            ));
        }
        let screen = render(&mut chat, 80, 24);
        assert!(screen.iter().any(|r| r.contains("message number 60")));
        assert!(!screen.iter().any(|r| r.contains("message number 30 ")));
        chat.scroll_up(30);
        let newer = message(&chat, members[2], 61, "while you read");
        chat.apply(Event::Message(newer.clone()));
        chat.messages.push(newer);
        let screen = render(&mut chat, 80, 24);
        assert!(
            screen.iter().any(|r| r.contains("message number 20")),
            "{}",
            screen.join("\n")
        );
        assert!(!screen.iter().any(|r| r.contains("while you read")));
        assert!(
            screen.iter().any(|r| r.contains("1 new message")),
            "{}",
            screen.join("\n")
        );
        chat.newest();
        let screen = render(&mut chat, 80, 24);
        assert!(screen.iter().any(|r| r.contains("while you read")));
    }

    #[test]
    fn days_times_ticks_notices_and_members_show() {
        let members = people();
        let mut chat = chat(&members);
        chat.names.insert(members[2], "carol".into());
        let mut old = message(&chat, members[2], 1, "last week");
        old.server_ts = "2027-01-08T09:15:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond();
        let mut today = message(&chat, members[0], 2, "mine today");
        today.server_ts = "2027-01-15T11:58:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond();
        let mut broken = message(&chat, members[1], 3, "");
        broken.server_ts = today.server_ts + 1;
        broken.body = Err(UnableToDecrypt::MissingKey);
        chat.messages = vec![old, today, broken];
        chat.receipts = vec![(members[1], 2, 2), (members[2], 2, 2), (members[3], 2, 0)];
        chat.pending = vec!["still queued".into()];
        chat.notes.push(crate::chat::state::Note {
            at: i64::MAX,
            notice: Notice::SafetyNumberChanged {
                user_id: members[2],
                was_verified: false,
            },
        });
        chat.notes.push(crate::chat::state::Note {
            at: i64::MAX,
            notice: Notice::MembersAdded {
                conversation_id: chat.current().id,
                user_ids: vec![members[2]],
            },
        });
        chat.notes.push(crate::chat::state::Note {
            at: i64::MAX,
            notice: Notice::MembersAdded {
                conversation_id: chat.list[1].id,
                user_ids: vec![members[3]],
            },
        });
        chat.typing.insert(members[2], 0);
        let text = render(&mut chat, 120, 30).join("\n");
        for expected in [
            "Friday 8 January 2027",
            "09:15 carol: last week",
            "Today",
            "11:58",
            "mine today ✓✓ read by 2 of 3",
            "unable to decrypt",
            "still queued ◷ pending",
            "carol's safety number changed",
            "carol joined since you last sent here",
            "carol is typing",
            "4 members",
            "(you)",
        ] {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }
        assert_eq!(
            text.matches("joined since").count(),
            1,
            "only this conversation's: {text}"
        );
        chat.show_readers = true;
        let text = render(&mut chat, 120, 30).join("\n");
        assert!(
            text.lines()
                .any(|l| l.contains("read by user ") && l.contains(", carol")),
            "{text}"
        );
    }
}
