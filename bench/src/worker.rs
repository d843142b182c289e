//! One worker thread: its own io_uring [`Ring`] (the driver's client side), a share of the
//! viewers, a timer heap, and the loop that drives them. No thread or task per viewer: a viewer
//! is a [`Viewer`] in a table, indexed by its direct-descriptor slot.
//!
//! Loop turn: fire due timers (connect, playlist poll, reconnect); submit and wait until the
//! next timer or a completion (never less than 1 ms, so the loop does not spin); handle every
//! completion. Bodies of segments are counted, not copied (`recv_discard`), except for one
//! response in `sample_every`, which is read whole and checked.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use uring::{Completion, OpKind, Ring, RingConfig, Token, tcp_client_socket};

use crate::player::{Player, PlayerConfig, PlaylistOutcome, SegmentInfo, Want};
use crate::playlist::{MediaPlaylist, resolve};
use crate::response::{BodyKind, check_body, check_prefix, parse_head};
use crate::stats::{Kind, WorkerStats};
use crate::{BenchError, MAX_CQ_ENTRIES};

/// Live counters all workers add to, for progress lines.
#[derive(Debug, Default)]
pub struct Progress {
    pub connected: AtomicI64,
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

/// What one worker is asked to do.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    pub index: usize,
    pub threads: usize,
    /// Viewers of this worker; its viewer `i` is viewer `index + i * threads` of the run.
    pub viewers: u32,
    pub total_viewers: u64,
    pub target: SocketAddrV4,
    /// `Host` header value.
    pub host: String,
    pub playlist_path: String,
    pub start: Instant,
    /// New connections per second over all workers; 0 = all at once.
    pub ramp_per_s: f64,
    /// Flash crowd: every viewer makes its first request at `burst_at`, in the same phase.
    pub burst: bool,
    pub burst_at: Instant,
    /// End of ramp-up and warm-up: requests after it count towards rates.
    pub steady_at: Instant,
    pub end: Instant,
    /// Source addresses to bind, round robin (empty: let the kernel choose).
    pub sources: Vec<Ipv4Addr>,
    /// Read and check one segment body in this many (0: none).
    pub sample_every: u64,
    pub reconnect_delay: Duration,
    pub player: PlayerConfig,
    pub progress: Arc<Progress>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conn {
    Waiting,
    Connecting,
    Open,
    Closing { close_sent: bool },
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rx {
    Idle,
    Head,
    /// Reading the body into the slot's buffer (playlists, sampled segments).
    Keep,
    /// Counting the body away with `MSG_TRUNC`.
    Discard {
        remaining: u64,
    },
}

/// One simulated viewer: about 200 bytes.
#[derive(Debug)]
struct Viewer {
    player: Player,
    conn: Conn,
    rx: Rx,
    /// Ops in flight on this slot.
    ops: u8,
    send_pending: bool,
    want: Option<Want>,
    kind: BodyKind,
    status: u16,
    close_after: bool,
    sample: bool,
    head_len: u32,
    content_length: u64,
    sent_at: Instant,
    first_byte: Option<Instant>,
    timer: Option<Instant>,
    source: Option<Ipv4Addr>,
    opened_before: bool,
}

struct ListedEntry {
    info: SegmentInfo,
    request: Bytes,
    kind: BodyKind,
}

#[derive(Clone, Copy)]
struct PlaylistSummary {
    target_duration: Duration,
    listed: Option<(u64, u64)>,
    ended: bool,
}

/// Everything the worker learnt from playlists: request bytes per segment, shared by all its
/// viewers (built once per segment, not per request).
struct Catalogue {
    host: String,
    playlist_path: String,
    playlist_request: Bytes,
    segments: BTreeMap<u64, ListedEntry>,
    maps: Vec<(String, Bytes)>,
    last_body: Vec<u8>,
    last_summary: Option<PlaylistSummary>,
}

fn request_bytes(host: &str, path: &str) -> Bytes {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: corecast-bench\r\n\r\n")
        .into_bytes()
        .into()
}

/// A slot is one viewer for the whole run, and it closes its descriptor only once every op of
/// the old connection has completed (`Viewer::ops`), so no late completion can be taken for the
/// next connection's: generation 0 is enough.
fn token(op: OpKind, slot: u32) -> Token {
    Token::new(op, slot, 0)
}

impl Catalogue {
    fn new(host: &str, playlist_path: &str) -> Catalogue {
        Catalogue {
            host: host.to_owned(),
            playlist_path: playlist_path.to_owned(),
            playlist_request: request_bytes(host, playlist_path),
            segments: BTreeMap::new(),
            maps: Vec::new(),
            last_body: Vec::new(),
            last_summary: None,
        }
    }

    /// Learns a playlist body; most viewers fetch the same bytes, parsed once.
    fn learn(&mut self, body: &[u8]) -> Option<PlaylistSummary> {
        if body == self.last_body.as_slice() && self.last_summary.is_some() {
            return self.last_summary;
        }
        let playlist = MediaPlaylist::parse(body)?;
        for s in &playlist.segments {
            if self.segments.contains_key(&s.sequence) {
                continue;
            }
            let map = s.map_uri.as_ref().map(|uri| {
                let path = resolve(&self.playlist_path, uri);
                match self.maps.iter().position(|(p, _)| *p == path) {
                    Some(i) => i as u32,
                    None => {
                        let request = request_bytes(&self.host, &path);
                        self.maps.push((path, request));
                        (self.maps.len() - 1) as u32
                    }
                }
            });
            let path = resolve(&self.playlist_path, &s.uri);
            self.segments.insert(
                s.sequence,
                ListedEntry {
                    info: SegmentInfo {
                        duration: Duration::from_secs_f64(s.duration.clamp(0.0, 3600.0)),
                        map,
                        gap: s.gap,
                    },
                    kind: BodyKind::from_path(&path),
                    request: request_bytes(&self.host, &path),
                },
            );
        }
        if let Some(first) = playlist.first_sequence() {
            // Keep some history for viewers still behind; drop the rest.
            let keep_from = first.saturating_sub(64);
            while let Some((&oldest, _)) = self.segments.first_key_value() {
                if oldest >= keep_from {
                    break;
                }
                self.segments.remove(&oldest);
            }
        }
        let summary = PlaylistSummary {
            target_duration: Duration::from_secs_f64(playlist.target_duration.clamp(0.1, 3600.0)),
            listed: playlist.first_sequence().zip(playlist.last_sequence()),
            ended: playlist.ended,
        };
        self.last_body.clear();
        self.last_body.extend_from_slice(body);
        self.last_summary = Some(summary);
        Some(summary)
    }

    fn info(&self, sequence: u64) -> Option<SegmentInfo> {
        self.segments.get(&sequence).map(|e| e.info)
    }
}

pub struct Worker {
    plan: WorkerPlan,
    ring: Ring,
    /// Completions of one loop turn (reused).
    cqes: Vec<Completion>,
    viewers: Vec<Viewer>,
    catalogue: Catalogue,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    stats: WorkerStats,
    scratch: Vec<u8>,
    connected: u64,
    segments_asked: u64,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.plan.index)
            .field("viewers", &self.viewers.len())
            .field("connected", &self.connected)
            .finish()
    }
}

