//! What a run prints: progress bars while it runs, then a table for people and a JSON result.

use std::fmt::Write as _;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::cli::Common;
use crate::procstat;
use crate::stats::Latency;

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:24} [{bar:40}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_owned());
    bar
}

/// A result being assembled: table rows and the same values as JSON.
pub struct Report {
    /// (key, value as shown) in the order added; a key added twice shows twice.
    rows: Vec<(String, String)>,
    /// The same values by key (the last one added wins), plus the JSON-only ones.
    json: Map<String, Value>,
}

impl Report {
    /// A report for `scenario`, starting with the parameters that shaped it and the machine's
    /// load average (a busy machine skews every figure; [`Report::emit`] adds it again).
    pub fn new(scenario: &str, common: &Common) -> Self {
        let mut report = Self {
            rows: Vec::new(),
            json: Map::new(),
        };
        report.add("scenario", scenario);
        report.add(
            "payload",
            format!(
                "{} random bytes (base64); encryption is not in the load path",
                common.payload_bytes
            ),
        );
        report.add("workers", common.workers);
        report.add("source_addrs", common.source_addrs);
        report.add("load_average_at_start", procstat::load_average());
        report
    }

    /// Adds a value to the table and the JSON; the table shows floats with two decimals.
    pub fn add(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        let shown = match &value {
            Value::String(text) => text.clone(),
            Value::Number(n) => n
                .as_f64()
                .filter(|_| n.is_f64())
                .map_or_else(|| n.to_string(), |f| format!("{f:.2}")),
            other => other.to_string(),
        };
        self.rows.push((key.to_owned(), shown));
        self.json.insert(key.to_owned(), value);
    }

    /// Adds a value to the JSON only (a series too long for the table).
    pub fn add_json(&mut self, key: &str, value: Value) {
        self.json.insert(key.to_owned(), value);
    }

    /// Adds a latency summary: one table row of percentiles in ms, and the whole
    /// [`Latency`] as a JSON object.
    pub fn latency(&mut self, key: &str, latency: &Latency) {
        self.rows.push((
            key.to_owned(),
            format!(
                "p50 {:.2} / p90 {:.2} / p99 {:.2} / p99.9 {:.2} / max {:.2} ms ({} samples)",
                latency.p50_ms,
                latency.p90_ms,
                latency.p99_ms,
                latency.p999_ms,
                latency.max_ms,
                latency.count
            ),
        ));
        self.json.insert(key.to_owned(), json!(latency));
    }

    /// Prints the table, then the JSON on one line (also written to `--json`); fails only
    /// when that file cannot be written.
    pub fn emit(mut self, common: &Common) -> anyhow::Result<()> {
        self.add("load_average_at_end", procstat::load_average());
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut table = String::new();
        for (key, value) in &self.rows {
            let _ = writeln!(table, "{key:width$}  {value}");
        }
        let json = serde_json::to_string(&Value::Object(self.json))?;
        print!("{table}");
        println!("{json}");
        if let Some(path) = &common.json {
            std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}
