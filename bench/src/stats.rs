//! What a run measured: per-worker counters and HDR histograms, merged into one [`Report`]
//! that is printed as a table and written as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Request kinds, each with its own histograms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Playlist = 0,
    Init = 1,
    Segment = 2,
}

pub const KINDS: [Kind; 3] = [Kind::Playlist, Kind::Init, Kind::Segment];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Playlist => "playlist",
            Kind::Init => "init",
            Kind::Segment => "segment",
        }
    }
}

/// Histograms hold microseconds, 1 µs to 120 s, 3 significant digits.
fn histogram() -> Histogram<u64> {
    // Bounds are constants that `new_with_bounds` accepts (low >= 1, high >= 2 * low).
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid constant bounds")
}

/// One worker's measurements (merged across workers with `merge`).
#[derive(Debug, Clone)]
pub struct WorkerStats {
    pub ttfb: [Histogram<u64>; 3],
    pub download: [Histogram<u64>; 3],
    pub startup: Histogram<u64>,
    /// TTFB of requests sent before the steady window, all kinds.
    pub ramp_ttfb: Histogram<u64>,
    /// How late the worker fired its timers: when high, the generator itself (or the box)
    /// was the bottleneck and latencies it measured are inflated.
    pub timer_lateness: Histogram<u64>,
    pub requests: [u64; 3],
    /// Response bytes (head and body) received.
    pub bytes: u64,
    /// Requests and bytes completed after the ramp-up (for rates).
    pub steady_requests: u64,
    pub steady_bytes: u64,
    pub errors: BTreeMap<String, u64>,
    pub viewers: u64,
    pub connected_at_end: u64,
    /// Fewest viewers connected at once after the ramp-up.
    pub connected_min_steady: u64,
    pub connects: u64,
    pub stalls: u64,
    pub stall_time: Duration,
    pub viewers_stalled: u64,
    pub segments: u64,
    pub sampled_bodies: u64,
    pub requests_in_flight_at_end: u64,
    /// Requests in flight for more than 5 s at the end, by kind and state.
    pub stuck_at_end: BTreeMap<String, u64>,
    pub head_buffer_exhausted: u64,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            ttfb: [histogram(), histogram(), histogram()],
            download: [histogram(), histogram(), histogram()],
            startup: histogram(),
            ramp_ttfb: histogram(),
            timer_lateness: histogram(),
            requests: [0; 3],
            bytes: 0,
            steady_requests: 0,
            steady_bytes: 0,
            errors: BTreeMap::new(),
            viewers: 0,
            connected_at_end: 0,
            connected_min_steady: u64::MAX,
            connects: 0,
            stalls: 0,
            stall_time: Duration::ZERO,
            viewers_stalled: 0,
            segments: 0,
            sampled_bodies: 0,
            requests_in_flight_at_end: 0,
            stuck_at_end: BTreeMap::new(),
            head_buffer_exhausted: 0,
        }
    }
}

impl WorkerStats {
    pub fn error(&mut self, kind: &str) {
        // alloc: only on an error's first occurrence.
        if let Some(n) = self.errors.get_mut(kind) {
            *n += 1;
        } else {
            self.errors.insert(kind.to_owned(), 1);
        }
    }

    /// Records a completed request; its times go to the per-kind histograms only when it
    /// was sent in the steady window, else to `ramp_ttfb` (connection setup and the players'
    /// initial catch-up load the box differently).
    pub fn record(&mut self, kind: Kind, steady: bool, ttfb: Duration, download: Duration) {
        let k = kind as usize;
        self.requests[k] += 1;
        if !steady {
            self.ramp_ttfb.saturating_record(ttfb.as_micros() as u64);
            return;
        }
        self.ttfb[k].saturating_record(ttfb.as_micros() as u64);
        self.download[k].saturating_record(download.as_micros() as u64);
    }

