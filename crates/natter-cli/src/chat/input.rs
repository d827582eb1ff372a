//! The input line: editing with a cursor, several lines (pasted, or Alt-Enter), and a
//! history of what was sent, walked with Up and Down. Which key does what is `keys`'; drawing
//! the line is `view`'s.

use unicode_segmentation::UnicodeSegmentation;

use crate::text;

/// How many sent texts the history keeps.
const HISTORY: usize = 100;

/// What is being typed, and what was sent before. One input serves every conversation, so
/// a draft stays when the person switches to another.
#[derive(Default)]
pub struct Input {
    /// What is typed, line breaks included; cleaned of control characters as it comes in.
    text: String,
    /// The cursor, as a byte offset into `text` at a grapheme boundary.
    cursor: usize,
    /// The texts sent, oldest first, at most [`HISTORY`], without repeats in a row.
    history: Vec<String>,
    /// Where Up and Down are in the history, and the draft they left.
    browsing: Option<(usize, String)>,
}

impl Input {
    /// The text typed so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Inserts typed or pasted text at the cursor (pasted line breaks stay).
    pub fn insert(&mut self, typed: &str) {
        let typed = text::clean(typed);
        self.text.insert_str(self.cursor, &typed);
        self.cursor += typed.len();
    }

    /// Deletes the grapheme before the cursor.
    pub fn backspace(&mut self) {
        if let Some(start) = self.previous() {
            self.text.drain(start..self.cursor);
            self.cursor = start;
        }
    }

    /// Deletes the grapheme under the cursor.
    pub fn delete(&mut self) {
        if let Some(end) = self.next() {
            self.text.drain(self.cursor..end);
        }
    }

    /// Moves the cursor one grapheme left.
    pub fn left(&mut self) {
        self.cursor = self.previous().unwrap_or(self.cursor);
    }

    /// Moves the cursor one grapheme right.
    pub fn right(&mut self) {
        self.cursor = self.next().unwrap_or(self.cursor);
    }

    /// Moves the cursor to the start.
    pub fn home(&mut self) {
        self.cursor = 0;
    }

    /// Moves the cursor to the end.
    pub fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// Where the grapheme before the cursor starts; `None` at the start.
    fn previous(&self) -> Option<usize> {
        self.text[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map(|(i, _)| i)
    }

    /// Where the grapheme under the cursor ends; `None` at the end.
    fn next(&self) -> Option<usize> {
        self.text[self.cursor..]
            .graphemes(true)
            .next()
            .map(|g| self.cursor + g.len())
    }

    /// Takes the text to send (none if only spaces) and remembers it in the history, unless
    /// it repeats the last one; the input is left empty and history browsing ends.
    pub fn submit(&mut self) -> Option<String> {
        if self.text.trim().is_empty() {
            return None;
        }
        let text = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        if self.history.last() != Some(&text) {
            self.history.push(text.clone());
        }
        let excess = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..excess);
        Some(text)
    }

    /// Shows the previous sent text (the draft is kept for Down).
    pub fn history_back(&mut self) {
        let at = match &self.browsing {
            Some((0, _)) => return,
            Some((at, _)) => at - 1,
            None if self.history.is_empty() => return,
            None => {
                let draft = self.text.clone();
                self.browsing = Some((self.history.len(), draft));
                self.history.len() - 1
            }
        };
        if let Some((position, _)) = &mut self.browsing {
            *position = at;
        }
        self.show(self.history[at].clone());
    }

    /// Shows the next sent text, or the draft after the newest.
    pub fn history_forward(&mut self) {
        let Some((at, draft)) = &mut self.browsing else {
            return;
        };
        *at += 1;
        let shown = match self.history.get(*at) {
            Some(text) => text.clone(),
            None => {
                let draft = std::mem::take(draft);
                self.browsing = None;
                draft
            }
        };
        self.show(shown);
    }

    /// Replaces the text with one from the history (or the draft), the cursor at its end.
    fn show(&mut self, text: String) {
        self.text = text;
        self.cursor = self.text.len();
    }

    /// The text laid out in lines of `width` cells (broken anywhere, so the cursor can be
    /// placed exactly), and the cursor's (column, line). At least one line; a cursor after a
    /// full line starts an empty one, so it is never drawn past `width` (at least 2).
    pub fn layout(&self, width: usize) -> (Vec<String>, (usize, usize)) {
        let width = width.max(2);
        let mut lines = vec![String::new()];
        let (mut x, mut cursor) = (0, None);
        for (at, grapheme) in self.text.grapheme_indices(true) {
            if at == self.cursor {
                cursor = Some((x, lines.len() - 1));
            }
            if grapheme == "\n" {
                lines.push(String::new());
                x = 0;
                continue;
            }
            let cells = text::width(grapheme);
            if x + cells > width {
                lines.push(String::new());
                x = 0;
                if at == self.cursor {
                    cursor = Some((0, lines.len() - 1));
                }
            }
            lines.last_mut().expect("never empty").push_str(grapheme);
            x += cells;
        }
        let cursor = cursor.unwrap_or_else(|| {
            if x >= width {
                lines.push(String::new());
                (0, lines.len() - 1)
            } else {
                (x, lines.len() - 1)
            }
        });
        (lines, cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::Input;

    fn typed(text: &str) -> Input {
        let mut input = Input::default();
        input.insert(text);
        input
    }

    #[test]
    fn the_cursor_lands_after_wide_characters() {
        let mut input = typed("한글 ok");
        assert_eq!(input.layout(40).1, (7, 0));
        input.left();
        input.left();
        input.left();
        assert_eq!(input.layout(40).1, (4, 0), "after the two syllables");
        input.backspace();
        assert_eq!(input.text(), "한 ok");
        // Combining marks go with their letter.
        let mut accented = typed("e\u{301}x");
        accented.left();
        accented.left();
        assert_eq!(accented.layout(40).1, (0, 0));
        accented.delete();
        assert_eq!(accented.text(), "x");
    }

    #[test]
    fn long_and_pasted_text_wraps_with_the_cursor_on_it() {
        let input = typed("abcdefghij");
        assert_eq!(
            input.layout(4),
            (vec!["abcd".into(), "efgh".into(), "ij".into()], (2, 2))
        );
        let full = typed("abcd");
        assert_eq!(
            full.layout(4).1,
            (0, 1),
            "a full line moves the cursor down"
        );
        let pasted = typed("first line\r\nsecond 世界");
        let (lines, cursor) = pasted.layout(40);
        assert_eq!(lines, ["first line", "second 世界"]);
        assert_eq!(cursor, (11, 1));
        // A wide character that does not fit goes to the next line whole.
        assert_eq!(typed("abc世").layout(4).0, ["abc", "世"]);
    }

    #[test]
    fn history_walks_back_and_returns_to_the_draft() {
        let mut input = Input::default();
        for text in ["one", "two"] {
            input.insert(text);
            assert_eq!(input.submit().as_deref(), Some(text));
        }
        assert_eq!(input.submit(), None, "nothing to send");
        input.insert("draft");
        input.history_back();
        assert_eq!(input.text(), "two");
        input.history_back();
        input.history_back();
        assert_eq!(input.text(), "one");
        input.history_forward();
        assert_eq!(input.text(), "two");
        input.history_forward();
        assert_eq!(input.text(), "draft");
    }
}
