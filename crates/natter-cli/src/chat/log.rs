//! The log of the open conversation laid out in lines of terminal cells: day separators,
//! times, coloured names, text, marks, notices and pending messages. Each line is one screen
//! row, so the newest message is always whole on screen whatever the width or the characters;
//! messages laid out once are kept until what their lines depend on changes. Drawing and
//! scrolling are `view`'s.

use std::collections::HashMap;

use natter_client::Notice;
use natter_proto::conversations::ConversationKind;
use natter_proto::{ConversationId, UserId};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use unicode_segmentation::UnicodeSegmentation;

use super::clock::Clock;
use super::state::Chat;
use crate::text::{clean, width, wrap};

/// What the time column takes: `HH:MM `. A message's further lines are indented by as much,
/// so they start under the sender's name.
const TIME: usize = 6;

/// Colours for names, picked by user id so a person keeps theirs (across runs too: the pick
/// hashes the id's text). Two people may share a colour; their names tell them apart.
const PALETTE: [Color; 8] = [
    Color::Cyan,
    Color::Green,
    Color::Yellow,
    Color::Magenta,
    Color::LightBlue,
    Color::LightRed,
    Color::LightGreen,
    Color::LightMagenta,
];

/// How a person's name is styled: mine bold, others in their colour.
pub(super) fn colour(chat: &Chat, user: UserId) -> Style {
    if user == chat.me {
        return Style::new().add_modifier(Modifier::BOLD);
    }
    let index = user.to_string().bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    Style::new().fg(PALETTE[index % PALETTE.len()])
}

/// Times, marks and other quiet text.
pub(super) fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

/// Notices and messages that cannot be read.
pub(super) fn warning() -> Style {
    Style::new().fg(Color::Yellow)
}

/// `text` on one line of at most `cells` cells, with `…` when cut; line breaks become
/// spaces, and a grapheme is never split.
pub(super) fn fit(text: &str, cells: usize) -> String {
    let text = text.replace('\n', " ");
    if width(&text) <= cells {
        return text;
    }
    let mut cut = String::new();
    let mut used = 0;
    for grapheme in text.graphemes(true) {
        let w = width(grapheme);
        if used + w + 1 > cells {
            break;
        }
        cut.push_str(grapheme);
        used += w;
    }
    cut.push('…');
    cut
}

/// A line of `text` centred between rules of equal length, such as a day separator; the
/// line is a cell short of `cells` when the text leaves an odd number.
pub(super) fn rule(text: &str, cells: usize, style: Style) -> Line<'static> {
    let side = cells.saturating_sub(width(text) + 2) / 2;
    Line::styled(
        format!("{} {text} {}", "─".repeat(side), "─".repeat(side)),
        style,
    )
}

/// What a notice says, with names; shorter than the CLI's, as the chat points at commands.
fn notice_text(chat: &Chat, notice: &Notice) -> String {
    match notice {
        Notice::SafetyNumberChanged {
            user_id,
            was_verified: true,
        } => format!(
            "{}'s safety number changed since you verified it: nothing is sent to them until \
             you compare it again (natter verify)",
            chat.name(*user_id)
        ),
        Notice::SafetyNumberChanged { user_id, .. } => format!(
            "{}'s safety number changed (natter verify to compare it)",
            chat.name(*user_id)
        ),
        Notice::DevicesSkipped { user_id, devices } => format!(
            "{} device(s) of {} are not signed by their identity and got no keys",
            devices.len(),
            chat.name(*user_id)
        ),
        Notice::MembersAdded { user_ids, .. } => {
            let names: Vec<String> = user_ids.iter().map(|u| chat.name(*u)).collect();
            format!(
                "{} joined since you last sent here; they read what you send from now on",
                names.join(", ")
            )
        }
        Notice::NewDevice { name, .. } => format!(
            "a new device '{name}' logged in to your account and is not approved (natter devices)"
        ),
    }
}

/// Lines for one entry: `first` spans, then `text` wrapped after them with a hanging indent
/// of [`TIME`], then `mark` at its end (or on a line of its own when it does not fit).
fn entry(
    first: Vec<Span<'static>>,
    text: &str,
    text_style: Style,
    mark: Option<(String, Style)>,
    cells: usize,
) -> Vec<Line<'static>> {
    let lead: usize = first.iter().map(|s| width(&s.content)).sum();
    let rest = cells.saturating_sub(TIME).max(1);
    let wrapped = wrap(text, cells.saturating_sub(lead).max(1), rest);
    let count = wrapped.len();
    let mut lines = Vec::with_capacity(count + 1);
    let mut first = Some(first);
    for (index, part) in wrapped.into_iter().enumerate() {
        let mut spans = first
            .take()
            .unwrap_or_else(|| vec![Span::raw(" ".repeat(TIME))]);
        let used = spans.iter().map(|s| width(&s.content)).sum::<usize>() + width(&part);
        spans.push(Span::styled(part, text_style));
        if index + 1 == count
            && let Some((mark, style)) = &mark
        {
            if used + 1 + width(mark) <= cells {
                spans.push(Span::styled(format!(" {mark}"), *style));
            } else {
                lines.push(Line::from(spans));
                spans = vec![
                    Span::raw(" ".repeat(TIME)),
                    Span::styled(mark.clone(), *style),
                ];
            }
        }
        lines.push(Line::from(spans));
    }
    lines
}