    pub fn merge(&mut self, other: &WorkerStats) {
        for k in 0..3 {
            // Same bounds on both sides, so `add` cannot fail.
            let _ = self.ttfb[k].add(&other.ttfb[k]);
            let _ = self.download[k].add(&other.download[k]);
            self.requests[k] += other.requests[k];
        }
        let _ = self.startup.add(&other.startup);
        let _ = self.ramp_ttfb.add(&other.ramp_ttfb);
        let _ = self.timer_lateness.add(&other.timer_lateness);
        self.bytes += other.bytes;
        self.steady_requests += other.steady_requests;
        self.steady_bytes += other.steady_bytes;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        self.viewers += other.viewers;
        self.connected_at_end += other.connected_at_end;
        // Workers reach their minimum at different moments: the sum is a lower bound.
        self.connected_min_steady = match (self.connected_min_steady, other.connected_min_steady) {
            (u64::MAX, b) => b,
            (a, u64::MAX) => a,
            (a, b) => a + b,
        };
        self.connects += other.connects;
        self.stalls += other.stalls;
        self.stall_time += other.stall_time;
        self.viewers_stalled += other.viewers_stalled;
        self.segments += other.segments;
        self.sampled_bodies += other.sampled_bodies;
        self.requests_in_flight_at_end += other.requests_in_flight_at_end;
        for (kind, n) in &other.stuck_at_end {
            *self.stuck_at_end.entry(kind.clone()).or_default() += n;
        }
        self.head_buffer_exhausted += other.head_buffer_exhausted;
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Percentiles {
                count: 0,
                p50_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 0.0,
            };
        }
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// CPU and memory of a process over the steady window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessUsage {
    pub pid: u32,
    /// Cores busy on average (1.0 = one core all the time).
    pub cpu_cores: f64,
    pub rss_max_mb: f64,
    pub rss_end_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    /// All requests of this kind; the percentiles cover those sent in the steady window.
    pub requests: u64,
    pub ttfb: Percentiles,
    pub download: Percentiles,
}

/// The whole result of `corecast-bench viewers`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub viewers_asked: u64,
    pub threads: usize,
    pub burst: bool,
    pub duration_s: f64,
    /// From the end of the ramp-up to the end of the run: what rates are computed over.
    pub steady_s: f64,
    pub connections_held_at_end: u64,
    pub connections_min_steady: u64,
    pub connects: u64,
    pub requests: u64,
    pub requests_per_s: f64,
    pub gbps: f64,
    pub kinds: BTreeMap<&'static str, KindReport>,
    pub startup: Percentiles,
    /// TTFB of requests sent before the steady window (ramp-up and warm-up), all kinds.
    pub ramp_ttfb: Percentiles,
    /// How late the generator fired its timers (see `WorkerStats::timer_lateness`).
    pub generator_timer_lateness: Percentiles,
    pub stalls: u64,
    pub stall_time_s: f64,
    pub viewers_stalled: u64,
    pub segments: u64,
    pub sampled_bodies: u64,
    pub errors: BTreeMap<String, u64>,
    pub errors_total: u64,
    pub requests_in_flight_at_end: u64,
    /// Requests in flight for more than 5 s at the end, by kind and state.
    pub stuck_at_end: BTreeMap<String, u64>,
    pub head_buffer_exhausted: u64,
    pub server: Option<ProcessUsage>,
    pub generator: ProcessUsage,
    /// Cores busy on the whole box (irq and softirq included) over the steady window.
    pub box_busy_cores: f64,
    /// The irq + softirq part of it: loopback TCP work of both sides, charged to no process.
    pub box_irq_cores: f64,
    /// Busy, less irq/softirq, server and generator: other load on a shared box.
    pub other_cores: f64,
    pub box_cores: usize,
    pub server_cpu_per_1000_viewers: Option<f64>,
}