impl Worker {
    pub fn new(plan: WorkerPlan) -> Result<Worker, BenchError> {
        let head_buffers = (plan.viewers.clamp(256, 8192)).next_power_of_two() as u16;
        let slots = plan.viewers.max(1);
        let ring = Ring::new(&RingConfig {
            sq_entries: 4096,
            cq_entries: slots.saturating_mul(4).clamp(4096, MAX_CQ_ENTRIES),
            files: slots,
            recv_buffers: head_buffers,
            recv_buffer_size: 2048,
            // Requests are one short head each.
            max_send_bytes: 64 * 1024,
        })?;
        let mut timers = BinaryHeap::with_capacity(plan.viewers as usize * 2);
        let mut viewers = Vec::with_capacity(plan.viewers as usize);
        for i in 0..plan.viewers {
            let global = plan.index as u64 + u64::from(i) * plan.threads as u64;
            let connect_at = if plan.ramp_per_s > 0.0 {
                plan.start + Duration::from_secs_f64(global as f64 / plan.ramp_per_s)
            } else {
                plan.start
            };
            let (first_request, phase) = if plan.burst {
                (plan.burst_at, 0.0)
            } else {
                (connect_at, global as f64 / plan.total_viewers.max(1) as f64)
            };
            let source = (!plan.sources.is_empty())
                .then(|| plan.sources[(global % plan.sources.len() as u64) as usize]);
            viewers.push(Viewer {
                player: Player::new(plan.player, first_request, phase),
                conn: Conn::Waiting,
                rx: Rx::Idle,
                ops: 0,
                send_pending: false,
                want: None,
                kind: BodyKind::Other,
                status: 0,
                close_after: false,
                sample: false,
                head_len: 0,
                content_length: 0,
                sent_at: plan.start,
                first_byte: None,
                timer: Some(connect_at),
                source,
                opened_before: false,
            });
            timers.push(Reverse((connect_at, i)));
        }
        let stats = WorkerStats {
            viewers: u64::from(plan.viewers),
            ..WorkerStats::default()
        };
        Ok(Worker {
            catalogue: Catalogue::new(&plan.host, &plan.playlist_path),
            plan,
            ring,
            cqes: Vec::with_capacity(4096),
            viewers,
            timers,
            stats,
            scratch: Vec::with_capacity(2048),
            connected: 0,
            segments_asked: 0,
        })
    }

