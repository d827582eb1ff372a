//! Text measured in terminal cells, as the terminal draws it: grapheme by grapheme, wide
//! characters (Hangul, CJK, most emoji) taking two cells and combining marks none of their
//! own. Wrapping breaks between words, and inside a word only when it is wider than a line.
//! Styles and the layout of the chat log are `chat::log`'s.

use natter_client::StoredMessage;
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// The cells one grapheme takes (control characters are not drawn).
fn cells(grapheme: &str) -> usize {
    if grapheme.contains(char::is_control) {
        0
    } else {
        grapheme.width()
    }
}

/// The cells `text` takes on one line. Control characters, line breaks included, take none:
/// [`clean`] or split the text first.
pub fn width(text: &str) -> usize {
    text.graphemes(true).map(cells).sum()
}

/// `text` without control characters: tabs become spaces and other controls (such as the
/// escape that starts a terminal sequence) are dropped; line breaks stay (a carriage return,
/// as terminals paste them, is one).
pub fn clean(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .filter_map(|c| match c {
            '\n' | '\r' => Some('\n'),
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Wraps `text` (already [`clean`]) into lines of at most `first` cells for the first line
/// and `rest` for the others; line breaks in the text start new lines. At least one line.
/// A word that does not fit after what a line holds moves whole to the next line when it fits
/// there, else it is cut between graphemes; a line is wider than its limit only when one
/// grapheme is.
pub fn wrap(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    let limit = |lines: &Vec<String>| if lines.is_empty() { first } else { rest }.max(1);
    for (index, paragraph) in text.split('\n').enumerate() {
        if index > 0 {
            lines.push(std::mem::take(&mut line));
            used = 0;
        }
        for word in paragraph.split_word_bounds() {
            let w = width(word);
            if used + w <= limit(&lines) {
                line.push_str(word);
                used += w;
            } else if word.trim().is_empty() {
                // A space where the line is full: the break replaces it.
                lines.push(std::mem::take(&mut line));
                used = 0;
            } else if used > 0 && w <= rest.max(1) {
                lines.push(std::mem::take(&mut line));
                line.push_str(word);
                used = w;
            } else {
                for grapheme in word.graphemes(true) {
                    let g = cells(grapheme);
                    if used > 0 && used + g > limit(&lines) {
                        lines.push(std::mem::take(&mut line));
                        used = 0;
                    }
                    line.push_str(grapheme);
                    used += g;
                }
            }
        }
    }
    lines.push(line);
    lines
}

/// A message's text without control characters (a sender cannot steer the terminal), or why
/// it cannot be shown.
pub fn body(message: &StoredMessage) -> String {
    match &message.body {
        Ok(text) => clean(text),
        Err(reason) => format!("[{reason}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::{clean, width, wrap};

    #[test]
    fn wide_and_combining_characters_are_measured_as_drawn() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("안녕하세요"), 10);
        assert_eq!(width("日本語"), 6);
        assert_eq!(width("🎉"), 2);
        // e + combining acute accent, and a decomposed Hangul syllable (ᄒ + ᅡ + ᆫ).
        assert_eq!(width("e\u{301}"), 1);
        assert_eq!(width("\u{1112}\u{1161}\u{11ab}"), 2);
        assert_eq!(width("a\u{1b}[31mb"), 6, "the escape itself is not drawn");
    }

    #[test]
    fn lines_never_exceed_the_width() {
        let texts = [
            "the quick brown fox jumps over the lazy dog again and again",
            "안녕하세요 반갑습니다 오늘 날씨가 정말 좋네요 그렇죠",
            "日本語のテキストは単語の間に空白がありません。長い文章です。",
            "🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉 party",
            "e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}",
            &"x".repeat(95),
        ];
        for text in texts {
            for width_limit in [3, 7, 10, 21, 40] {
                let lines = wrap(text, width_limit, width_limit);
                for line in &lines {
                    assert!(width(line) <= width_limit, "{line:?} in {width_limit}");
                }
                let joined: String = lines.concat();
                let kept = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
                assert_eq!(
                    kept(&joined),
                    kept(text),
                    "nothing is lost at {width_limit}"
                );
            }
        }
    }

    #[test]
    fn words_move_whole_to_the_next_line_and_breaks_are_kept() {
        assert_eq!(
            wrap("hello brave new world", 11, 11),
            ["hello brave", "new world"]
        );
        assert_eq!(wrap("one\ntwo", 20, 20), ["one", "two"]);
        assert_eq!(wrap("", 5, 5), [""]);
        // A narrower first line (after a name) and wider following ones.
        assert_eq!(wrap("aaa bbb ccc", 4, 8), ["aaa ", "bbb ccc"]);
        assert_eq!(clean("a\tb\r\nc\u{7}\rd"), "a b\nc\nd");
    }
}
