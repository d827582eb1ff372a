//! The standard `process_*` series (as Prometheus's own clients name them), read from Linux's
//! `/proc` at each scrape: resident memory, open file descriptors, CPU seconds, start time.

use std::fmt::Write;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, fixed at 100 in Linux's ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// The series in Prometheus's text format; a series whose source cannot be read is left out.
pub fn render() -> String {
    let mut text = String::new();
    if let Some(bytes) = resident_bytes() {
        family(
            &mut text,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes",
            bytes,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let open = fds.count() as f64;
        family(
            &mut text,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors",
            open,
        );
    }
    if let Some((cpu, started)) = cpu_and_start() {
        family(
            &mut text,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds",
            cpu,
        );
        family(
            &mut text,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch in seconds",
            started,
        );
    }
    text
}

/// Appends one metric family (its help, type and one value) in the exposition format.
fn family(text: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = write!(
        text,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
    );
}

/// `VmRSS` from `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<f64>()
        .ok()?;
    Some(kib * 1024.0)
}

/// User plus system CPU seconds, and the start time in seconds since the epoch, from
/// `/proc/self/stat` (in ticks since boot) and the boot time in `/proc/stat`.
fn cpu_and_start() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: the state
    // is field 3, so field n is at index n - 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let cpu = (field(14)? + field(15)?) / TICKS_PER_SECOND;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse::<f64>()
        .ok()?;
    Some((cpu, boot + field(22)? / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_series_is_read_here() {
        let text = super::render();
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_cpu_seconds_total",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing: {text}"
            );
        }
    }
}