/// What a message's lines depend on besides its seq: whether it is readable yet (its key may
/// arrive later), the width, the sender's name, the mark and who read it.
type LayoutKey = (bool, usize, String, Option<String>, Option<String>);

/// Messages laid out at an earlier draw: one is laid out again only when what its lines
/// depend on changed, so a key press or a new message does not lay out the whole history.
#[derive(Default)]
pub struct Layouts {
    /// The conversation the kept layouts belong to; opening another one drops them all.
    conversation: Option<ConversationId>,
    /// Each message's lines by seq, with the key they were laid out for.
    messages: HashMap<i64, (LayoutKey, Vec<Line<'static>>)>,
}

/// One message's lines: time, name and text, its mark, and who read it (`readers` is given
/// only for my messages in a room while Ctrl-R shows them).
fn message_lines(
    chat: &Chat,
    clock: &Clock,
    message: &natter_client::StoredMessage,
    (_, cells, name, mark, readers): &LayoutKey,
) -> Vec<Line<'static>> {
    let first = vec![
        Span::styled(format!("{} ", clock.time(message.server_ts)), dim()),
        Span::styled(name.clone(), colour(chat, message.sender_id)),
        Span::raw(": "),
    ];
    let (text, style) = match &message.body {
        Ok(text) => (clean(text), Style::new()),
        Err(reason) => (format!("⚠ {reason}"), warning()),
    };
    let mark = mark.as_ref().map(|mark| {
        let style = if mark.contains("read") {
            Style::new().fg(Color::Green)
        } else {
            dim()
        };
        (mark.clone(), style)
    });
    let mut lines = entry(first, &text, style, mark, *cells);
    if let Some(readers) = readers {
        let text = format!("read by {readers}");
        let indent = vec![Span::raw(" ".repeat(TIME))];
        lines.extend(entry(indent, &text, dim(), None, *cells));
    }
    lines
}

/// The open conversation laid out in lines of `cells` cells, oldest first: notices by time
/// between the messages, a rule at each new day and before the first unread message, and the
/// pending messages last. Messages come from `layouts` when what they depend on is unchanged.
pub fn timeline(
    chat: &Chat,
    clock: &Clock,
    cells: usize,
    layouts: &mut Layouts,
) -> Vec<Line<'static>> {
    if layouts.conversation != Some(chat.current().id) {
        *layouts = Layouts {
            conversation: Some(chat.current().id),
            messages: HashMap::new(),
        };
    }
    let mut lines = Vec::new();
    let mut notes = chat.notes_here().peekable();
    let mut day = None;
    let note_lines = |note: &super::state::Note| {
        entry(
            vec![Span::styled("  ⚠ ", warning())],
            &notice_text(chat, &note.notice),
            warning(),
            None,
            cells,
        )
    };
    for message in &chat.messages {
        while let Some(note) = notes.next_if(|n| n.at < message.server_ts) {
            lines.extend(note_lines(note));
        }
        let today = clock.day(message.server_ts);
        if day != Some(today) {
            lines.push(rule(&clock.day_label(today), cells, dim()));
            day = Some(today);
        }
        let mine = message.sender_id == chat.me;
        if chat.unread_from.is_some_and(|from| message.seq == from + 1) && !mine {
            lines.push(rule(
                "new messages",
                cells,
                Style::new().fg(Color::LightRed),
            ));
        }
        let name = chat.name(message.sender_id);
        let mark = mine.then(|| chat.marks().mark(message.seq));
        let readers = (mine && chat.show_readers && chat.current().kind == ConversationKind::Room)
            .then(|| {
                let names: Vec<String> = chat
                    .marks()
                    .readers(message.seq)
                    .into_iter()
                    .map(|u| chat.name(u))
                    .collect();
                names.join(", ")
            })
            .filter(|names| !names.is_empty());
        let key = (message.body.is_ok(), cells, name, mark, readers);
        match layouts.messages.get(&message.seq) {
            Some((known, laid_out)) if *known == key => lines.extend(laid_out.iter().cloned()),
            _ => {
                let laid_out = message_lines(chat, clock, message, &key);
                lines.extend(laid_out.iter().cloned());
                layouts.messages.insert(message.seq, (key, laid_out));
            }
        }
    }
    for note in notes {
        lines.extend(note_lines(note));
    }
    for text in &chat.pending {
        let first = vec![
            Span::raw(" ".repeat(TIME)),
            Span::styled(chat.name(chat.me), colour(chat, chat.me)),
            Span::raw(": "),
        ];
        let mark = Some(("◷ pending".to_owned(), dim()));
        lines.extend(entry(first, &clean(text), dim(), mark, cells));
    }
    lines
}