    /// Runs until the plan's end and returns what was measured.
    pub fn run(mut self) -> Result<WorkerStats, BenchError> {
        loop {
            let now = Instant::now();
            if now >= self.plan.end {
                break;
            }
            while let Some(&Reverse((at, slot))) = self.timers.peek() {
                if at > now {
                    break;
                }
                self.timers.pop();
                let Some(v) = self.viewers.get_mut(slot as usize) else {
                    continue;
                };
                if v.timer == Some(at) {
                    v.timer = None;
                    self.stats
                        .timer_lateness
                        .saturating_record(now.saturating_duration_since(at).as_micros() as u64);
                    self.on_timer(slot, now)?;
                }
            }
            let next = self
                .timers
                .peek()
                .map_or(self.plan.end, |t| t.0.0)
                .min(self.plan.end);
            let timeout = next
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            self.ring.wait(timeout)?;
            let mut cqes = std::mem::take(&mut self.cqes);
            self.ring.reap(&mut cqes);
            let now = Instant::now();
            for c in cqes.drain(..) {
                self.on_completion(c, now)?;
            }
            self.cqes = cqes;
            if now >= self.plan.steady_at {
                self.stats.connected_min_steady =
                    self.stats.connected_min_steady.min(self.connected);
            }
        }
        let end = self.plan.end;
        for v in &self.viewers {
            let playout = v.player.finish(end);
            self.stats.stalls += u64::from(playout.stalls);
            self.stats.stall_time += playout.stall_time;
            self.stats.viewers_stalled += u64::from(playout.stalls > 0);
            if let Some(startup) = playout.startup {
                self.stats
                    .startup
                    .saturating_record(startup.as_micros() as u64);
            }
            if v.conn == Conn::Open {
                self.stats.connected_at_end += 1;
            }
            if v.rx != Rx::Idle {
                self.stats.requests_in_flight_at_end += 1;
                if end.saturating_duration_since(v.sent_at) > Duration::from_secs(5) {
                    // Requests that waited far longer than any segment should: say where.
                    let kind = match v.want {
                        Some(Want::Playlist) | None => "playlist",
                        Some(Want::Init { .. }) => "init",
                        Some(Want::Segment { .. }) => "segment",
                    };
                    let state = match v.rx {
                        Rx::Head if v.first_byte.is_none() => "no_byte",
                        Rx::Head => "head",
                        Rx::Keep => "body_kept",
                        Rx::Discard { .. } => "body_discarded",
                        Rx::Idle => "idle",
                    };
                    let key = format!("{kind}_{state}_send_pending_{}", v.send_pending);
                    *self.stats.stuck_at_end.entry(key).or_default() += 1;
                }
            }
        }
        self.plan
            .progress
            .connected
            .fetch_sub(self.connected as i64, Ordering::Relaxed);
        // Dropping the ring cancels what is in flight and closes every connection.
        Ok(self.stats)
    }

