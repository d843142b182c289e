//! CPU and memory from /proc (proc(5)): a process's utime + stime (`/proc/<pid>/stat` fields
//! 14 and 15, all its threads) and VmRSS (`/proc/<pid>/status`), and the whole box's busy time
//! (`/proc/stat`, first line). The parsers are pure and tested on captured text.

use std::time::Instant;

/// utime + stime in clock ticks, from the text of `/proc/<pid>/stat`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the
    // last ')'. Then field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in kB, from the text of `/proc/<pid>/status`.
pub fn parse_rss_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Ticks of all CPUs together, from `/proc/stat`'s first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoxTicks {
    /// Everything but idle and iowait; includes irq and softirq.
    pub busy: u64,
    /// irq + softirq: on loopback most TCP work of both sides lands here, charged to no
    /// process.
    pub irq: u64,
    pub total: u64,
}

pub fn parse_box_ticks(stat: &str) -> Option<BoxTicks> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = values.iter().sum();
    let idle = values.get(3)? + values.get(4)?;
    Some(BoxTicks {
        busy: total - idle,
        irq: values.get(5)? + values.get(6)?,
        total,
    })
}

pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// One reading of a process.
#[derive(Clone, Copy, Debug)]
pub struct ProcessSample {
    pub at: Instant,
    pub ticks: u64,
    pub rss_kb: u64,
}

pub fn sample_process(pid: u32) -> Option<ProcessSample> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcessSample {
        at,
        ticks: parse_stat_ticks(&stat)?,
        rss_kb: parse_rss_kb(&status)?,
    })
}

pub fn sample_box() -> Option<BoxTicks> {
    parse_box_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_the_name() {
        let stat = "1234 (cc deliver) 0) S 1 1234 1234 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 \
                    5 0 100 123456 789 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn rss_from_status() {
        let status = "Name:\tcorecast\nVmPeak:\t  99 kB\nVmRSS:\t   26312 kB\nThreads:\t7\n";
        assert_eq!(parse_rss_kb(status), Some(26312));
        assert_eq!(parse_rss_kb("Name: x\n"), None);
    }

    #[test]
    fn box_ticks() {
        let stat = "cpu  100 5 50 800 20 3 7 0 0 0\ncpu0 50 2 25 400 10 1 3 0 0 0\n";
        assert_eq!(
            parse_box_ticks(stat),
            Some(BoxTicks {
                busy: 165,
                irq: 10,
                total: 985
            })
        );
        assert_eq!(parse_box_ticks("intr 1 2 3\n"), None);
    }
}
