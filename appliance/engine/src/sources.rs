//! The source board: what every input the engine pulls or accepts (configured `[[source]]`
//! RTSP cameras and MPEG-TS/UDP feeds, SRT connections) is doing right now, for the control
//! API and `/metrics`.
//!
//! A source task registers once ([`SourceBoard::register`]) and keeps the [`SourceHandle`].
//! The hot path (per datagram, per frame) only adds to relaxed atomics; state changes and
//! error counts, which are rare, take the entry's own lock, which nobody but the API's
//! occasional read contends. The board's list lock is taken on register, unregister and API
//! reads only.
//!
//! State machine, as the API shows it: `connecting` (opening, or waiting for a feed's first
//! datagrams) → `live` (publishing to the hub) → `retrying` (failed; `last_error` says why,
//! `next_attempt_ms` says when the next try starts) or `down` (stopped, e.g. a UDP feed gone
//! silent: it comes back by itself when datagrams arrive again).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// A per-source metric family: name, type, help text and how to read it from a status.
type SourceMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&SourceStatus) -> u64,
);

/// Every source the engine knows, in registration order. Cheap to clone (one `Arc`).
#[derive(Clone, Debug, Default)]
pub struct SourceBoard {
    entries: Arc<Mutex<Vec<Arc<SourceEntry>>>>,
}

/// A source's slot on the board, held by the task that runs the source (clones share it).
#[derive(Clone, Debug)]
pub struct SourceHandle {
    entry: Arc<SourceEntry>,
    board: SourceBoard,
}

#[derive(Debug)]
struct SourceEntry {
    kind: &'static str,
    name: String,
    stream: String,
    url: String,
    packets: AtomicU64,
    bytes: AtomicU64,
    access_units: AtomicU64,
    reconnects: AtomicU64,
    status: Mutex<EntryStatus>,
}

#[derive(Debug, Default)]
struct EntryStatus {
    state: SourceState,
    since_ms: i64,
    last_error: Option<String>,
    next_attempt_ms: Option<i64>,
    /// Malformed or dropped input by kind, in first-seen order (a handful of kinds).
    errors: Vec<(&'static str, u64)>,
    stats: Vec<(&'static str, f64)>,
}

/// Where a source is in its life cycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    #[default]
    Connecting,
    Live,
    Retrying,
    Down,
}

impl SourceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Connecting => "connecting",
            SourceState::Live => "live",
            SourceState::Retrying => "retrying",
            SourceState::Down => "down",
        }
    }
}

/// One source as the API shows it (docs/api.md lists every field).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SourceStatus {
    pub name: String,
    /// `rtsp`, `udp`, `srt`.
    pub kind: &'static str,
    /// The stream it publishes to.
    pub stream: String,
    /// The URL with any password or passphrase replaced by `***`.
    pub url: String,
    pub state: SourceState,
    /// Unix ms when the source entered `state`.
    pub since_ms: i64,
    /// The most recent failure, kept after the source is live again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `retrying`: Unix ms when the next attempt starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
    pub counters: SourceCounters,
    /// Protocol-specific gauges (SRT: `rtt_ms`, …); absent when there are none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stats: BTreeMap<&'static str, f64>,
}

/// A source's counters since the engine started (they survive reconnects).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SourceCounters {
    /// Datagrams (UDP, SRT) or depacketized frames (RTSP: retina does not count RTP packets).
    pub packets: u64,
    /// Payload bytes of those.
    pub bytes: u64,
    /// Access units handed to the hub.
    pub access_units: u64,
    /// Sessions started again after a failure or a silence.
    pub reconnects: u64,
    /// Malformed or dropped input by kind (e.g. `ts_continuity`, `rtp_lost`, `rtsp_error`).
    pub errors: BTreeMap<&'static str, u64>,
    /// The sum of `errors`.
    pub errors_total: u64,
}

