//! What a process costs, read from `/proc`: CPU time (user + system, all
//! threads, the same figure as getrusage or `/usr/bin/time`) and resident
//! memory (current and peak).

use std::time::Duration;

/// Linux reports CPU times in clock ticks of `USER_HZ`, 100 on every
/// architecture the kernel's ABI fixes it for.
const TICKS_PER_SEC: u64 = 100;

/// CPU time used so far by process `pid` (`self` for this one).
#[must_use]
pub(crate) fn cpu(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count from after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total = ticks(11) + ticks(12);
    Duration::from_micros(total * (1_000_000 / TICKS_PER_SEC))
}

/// A `VmRSS`/`VmHWM`-style line of `/proc/{pid}/status`, in KiB.
fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resident memory now, KiB.
#[must_use]
pub(crate) fn rss_kib(pid: &str) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Peak resident memory since start, KiB.
#[must_use]
pub(crate) fn peak_rss_kib(pid: &str) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// The CPU model, for the report.
#[must_use]
pub(crate) fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = info.lines().filter(|l| l.starts_with("processor")).count();
    format!("{model}, {cores} logical cores")
}
