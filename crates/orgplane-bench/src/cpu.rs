//! CPU accounting over a measurement window, from `/proc` (Linux; elsewhere there is none).
//! On a small shared machine throughput is mostly CPU-bound, so each run reports how many cores
//! this process used (clients, plus the servers when embedded) and how many everything else
//! used: a run that shared its cores with a build is visible as such.
//!
//! Both figures are shares of the machine's own tick count, so no clock-tick rate is assumed.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Consecutive quiet one-second windows that make a quiet machine.
const QUIET_WINDOWS: u32 = 3;

/// Cumulative CPU counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// This process's user + system ticks.
    pub process_ticks: u64,
    /// Machine-wide non-idle ticks (user, nice, system, irq, softirq, steal), all cores summed.
    pub machine_busy_ticks: u64,
    /// Machine-wide ticks of every kind, all cores summed.
    pub machine_total_ticks: u64,
    /// Cores counted in `/proc/stat`.
    pub cores: u32,
}

/// CPU used between two samples, in cores (1.0 = one core busy the whole window).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuUsage {
    /// Cores this process used.
    pub process_cores: f64,
    /// Cores everything else on the machine used (other processes, and kernel time not
    /// charged to us, such as interrupt handling of loopback traffic).
    pub other_cores: f64,
}

impl CpuSample {
    /// Reads the counters now; `None` where `/proc` is missing or unreadable.
    pub fn now() -> Option<CpuSample> {
        let process = std::fs::read_to_string("/proc/self/stat").ok()?;
        let machine = std::fs::read_to_string("/proc/stat").ok()?;
        let process_ticks = parse_process_ticks(&process)?;
        let (machine_busy_ticks, machine_total_ticks, cores) = parse_machine_ticks(&machine)?;
        Some(CpuSample { process_ticks, machine_busy_ticks, machine_total_ticks, cores })
    }

    /// What was used from `self` to `later`.
    pub fn usage_until(&self, later: &CpuSample) -> Option<CpuUsage> {
        let total = later.machine_total_ticks.checked_sub(self.machine_total_ticks)?;
        if total == 0 || self.cores == 0 {
            return None;
        }
        let busy = later.machine_busy_ticks.saturating_sub(self.machine_busy_ticks);
        let process = later.process_ticks.saturating_sub(self.process_ticks);
        // Ticks per core over the window: the wall time in ticks.
        let window = total as f64 / f64::from(self.cores);
        Some(CpuUsage {
            process_cores: process as f64 / window,
            other_cores: busy.saturating_sub(process) as f64 / window,
        })
    }
}

/// Waits at most `limit` until, for [`QUIET_WINDOWS`] one-second windows in a row, everything but
/// this process used at most `max_other_cores`. Returns whether that happened and the other
/// processes' use in the last window; `None` without `/proc`.
pub async fn wait_quiet(limit: Duration, max_other_cores: f64) -> Option<(bool, f64)> {
    let deadline = Instant::now() + limit;
    let mut previous = CpuSample::now()?;
    let (mut quiet_windows, mut last_other) = (0, f64::NAN);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let current = CpuSample::now()?;
        if let Some(usage) = previous.usage_until(&current) {
            last_other = usage.other_cores;
            quiet_windows = if usage.other_cores <= max_other_cores { quiet_windows + 1 } else { 0 };
            if quiet_windows >= QUIET_WINDOWS {
                return Some((true, last_other));
            }
        }
        previous = current;
    }
    Some((false, last_other))
}

/// utime + stime from the text of `/proc/<pid>/stat` (fields 14 and 15; the command name in
/// parentheses may hold spaces, so fields are counted after its closing parenthesis).
fn parse_process_ticks(text: &str) -> Option<u64> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name, field 3 (state) is at index 0: utime (14) is at 11, stime (15) at 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, total, cores) from the text of `/proc/stat`.
fn parse_machine_ticks(text: &str) -> Option<(u64, u64, u32)> {
    let mut lines = text.lines();
    let all = lines.next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = all.split_whitespace().map(|v| v.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    let cores = lines.filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)).count();
    Some((total - idle, total, u32::try_from(cores).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ticks_skip_a_name_with_spaces() {
        let stat = "4242 (tokio worker) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1000 0 0";
        assert_eq!(parse_process_ticks(stat), Some(300));
        assert_eq!(parse_process_ticks("garbage"), None);
    }

    #[test]
    fn machine_ticks_and_cores() {
        let stat =
            "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 50 0 25 400 25 0 0 0 0 0\nintr 1 2\n";
        assert_eq!(parse_machine_ticks(stat), Some((150, 1000, 2)));
    }

    #[test]
    fn usage_is_in_cores() {
        let before = CpuSample { process_ticks: 0, machine_busy_ticks: 0, machine_total_ticks: 0, cores: 2 };
        // 1 s at 100 ticks per second on 2 cores: 200 ticks; we used 100, others 50.
        let after = CpuSample { process_ticks: 100, machine_busy_ticks: 150, machine_total_ticks: 200, cores: 2 };
        let usage = before.usage_until(&after).unwrap();
        assert_eq!(usage, CpuUsage { process_cores: 1.0, other_cores: 0.5 });
        assert_eq!(after.usage_until(&after), None);
    }
}