impl SourceBoard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source, `connecting`. `url` is redacted here ([`redact_url`]); `name` should be
    /// unique (lookups by name find the first), `stream` is the stream it feeds.
    pub fn register(
        &self,
        kind: &'static str,
        name: &str,
        stream: &str,
        url: &str,
    ) -> SourceHandle {
        let entry = Arc::new(SourceEntry {
            kind,
            name: name.to_owned(),
            stream: stream.to_owned(),
            url: redact_url(url),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            access_units: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            status: Mutex::new(EntryStatus {
                since_ms: unix_ms(SystemTime::now()),
                ..EntryStatus::default()
            }),
        });
        lock(&self.entries).push(entry.clone());
        SourceHandle {
            entry,
            board: self.clone(),
        }
    }

    /// Every source, in registration order.
    pub fn list(&self) -> Vec<SourceStatus> {
        let entries = lock(&self.entries).clone();
        entries.iter().map(|e| e.status()).collect()
    }

    /// The first source named `name`.
    pub fn find(&self, name: &str) -> Option<SourceStatus> {
        let entry = lock(&self.entries).iter().find(|e| e.name == name).cloned();
        entry.map(|e| e.status())
    }

    /// The source feeding `stream`: a live one if there is one, else the first registered.
    pub fn feeding(&self, stream: &str) -> Option<SourceStatus> {
        let entries: Vec<Arc<SourceEntry>> = lock(&self.entries)
            .iter()
            .filter(|e| e.stream == stream)
            .cloned()
            .collect();
        let feeding: Vec<SourceStatus> = entries.iter().map(|e| e.status()).collect();
        let live = feeding.iter().position(|s| s.state == SourceState::Live);
        feeding.into_iter().nth(live.unwrap_or(0))
    }

    /// Appends the Prometheus families of every source (text format 0.0.4).
    pub fn render_metrics(&self, out: &mut String) {
        let sources = self.list();
        let families: [SourceMetric; 5] = [
            (
                "corecast_source_up",
                "gauge",
                "1 while the source is live",
                |s| u64::from(s.state == SourceState::Live),
            ),
            (
                "corecast_source_packets_total",
                "counter",
                "Datagrams (UDP, SRT) or frames (RTSP) received",
                |s| s.counters.packets,
            ),
            (
                "corecast_source_bytes_total",
                "counter",
                "Payload bytes received",
                |s| s.counters.bytes,
            ),
            (
                "corecast_source_access_units_total",
                "counter",
                "Access units handed to the hub",
                |s| s.counters.access_units,
            ),
            (
                "corecast_source_reconnects_total",
                "counter",
                "Sessions started again after a failure or silence",
                |s| s.counters.reconnects,
            ),
        ];
        for (name, kind, help, read) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in &sources {
                let _ = writeln!(out, "{name}{{{}}} {}", labels(s), read(s));
            }
        }
        let name = "corecast_source_errors_total";
        let _ = writeln!(
            out,
            "# HELP {name} Malformed or dropped input, by kind\n# TYPE {name} counter"
        );
        for s in &sources {
            for (error, count) in &s.counters.errors {
                let _ = writeln!(
                    out,
                    "{name}{{{},error=\"{}\"}} {count}",
                    labels(s),
                    escape_label(error)
                );
            }
        }
        let name = "corecast_source_stat";
        let _ = writeln!(
            out,
            "# HELP {name} Protocol-specific source gauges (SRT rtt_ms, loss, ...)\n# TYPE {name} gauge"
        );
        for s in &sources {
            for (stat, value) in &s.stats {
                let _ = writeln!(
                    out,
                    "{name}{{{},stat=\"{}\"}} {value}",
                    labels(s),
                    escape_label(stat)
                );
            }
        }
    }

    fn remove(&self, entry: &Arc<SourceEntry>) {
        lock(&self.entries).retain(|e| !Arc::ptr_eq(e, entry));
    }
}

impl SourceEntry {
    fn status(&self) -> SourceStatus {
        let status = lock(&self.status);
        let errors: BTreeMap<&'static str, u64> = status.errors.iter().copied().collect();
        SourceStatus {
            name: self.name.clone(),
            kind: self.kind,
            stream: self.stream.clone(),
            url: self.url.clone(),
            state: status.state,
            since_ms: status.since_ms,
            last_error: status.last_error.clone(),
            next_attempt_ms: status.next_attempt_ms,
            counters: SourceCounters {
                packets: self.packets.load(Ordering::Relaxed),
                bytes: self.bytes.load(Ordering::Relaxed),
                access_units: self.access_units.load(Ordering::Relaxed),
                reconnects: self.reconnects.load(Ordering::Relaxed),
                errors_total: errors.values().sum(),
                errors,
            },
            stats: status.stats.iter().copied().collect(),
        }
    }
}