    fn set_timer(&mut self, slot: u32, at: Instant) {
        let Some(v) = self.viewers.get_mut(slot as usize) else {
            return;
        };
        if v.timer.is_none_or(|t| at < t) {
            v.timer = Some(at);
            self.timers.push(Reverse((at, slot)));
        }
    }

    fn on_timer(&mut self, slot: u32, now: Instant) -> Result<(), BenchError> {
        let conn = self.viewers[slot as usize].conn;
        match conn {
            Conn::Waiting | Conn::Closed => self.open(slot, now),
            Conn::Open => self.drive(slot, now),
            Conn::Connecting | Conn::Closing { .. } => Ok(()),
        }
    }

    fn open(&mut self, slot: u32, now: Instant) -> Result<(), BenchError> {
        let source = self.viewers[slot as usize].source;
        if let Some(buf) = self.ring.received_mut(slot) {
            buf.clear();
        }
        self.ring.discard_send(slot);
        let peer = SocketAddr::V4(self.plan.target);
        let opened = match tcp_client_socket(peer, source.map(IpAddr::V4)) {
            Ok(socket) => self.ring.install_socket(slot, socket).map_err(|_| "socket"),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => Err("socket_emfile"),
            Err(_) => Err("socket"),
        };
        if let Err(kind) = opened {
            self.count_error(kind);
            self.set_timer(slot, now + self.plan.reconnect_delay);
            self.viewers[slot as usize].conn = Conn::Closed;
            return Ok(());
        }
        self.ring
            .connect(slot, peer, token(OpKind::Connect, slot))?;
        let v = &mut self.viewers[slot as usize];
        v.ops += 1;
        v.conn = Conn::Connecting;
        Ok(())
    }