impl Report {
    pub fn kinds_from(stats: &WorkerStats) -> BTreeMap<&'static str, KindReport> {
        KINDS
            .iter()
            .map(|&k| {
                let i = k as usize;
                (
                    k.name(),
                    KindReport {
                        requests: stats.requests[i],
                        ttfb: Percentiles::of(&stats.ttfb[i]),
                        download: Percentiles::of(&stats.download[i]),
                    },
                )
            })
            .collect()
    }

    /// The human table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "corecast-bench viewers: {} viewers of {} ({} threads{}), {:.1} s ({:.1} s steady)",
            self.viewers_asked,
            self.url,
            self.threads,
            if self.burst { ", burst" } else { "" },
            self.duration_s,
            self.steady_s
        );
        let _ = writeln!(
            t,
            "connections held {} at end (min {} steady), {} connects",
            self.connections_held_at_end, self.connections_min_steady, self.connects
        );
        let _ = writeln!(
            t,
            "requests {} ({:.0}/s steady), {:.3} Gbps steady, segments {}, sampled bodies {}",
            self.requests, self.requests_per_s, self.gbps, self.segments, self.sampled_bodies
        );
        let _ = writeln!(
            t,
            "{:<9} {:>9} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8}",
            "kind", "requests", "ttfb p50", "p99", "p99.9", "max", "dl p50", "p99", "p99.9", "max"
        );
        for (name, k) in &self.kinds {
            let _ = writeln!(
                t,
                "{:<9} {:>9} | {:>8.2} {:>8.2} {:>8.2} {:>8.2} | {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                name,
                k.requests,
                k.ttfb.p50_ms,
                k.ttfb.p99_ms,
                k.ttfb.p999_ms,
                k.ttfb.max_ms,
                k.download.p50_ms,
                k.download.p99_ms,
                k.download.p999_ms,
                k.download.max_ms
            );
        }
        let _ = writeln!(
            t,
            "(times in ms, requests sent in the steady window; before it: {} requests, ttfb p50 {:.2} p99 {:.2} max {:.2})",
            self.ramp_ttfb.count,
            self.ramp_ttfb.p50_ms,
            self.ramp_ttfb.p99_ms,
            self.ramp_ttfb.max_ms
        );
        let _ = writeln!(
            t,
            "stalls {} ({} viewers), stall time {:.2} s; startup p50 {:.0} ms p99 {:.0} ms",
            self.stalls,
            self.viewers_stalled,
            self.stall_time_s,
            self.startup.p50_ms,
            self.startup.p99_ms
        );
        let _ = writeln!(
            t,
            "generator timer lateness p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            self.generator_timer_lateness.p50_ms,
            self.generator_timer_lateness.p99_ms,
            self.generator_timer_lateness.max_ms
        );
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let stuck: Vec<String> = self
            .stuck_at_end
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let _ = writeln!(
            t,
            "errors {} [{}], in flight at end {} (over 5 s: [{}]), head buffers exhausted {}",
            self.errors_total,
            errors.join(" "),
            self.requests_in_flight_at_end,
            stuck.join(" "),
            self.head_buffer_exhausted
        );
        if let Some(s) = &self.server {
            let _ = writeln!(
                t,
                "server pid {}: {:.3} cores, RSS max {:.1} MB end {:.1} MB, {:.4} cores per 1000 viewers",
                s.pid,
                s.cpu_cores,
                s.rss_max_mb,
                s.rss_end_mb,
                self.server_cpu_per_1000_viewers.unwrap_or(0.0)
            );
        }
        let _ = writeln!(
            t,
            "generator: {:.3} cores, RSS {:.1} MB; box: {:.2} of {} cores busy ({:.2} irq+softirq, {:.2} other processes)",
            self.generator.cpu_cores,
            self.generator.rss_max_mb,
            self.box_busy_cores,
            self.box_cores,
            self.box_irq_cores,
            self.other_cores
        );
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = WorkerStats::default();
        a.record(
            Kind::Segment,
            true,
            Duration::from_millis(2),
            Duration::from_millis(5),
        );
        a.record(
            Kind::Segment,
            false,
            Duration::from_millis(900),
            Duration::ZERO,
        );
        a.error("eof");
        a.connected_min_steady = 10;
        let mut b = WorkerStats::default();
        b.record(
            Kind::Segment,
            true,
            Duration::from_millis(4),
            Duration::from_millis(5),
        );
        b.error("eof");
        b.error("http_404");
        a.merge(&b);
        assert_eq!(a.requests[Kind::Segment as usize], 3);
        assert_eq!(a.ramp_ttfb.len(), 1, "the ramp request is kept apart");
        assert_eq!(a.errors["eof"], 2);
        assert_eq!(a.errors["http_404"], 1);
        assert_eq!(
            a.connected_min_steady, 10,
            "a worker with no sample adds nothing"
        );
        let p = Percentiles::of(&a.ttfb[Kind::Segment as usize]);
        assert_eq!(p.count, 2);
        assert!((p.p50_ms - 2.0).abs() < 0.01, "{p:?}");
        assert!((p.max_ms - 4.0).abs() < 0.01, "{p:?}");
    }
}