impl SourceHandle {
    /// Opening a session (or waiting for a feed).
    pub fn set_connecting(&self) {
        self.set_state(SourceState::Connecting, None, None);
    }

    /// Publishing to the hub.
    pub fn set_live(&self) {
        self.set_state(SourceState::Live, None, None);
    }

    /// Failed with `error`; the next attempt starts after `delay`.
    pub fn set_retrying(&self, error: &str, delay: Duration) {
        let next = unix_ms(SystemTime::now() + delay);
        self.set_state(SourceState::Retrying, Some(error), Some(next));
    }

    /// Stopped with `error`, no attempt scheduled (it may come back by itself).
    pub fn set_down(&self, error: &str) {
        self.set_state(SourceState::Down, Some(error), None);
    }

    fn set_state(&self, state: SourceState, error: Option<&str>, next_attempt_ms: Option<i64>) {
        let mut status = lock(&self.entry.status);
        if status.state != state {
            status.since_ms = unix_ms(SystemTime::now());
        }
        status.state = state;
        if let Some(error) = error {
            status.last_error = Some(error.to_owned());
        }
        status.next_attempt_ms = next_attempt_ms;
    }

    pub fn state(&self) -> SourceState {
        lock(&self.entry.status).state
    }

    /// Input received: `packets` datagrams or frames carrying `bytes`. Lock-free.
    pub fn count_input(&self, packets: u64, bytes: u64) {
        self.entry.packets.fetch_add(packets, Ordering::Relaxed);
        self.entry.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Access units handed to the hub. Lock-free.
    pub fn count_access_units(&self, units: u64) {
        self.entry.access_units.fetch_add(units, Ordering::Relaxed);
    }

    pub fn count_reconnect(&self) {
        self.entry.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Malformed or dropped input of `kind` (a short snake_case name: `ts_continuity`,
    /// `rtp_lost`, `srt_control`, …). Takes the entry's lock: for errors, not every packet.
    pub fn count_error(&self, kind: &'static str, count: u64) {
        if count == 0 {
            return;
        }
        let mut status = lock(&self.entry.status);
        match status.errors.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, total)) => *total += count,
            None => status.errors.push((kind, count)),
        }
    }