    fn count_error(&mut self, kind: &str) {
        self.stats.error(kind);
        self.plan.progress.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Asks the player what to fetch and sends it, or sets a timer for when it will know.
    fn drive(&mut self, slot: u32, now: Instant) -> Result<(), BenchError> {
        let catalogue = &self.catalogue;
        let v = &mut self.viewers[slot as usize];
        if v.conn != Conn::Open || v.rx != Rx::Idle || v.send_pending {
            return Ok(());
        }
        let Some(want) = v.player.next_request(now, |seq| catalogue.info(seq)) else {
            let at = v.player.wake_at().max(now + Duration::from_millis(1));
            if !v.player.is_ended() {
                self.set_timer(slot, at);
            }
            return Ok(());
        };
        let (request, kind) = match want {
            Want::Playlist => (catalogue.playlist_request.clone(), BodyKind::Other),
            Want::Init { map } => match catalogue.maps.get(map as usize) {
                Some((path, request)) => (request.clone(), BodyKind::from_path(path)),
                None => {
                    v.player.request_failed(now, want);
                    return Ok(());
                }
            },
            Want::Segment { sequence } => match catalogue.segments.get(&sequence) {
                Some(entry) => (entry.request.clone(), entry.kind),
                None => {
                    v.player.request_failed(now, want);
                    return Ok(());
                }
            },
        };
        let sample = matches!(want, Want::Segment { .. })
            && self.plan.sample_every > 0
            && self.segments_asked.is_multiple_of(self.plan.sample_every);
        if matches!(want, Want::Segment { .. }) {
            self.segments_asked += 1;
        }
        v.want = Some(want);
        v.kind = kind;
        v.sample = sample;
        v.rx = Rx::Head;
        v.sent_at = now;
        v.first_byte = None;
        v.send_pending = true;
        v.ops += 2;
        self.ring.set_send_body(slot, request)?;
        self.ring.send(slot, token(OpKind::Send, slot), false)?;
        self.ring.recv_provided(slot, token(OpKind::Recv, slot))?;
        Ok(())
    }

    /// Handles one completion; a provided buffer it carries goes back to the kernel when `c`
    /// is dropped.
    fn on_completion(&mut self, c: Completion, now: Instant) -> Result<(), BenchError> {
        let slot = c.token.slot();
        let Some(op) = c.token.op() else {
            return Ok(());
        };
        let Some(v) = self.viewers.get_mut(slot as usize) else {
            return Ok(());
        };
        v.ops = v.ops.saturating_sub(1);
        if let Conn::Closing { close_sent } = v.conn {
            if op == OpKind::Close {
                v.conn = Conn::Closed;
                let at = now + self.plan.reconnect_delay;
                if !v.player.is_ended() {
                    self.set_timer(slot, at);
                }
            } else if v.ops == 0 && !close_sent {
                v.conn = Conn::Closing { close_sent: true };
                v.ops += 1;
                self.ring.close_slot(slot, token(OpKind::Close, slot))?;
            }
            return Ok(());
        }
        match op {
            OpKind::Connect => {
                if c.result < 0 {
                    self.fail(slot, now, "connect")?;
                } else {
                    v.conn = Conn::Open;
                    self.connected += 1;
                    self.stats.connects += 1;
                    self.plan.progress.connected.fetch_add(1, Ordering::Relaxed);
                    if v.opened_before {
                        v.player.restart(now);
                    }
                    v.opened_before = true;
                    self.drive(slot, now)?;
                }
            }
            OpKind::Send => {
                v.send_pending = false;
                if c.result < 0 {
                    self.fail(slot, now, "send")?;
                } else if self.ring.send_pending(slot) > 0 {
                    // Short despite MSG_WAITALL (a signal): send the rest.
                    v.send_pending = true;
                    v.ops += 1;
                    self.ring.send(slot, token(OpKind::Send, slot), false)?;
                } else if v.rx == Rx::Idle {
                    self.drive(slot, now)?;
                }
            }
            OpKind::Recv => {
                if c.result == -libc::ENOBUFS {
                    self.stats.head_buffer_exhausted += 1;
                    v.ops += 1;
                    self.ring.recv_provided(slot, token(OpKind::Recv, slot))?;
                    return Ok(());
                }
                let Some(buffer) = c.buffer.filter(|_| c.result > 0) else {
                    let kind = if c.result == 0 {
                        "closed_by_server"
                    } else {
                        "recv"
                    };
                    return self.fail(slot, now, kind);
                };
                v.first_byte.get_or_insert(now);
                self.scratch.clear();
                self.scratch.extend_from_slice(&buffer);
                drop(buffer);
                self.on_head_bytes(slot, now, true)?;
            }
            OpKind::RecvInto => {
                if c.result <= 0 {
                    let kind = if c.result == 0 {
                        "closed_by_server"
                    } else {
                        "recv"
                    };
                    return self.fail(slot, now, kind);
                }
                v.first_byte.get_or_insert(now);
                if v.rx == Rx::Head {
                    self.on_head_bytes(slot, now, false)?;
                } else {
                    self.continue_keep(slot, now)?;
                }
            }
            OpKind::RecvDiscard => {
                if c.result <= 0 {
                    let kind = if c.result == 0 {
                        "closed_by_server"
                    } else {
                        "recv"
                    };
                    return self.fail(slot, now, kind);
                }
                if let Rx::Discard { remaining } = v.rx {
                    let remaining = remaining.saturating_sub(c.result as u64);
                    if remaining == 0 {
                        self.complete(slot, now, false)?;
                    } else {
                        v.rx = Rx::Discard { remaining };
                        v.ops += 1;
                        self.ring.recv_discard(
                            slot,
                            remaining,
                            token(OpKind::RecvDiscard, slot),
                        )?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Bytes of a response head arrived: in `scratch` (`from_scratch`, a provided buffer) or
    /// appended to the slot's buffer (a head split over several recvs).
    fn on_head_bytes(
        &mut self,
        slot: u32,
        now: Instant,
        from_scratch: bool,
    ) -> Result<(), BenchError> {
        let mut acc = match self.ring.received_mut(slot) {
            Some(buf) => std::mem::take(buf),
            None => return self.fail(slot, now, "recv"),
        };
        if from_scratch && !acc.is_empty() {
            acc.extend_from_slice(&self.scratch);
        }
        let use_scratch = from_scratch && acc.is_empty();
        let bytes: &[u8] = if use_scratch { &self.scratch } else { &acc };
        let head = match parse_head(bytes) {
            Err(_) => {
                self.restore(slot, acc);
                return self.fail(slot, now, "bad_response");
            }
            Ok(None) => {
                if bytes.len() > 16 * 1024 {
                    self.restore(slot, acc);
                    return self.fail(slot, now, "bad_response");
                }
                if use_scratch {
                    acc.extend_from_slice(&self.scratch);
                }
                self.restore(slot, acc);
                self.viewers[slot as usize].ops += 1;
                self.ring
                    .recv_into(slot, 2048, token(OpKind::RecvInto, slot))?;
                return Ok(());
            }
            Ok(Some(head)) => head,
        };
        let body = &bytes[head.head_len..];
        let have = body.len() as u64;
        let v = &mut self.viewers[slot as usize];
        if have > head.content_length {
            self.restore(slot, acc);
            return self.fail(slot, now, "bad_response");
        }
        v.status = head.status;
        v.close_after = head.close;
        v.head_len = head.head_len as u32;
        v.content_length = head.content_length;
        let ok = head.status == 200;
        if ok && !matches!(v.want, Some(Want::Playlist)) && !check_prefix(v.kind, body) {
            self.stats.error("body_check");
            self.plan.progress.errors.fetch_add(1, Ordering::Relaxed);
        }
        let keep = ok && (matches!(v.want, Some(Want::Playlist)) || v.sample);
        if keep {
            if use_scratch {
                acc.clear();
                acc.extend_from_slice(self.scratch.get(head.head_len..).unwrap_or_default());
            } else {
                acc.drain(..head.head_len);
            }
            v.rx = Rx::Keep;
            self.restore(slot, acc);
            return self.continue_keep(slot, now);
        }
        acc.clear();
        self.restore(slot, acc);
        let remaining = head.content_length - have;
        if remaining == 0 {
            return self.complete(slot, now, false);
        }
        let v = &mut self.viewers[slot as usize];
        v.rx = Rx::Discard { remaining };
        v.ops += 1;
        self.ring
            .recv_discard(slot, remaining, token(OpKind::RecvDiscard, slot))?;
        Ok(())
    }

    fn restore(&mut self, slot: u32, acc: Vec<u8>) {
        if let Some(buf) = self.ring.received_mut(slot) {
            *buf = acc;
        }
    }

    /// Reading a body we keep: done when all of it is in the slot's buffer.
    fn continue_keep(&mut self, slot: u32, now: Instant) -> Result<(), BenchError> {
        let have = self.ring.received_mut(slot).map_or(0, |b| b.len() as u64);
        let v = &mut self.viewers[slot as usize];
        if have >= v.content_length {
            return self.complete(slot, now, true);
        }
        let missing = (v.content_length - have).min(4 << 20) as usize;
        v.ops += 1;
        self.ring
            .recv_into(slot, missing, token(OpKind::RecvInto, slot))?;
        Ok(())
    }

    /// A whole response is in: record it and tell the player.
    fn complete(&mut self, slot: u32, now: Instant, kept: bool) -> Result<(), BenchError> {
        let body = if kept {
            self.ring
                .received_mut(slot)
                .map(std::mem::take)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let v = &mut self.viewers[slot as usize];
        let want = v.want.take();
        let first_byte = v.first_byte.unwrap_or(now);
        let ttfb = first_byte.saturating_duration_since(v.sent_at);
        let download = now.saturating_duration_since(first_byte);
        let bytes = u64::from(v.head_len) + v.content_length;
        v.rx = Rx::Idle;
        let kind = match want {
            Some(Want::Playlist) | None => Kind::Playlist,
            Some(Want::Init { .. }) => Kind::Init,
            Some(Want::Segment { .. }) => Kind::Segment,
        };
        let steady = v.sent_at >= self.plan.steady_at;
        self.stats.record(kind, steady, ttfb, download);
        self.stats.bytes += bytes;
        if now >= self.plan.steady_at {
            self.stats.steady_requests += 1;
            self.stats.steady_bytes += bytes;
        }
        self.plan.progress.requests.fetch_add(1, Ordering::Relaxed);
        self.plan.progress.bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut error = None;
        if v.status != 200 {
            error = Some(format!("http_{}", v.status));
            if let Some(w) = want {
                v.player.request_failed(now, w);
            }
        } else {
            match want {
                Some(Want::Playlist) => match self.catalogue.learn(&body) {
                    Some(s) => {
                        let outcome =
                            v.player
                                .playlist_loaded(now, s.target_duration, s.listed, s.ended);
                        if outcome == PlaylistOutcome::FellBehind {
                            error = Some("fell_behind".to_owned());
                        }
                    }
                    None => {
                        error = Some("bad_playlist".to_owned());
                        v.player.request_failed(now, Want::Playlist);
                    }
                },
                Some(Want::Init { map }) => v.player.init_loaded(map),
                Some(Want::Segment { sequence }) => {
                    let duration = self
                        .catalogue
                        .info(sequence)
                        .map_or(Duration::from_secs(2), |i| i.duration);
                    v.player.segment_loaded(now, sequence, duration);
                    self.stats.segments += 1;
                    if v.sample {
                        self.stats.sampled_bodies += 1;
                        if !check_body(v.kind, &body) {
                            error = Some("body_check".to_owned());
                        }
                    }
                }
                None => {}
            }
        }
        let close_after = v.close_after;
        // Give the buffer back (keeps its capacity for the next playlist).
        let mut body = body;
        body.clear();
        self.restore(slot, body);
        if let Some(kind) = error {
            self.count_error(&kind);
        }
        if close_after {
            self.begin_close(slot, now)
        } else {
            self.drive(slot, now)
        }
    }

    fn fail(&mut self, slot: u32, now: Instant, kind: &str) -> Result<(), BenchError> {
        self.count_error(kind);
        self.begin_close(slot, now)
    }

    /// Cancels what is in flight, then closes the slot (at the last completion); a new
    /// connection follows after `reconnect_delay`.
    fn begin_close(&mut self, slot: u32, now: Instant) -> Result<(), BenchError> {
        let v = &mut self.viewers[slot as usize];
        if matches!(v.conn, Conn::Closing { .. } | Conn::Closed) {
            return Ok(());
        }
        if v.conn == Conn::Open {
            self.connected -= 1;
            self.plan.progress.connected.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(want) = v.want.take() {
            v.player.request_failed(now, want);
        }
        v.rx = Rx::Idle;
        v.send_pending = false;
        if v.ops > 0 {
            v.conn = Conn::Closing { close_sent: false };
            v.ops += 1;
            self.ring.cancel_slot(slot, token(OpKind::Cancel, slot))?;
        } else {
            v.conn = Conn::Closing { close_sent: true };
            v.ops += 1;
            self.ring.close_slot(slot, token(OpKind::Close, slot))?;
        }
        Ok(())
    }
}
