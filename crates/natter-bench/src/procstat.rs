//! A process's memory and CPU time from /proc (Linux).

use std::time::Instant;

/// Clock ticks per second in /proc/PID/stat (`getconf CLK_TCK` is 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// Resident memory of all of `pids` in KiB, if there are any and they all exist.
pub fn total_rss_kib(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| rss_kib(*pid)).sum()
}

/// Resident memory in KiB (`VmRSS`), if the process exists.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Open file descriptors of all of `pids`, if there are any and they all exist.
pub fn total_fds(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|pid| Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64))
        .sum()
}

/// CPU time used so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and
    // stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg gives them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Measures the CPU use of processes from a starting point.
pub struct CpuMeter {
    /// The processes measured.
    pids: Vec<u32>,
    /// Their CPU ticks, summed, at the start.
    ticks: u64,
    /// When the measurement started.
    since: Instant,
}

impl CpuMeter {
    /// Starts measuring `pids` now (None if there are none or one does not exist).
    pub fn start(pids: &[u32]) -> Option<Self> {
        Some(Self {
            pids: pids.to_vec(),
            ticks: Self::ticks(pids)?,
            since: Instant::now(),
        })
    }

    /// The CPU ticks of `pids` summed; `None` when there are none or one is gone.
    fn ticks(pids: &[u32]) -> Option<u64> {
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|pid| cpu_ticks(*pid)).sum()
    }

    /// CPU used since the start, in percent of one core (summed over the processes).
    pub fn percent(&self) -> Option<f64> {
        let used = Self::ticks(&self.pids)?.saturating_sub(self.ticks);
        #[allow(clippy::cast_precision_loss)]
        let busy = used as f64 / TICKS_PER_SEC;
        Some(100.0 * busy / self.since.elapsed().as_secs_f64().max(1e-3))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(super::rss_kib(pid).unwrap() > 0);
        assert!(super::total_rss_kib(&[pid, pid]).unwrap() > super::rss_kib(pid).unwrap());
        assert_eq!(super::total_rss_kib(&[]), None);
        assert!(
            super::total_fds(&[pid]).unwrap() >= 3,
            "stdin, stdout, stderr at least"
        );
        assert_eq!(super::total_fds(&[]), None);
        let meter = super::CpuMeter::start(&[pid]).unwrap();
        assert!(meter.percent().unwrap() >= 0.0);
        assert_eq!(super::load_average().split(' ').count(), 3);
    }
}