    /// Sets protocol-specific gauges (replacing earlier values of the same keys).
    pub fn set_stats(&self, stats: &[(&'static str, f64)]) {
        let mut status = lock(&self.entry.status);
        for &(key, value) in stats {
            match status.stats.iter_mut().find(|(k, _)| *k == key) {
                Some((_, old)) => *old = value,
                None => status.stats.push((key, value)),
            }
        }
    }

    /// This source as the API shows it.
    pub fn status(&self) -> SourceStatus {
        self.entry.status()
    }

    /// Takes the source off the board (an SRT connection that ended). Configured sources
    /// keep their handle for the life of the engine.
    pub fn unregister(self) {
        self.board.remove(&self.entry);
    }
}

/// A lock whose holder panicked still holds consistent counters: take it anyway.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn labels(s: &SourceStatus) -> String {
    format!(
        "source=\"{}\",kind=\"{}\"",
        escape_label(&s.name),
        escape_label(s.kind)
    )
}

/// Prometheus label values escape `\`, `"` and newlines.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Query keys whose values are secrets.
const SECRET_KEYS: [&str; 5] = ["passphrase", "password", "pass", "pwd", "token"];

/// `url` with the password of its user info and the values of secret query keys
/// (`passphrase`, `password`, `pass`, `pwd`, `token`) replaced by `***`. Text that is not
/// a URL is returned as it is, less anything after an `@` before the host.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match before_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
            out.push_str(scheme);
            out.push_str("://");
            match authority.rsplit_once('@') {
                Some((user_info, host)) => {
                    match user_info.split_once(':') {
                        Some((user, _)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        None => out.push_str(user_info),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) if SECRET_KEYS.iter().any(|s| s.eq_ignore_ascii_case(key)) => {
                    out.push_str(key);
                    out.push_str("=***");
                }
                _ => out.push_str(pair),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secrets() {
        for (url, expected) in [
            (
                "rtsp://admin:p%40ss@10.0.0.5:554/Streaming/101",
                "rtsp://admin:***@10.0.0.5:554/Streaming/101",
            ),
            ("rtsp://cam/live", "rtsp://cam/live"),
            ("rtsp://user@cam/live", "rtsp://user@cam/live"),
            (
                "srt://host:9000?streamid=publish:live/a&passphrase=abcdefghij&latency=200",
                "srt://host:9000?streamid=publish:live/a&passphrase=***&latency=200",
            ),
            (
                "udp://239.1.1.1:5000?interface=lo",
                "udp://239.1.1.1:5000?interface=lo",
            ),
            ("rtsp://a:b@c:d@host/x", "rtsp://a:***@host/x"),
        ] {
            assert_eq!(redact_url(url), expected);
        }
    }

    #[test]
    fn states_counters_and_metrics() {
        let board = SourceBoard::new();
        let cam = board.register("rtsp", "cam1", "cam1", "rtsp://u:secret@cam/x");
        let feed = board.register("udp", "feed", "feed", "udp://0.0.0.0:5000");
        assert_eq!(cam.state(), SourceState::Connecting);
        cam.set_retrying("RTSP 401 Unauthorized", Duration::from_secs(4));
        let status = board.find("cam1").unwrap();
        assert_eq!(status.state, SourceState::Retrying);
        assert_eq!(status.url, "rtsp://u:***@cam/x");
        assert_eq!(status.last_error.as_deref(), Some("RTSP 401 Unauthorized"));
        let next = status.next_attempt_ms.unwrap();
        assert!((3_000..=5_000).contains(&(next - unix_ms(SystemTime::now()))));
        cam.count_reconnect();
        cam.set_live();
        cam.count_input(3, 3000);
        cam.count_access_units(2);
        cam.count_error("rtp_lost", 2);
        cam.count_error("rtp_lost", 1);
        cam.count_error("bad_frame", 1);
        cam.count_error("bad_frame", 0);
        let status = cam.status();
        assert_eq!(status.state, SourceState::Live);
        assert_eq!(status.next_attempt_ms, None);
        assert_eq!(
            status.last_error.as_deref(),
            Some("RTSP 401 Unauthorized"),
            "kept after going live"
        );
        assert_eq!(status.counters.packets, 3);
        assert_eq!(status.counters.bytes, 3000);
        assert_eq!(status.counters.access_units, 2);
        assert_eq!(status.counters.reconnects, 1);
        assert_eq!(status.counters.errors["rtp_lost"], 3);
        assert_eq!(status.counters.errors_total, 4);
        feed.set_down("no datagram for 10 s");
        feed.set_stats(&[("rtt_ms", 1.5), ("loss", 0.0)]);
        feed.set_stats(&[("rtt_ms", 2.5)]);
        assert_eq!(feed.status().stats["rtt_ms"], 2.5);

        let json = serde_json::to_value(board.list()).unwrap();
        assert_eq!(json[0]["state"], "live");
        assert_eq!(json[1]["state"], "down");
        assert_eq!(json[1]["stats"]["loss"], 0.0);
        assert!(json[0].get("stats").is_none());

        let mut text = String::new();
        board.render_metrics(&mut text);
        for line in [
            "corecast_source_up{source=\"cam1\",kind=\"rtsp\"} 1",
            "corecast_source_up{source=\"feed\",kind=\"udp\"} 0",
            "corecast_source_bytes_total{source=\"cam1\",kind=\"rtsp\"} 3000",
            "corecast_source_errors_total{source=\"cam1\",kind=\"rtsp\",error=\"rtp_lost\"} 3",
            "corecast_source_stat{source=\"feed\",kind=\"udp\",stat=\"rtt_ms\"} 2.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("secret"));

        assert_eq!(board.feeding("cam1").unwrap().name, "cam1");
        assert!(board.feeding("nope").is_none());
        feed.unregister();
        assert_eq!(board.list().len(), 1);
        assert!(board.find("feed").is_none());
    }

    #[test]
    fn the_live_source_of_a_stream_is_preferred() {
        let board = SourceBoard::new();
        let first = board.register("srt", "a", "live1", "srt://x:1");
        let second = board.register("srt", "b", "live1", "srt://x:2");
        assert_eq!(board.feeding("live1").unwrap().name, "a");
        second.set_live();
        assert_eq!(board.feeding("live1").unwrap().name, "b");
        first.set_down("gone");
        assert_eq!(escape_label("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
