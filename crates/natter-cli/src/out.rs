//! How commands print: text for people, or JSON for scripts.

use serde_json::Value;

/// Prints text for people or JSON for scripts.
pub struct Out {
    /// JSON instead of text.
    pub json: bool,
}

impl Out {
    /// Prints one result on standard output: `text` as a line, or `value` as one line of JSON
    /// under `--json`.
    pub fn show(&self, text: impl std::fmt::Display, value: Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }
}
