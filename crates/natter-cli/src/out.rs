//! How commands print: text for people, or JSON for scripts. Errors are printed by
//! `errors::report` and notices by `trust`.

use serde_json::Value;

/// Prints text for people or JSON for scripts. Warnings go to standard error either way;
/// under `--json`, notices are JSON lines on standard output among the results.
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
