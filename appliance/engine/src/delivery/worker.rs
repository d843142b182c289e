//! The delivery loop of one worker: one thread, one ring, one listener.
//!
//! A turn: submit and wait (up to the next timer tick); read the clock once; reap every ready
//! completion and hand each to its connection if the token's generation still matches (a late
//! completion of a closed connection only frees what it held); at a tick, expire timeouts;
//! publish counters. Connection state lives in a table indexed by direct-descriptor slot,
//! allocated once; steady-state requests allocate nothing.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use uring::{Completion, OpKind, Ring, RingConfig, Token, UringError, Waker};

use super::http::{self, Method};
use super::{DeliveryConfig, DeliveryStats};
use crate::store::{SegmentStore, ViewerTicket};

/// What the spawning thread hands to the worker thread.
pub(super) struct Shared {
    pub(super) index: usize,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) waker: Waker,
    pub(super) stats: Arc<DeliveryStats>,
    pub(super) store: Arc<SegmentStore>,
}

/// Responses queued in one head buffer before it is sent (pipelined small answers).
const MAX_BATCHED_HEAD: usize = 16 * 1024;
const ACCEPT: Token = Token::new(OpKind::Accept, 0, 0);
const WAKE: Token = Token::new(OpKind::Wake, 0, 0);
const STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    Free,
    Open,
    /// Cancelling its ops, then closing its descriptor; the slot is not reusable yet.
    Closing,
}

struct Conn {
    generation: u32,
    state: ConnState,
    recv_armed: bool,
    cancel_sent: bool,
    close_sent: bool,
    close_after_send: bool,
    /// Received bytes not yet answered (a partial head, or requests pipelined behind a send).
    pending_input: Vec<u8>,
    last_active: Instant,
    /// When the unfinished request head in `pending_input` started arriving.
    head_since: Option<Instant>,
    send_since: Instant,
    /// When the response now being sent started (`None`: nothing with a body in progress).
    response_since: Option<Instant>,
    viewer: Option<ViewerTicket>,
}

impl Conn {
    fn new(now: Instant) -> Conn {
        Conn {
            generation: 0,
            state: ConnState::Free,
            recv_armed: false,
            cancel_sent: false,
            close_sent: false,
            close_after_send: false,
            pending_input: Vec::new(),
            last_active: now,
            head_since: None,
            send_since: now,
            response_since: None,
            viewer: None,
        }
    }
}

/// `Date` header text, formatted once per second.
struct DateCache {
    second: u64,
    text: [u8; 29],
}

impl DateCache {
    fn refresh(&mut self, now: SystemTime) {
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            self.text = http::format_http_date(second);
        }
    }
}

pub(super) struct Worker {
    // First: dropping the ring drains its in-flight ops before anything else goes.
    ring: Ring,
    listener: TcpListener,
    shared: Shared,
    config: DeliveryConfig,
    conns: Vec<Conn>,
    open: u64,
    accept_armed: bool,
    /// Re-arm accept at the next tick rather than now (after an unexpected accept error).
    accept_retry_at_tick: bool,
    stopping: Option<Instant>,
    date: DateCache,
    completions: Vec<Completion>,
    enfile_logged: u64,
}

fn tick_interval(config: &DeliveryConfig) -> Duration {
    let shortest = config
        .idle_timeout
        .min(config.header_timeout)
        .min(config.send_timeout);
    (shortest / 4).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

impl Worker {
    pub(super) fn new(
        shared: Shared,
        config: DeliveryConfig,
        listener: TcpListener,
    ) -> Result<Worker, UringError> {
        let limit = uring::fd_limit();
        let files = u64::from(config.max_connections_per_worker).min(limit) as u32;
        if files < config.max_connections_per_worker {
            tracing::warn!(
                worker = shared.index,
                requested = config.max_connections_per_worker,
                files,
                "connections per worker clamped to RLIMIT_NOFILE (the kernel's cap per ring)"
            );
        }
        let ring = Ring::new(&RingConfig {
            sq_entries: 4096,
            cq_entries: 16384,
            files,
            recv_buffers: config.recv_buffers,
            recv_buffer_size: config.recv_buffer_size,
            max_send_bytes: config.max_send_bytes,
        })?;
        let report = ring.report();
        if let Some(reason) = &report.fallback_reason {
            tracing::warn!(worker = shared.index, %reason, "io_uring setup fell back");
        }
        tracing::info!(
            worker = shared.index,
            addr = %listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
            slots = files,
            defer_taskrun = report.defer_taskrun,
            send_zc_supported = report.send_zc,
            "delivery worker ready"
        );
        let now = Instant::now();
        let mut worker = Worker {
            ring,
            listener,
            shared,
            conns: (0..files).map(|_| Conn::new(now)).collect(),
            config,
            open: 0,
            accept_armed: false,
            accept_retry_at_tick: false,
            stopping: None,
            date: DateCache {
                second: 0,
                text: http::format_http_date(0),
            },
            completions: Vec::with_capacity(1024),
            enfile_logged: 0,
        };
        worker.arm_accept()?;
        worker.ring.arm_wake(&worker.shared.waker, WAKE)?;
        worker.ring.submit()?;
        Ok(worker)
    }

    fn arm_accept(&mut self) -> Result<(), UringError> {
        self.ring
            .accept_multishot(self.listener.as_raw_fd(), ACCEPT)?;
        self.accept_armed = true;
        Ok(())
    }

    pub(super) fn run(mut self) {
        let tick = tick_interval(&self.config);
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            if let Err(e) = self.ring.wait(wait) {
                tracing::error!(worker = self.shared.index, error = %e, "delivery loop stops");
                break;
            }
            let now = Instant::now();
            self.date.refresh(SystemTime::now());
            let mut batch = std::mem::take(&mut self.completions);
            self.ring.reap(&mut batch);
            for completion in batch.drain(..) {
                self.handle(completion, now);
            }
            self.completions = batch;
            if self.stopping.is_none() && self.shared.stop.load(Ordering::Acquire) {
                self.begin_stop(now);
            }
            if now >= next_tick {
                self.expire(now);
                next_tick = now + tick;
            }
            self.publish_counters();
            if let Some(since) = self.stopping
                && ((self.open == 0 && !self.accept_armed) || now - since > STOP_GRACE)
            {
                break;
            }
        }
        tracing::info!(
            worker = self.shared.index,
            open = self.open,
            "delivery worker stopped"
        );
        // Dropping the ring cancels and drains whatever is still in flight.
    }

    fn begin_stop(&mut self, now: Instant) {
        self.stopping = Some(now);
        if self.accept_armed {
            let cancelled = self
                .ring
                .cancel_op(ACCEPT, Token::new(OpKind::Cancel, 0, 0));
            self.op_failed(cancelled);
        }
        for slot in 0..self.conns.len() as u32 {
            if self.conns[slot as usize].state == ConnState::Open {
                self.begin_close(slot);
            }
        }
    }

    fn handle(&mut self, completion: Completion, now: Instant) {
        let token = completion.token;
        match token.op() {
            Some(OpKind::Accept) => self.on_accept(&completion, now),
            Some(OpKind::Wake) if self.stopping.is_none() => {
                let armed = self.ring.arm_wake(&self.shared.waker, WAKE);
                self.op_failed(armed);
            }
            Some(OpKind::Recv) | Some(OpKind::Send) | Some(OpKind::Close) => {
                let slot = token.slot();
                let Some(conn) = self.conns.get(slot as usize) else {
                    return;
                };
                if conn.state == ConnState::Free || conn.generation != token.generation() {
                    // A late completion of an earlier connection in this slot: dropping it
                    // (and any buffer it carries) is all there is to do.
                    return;
                }
                match token.op() {
                    Some(OpKind::Recv) => self.on_recv(slot, completion, now),
                    Some(OpKind::Send) => self.on_send(slot, &completion, now),
                    _ => self.on_closed(slot),
                }
            }
            // Cancels report through the ops they cancel.
            _ => {}
        }
    }

    fn on_accept(&mut self, completion: &Completion, now: Instant) {
        if !completion.more {
            self.accept_armed = false;
        }
        match completion.error() {
            None => self.open_conn(completion.result as u32, now),
            Some(libc::ENFILE) => {
                // Table full: the kernel already closed the newcomer; existing connections
                // carry on.
                self.shared.stats.enfile.fetch_add(1, Ordering::Relaxed);
            }
            Some(libc::ECANCELED) if self.stopping.is_some() => {}
            Some(errno) => {
                self.shared
                    .stats
                    .accept_errors
                    .fetch_add(1, Ordering::Relaxed);
                if !completion.more {
                    tracing::warn!(worker = self.shared.index, errno, "accept failed");
                    self.accept_retry_at_tick = true;
                }
            }
        }
        if !self.accept_armed && !self.accept_retry_at_tick && self.stopping.is_none() {
            let armed = self.arm_accept();
            if armed.is_err() {
                self.accept_retry_at_tick = true;
            }
            self.op_failed(armed);
        }
    }

    fn open_conn(&mut self, slot: u32, now: Instant) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            // The kernel allocates within the table we registered; anything else is a bug.
            tracing::error!(
                worker = self.shared.index,
                slot,
                "accept outside the file table"
            );
            return;
        };
        if conn.state != ConnState::Free {
            if conn.close_sent {
                // The kernel reused the slot, so our close has happened; its completion will
                // arrive with a stale generation.
                self.free_conn(slot);
            } else {
                tracing::error!(worker = self.shared.index, slot, "accept into a busy slot");
                return;
            }
        }
        let index = self.shared.index;
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        conn.state = ConnState::Open;
        conn.last_active = now;
        conn.response_since = None;
        conn.recv_armed = true;
        let token = Token::new(OpKind::Recv, slot, conn.generation);
        self.open += 1;
        self.shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.ring.recv_multishot(slot, token) {
            tracing::warn!(worker = index, slot, error = %e, "arming recv failed");
            self.conns[slot as usize].recv_armed = false;
            self.begin_close(slot);
        }
    }

    fn on_recv(&mut self, slot: u32, completion: Completion, now: Instant) {
        let max_pending = self.config.max_request_head.saturating_mul(4);
        let in_flight = self.ring.send_in_flight(slot);
        let conn = &mut self.conns[slot as usize];
        if !completion.more {
            conn.recv_armed = false;
        }
        if conn.state == ConnState::Closing {
            self.finish_close_if_idle(slot);
            return;
        }
        match completion.error() {
            None if completion.result == 0 => {
                // The peer closed its side; nothing more will be asked.
                self.begin_close(slot);
                return;
            }
            None => {
                let Some(data) = completion.buffer else {
                    self.begin_close(slot);
                    return;
                };
                conn.last_active = now;
                if in_flight || conn.close_after_send || !conn.pending_input.is_empty() {
                    if conn.pending_input.len() + data.len() > max_pending {
                        // More unanswered input than any honest pipelining client sends.
                        self.begin_close(slot);
                        return;
                    }
                    if conn.head_since.is_none() {
                        conn.head_since = Some(now);
                    }
                    // alloc: grows once per connection to its largest pipelined burst.
                    conn.pending_input.extend_from_slice(&data);
                    if !in_flight && !conn.close_after_send {
                        self.process_pending(slot, now);
                    }
                } else {
                    // Fast path: answer straight from the provided buffer.
                    let used = self.process(slot, &data, now);
                    if let Some(rest) = data.get(used..)
                        && !rest.is_empty()
                        && self.conns[slot as usize].state == ConnState::Open
                    {
                        // alloc: first partial or pipelined remainder of this connection.
                        self.conns[slot as usize]
                            .pending_input
                            .extend_from_slice(rest);
                    }
                }
            }
            Some(libc::ENOBUFS) => {
                self.shared.stats.enobufs.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {
                self.begin_close(slot);
                return;
            }
        }
        let conn = &mut self.conns[slot as usize];
        if !conn.recv_armed && conn.state == ConnState::Open {
            conn.recv_armed = true;
            let token = Token::new(OpKind::Recv, slot, conn.generation);
            if self.ring.recv_multishot(slot, token).is_err() {
                self.conns[slot as usize].recv_armed = false;
                self.begin_close(slot);
            }
        }
    }

    /// Answers the complete requests at the start of `input` (several when pipelined, while
    /// their answers fit in the head buffer and until one carries a body), then starts the
    /// send. Returns the bytes used.
    fn process(&mut self, slot: u32, input: &[u8], now: Instant) -> usize {
        let mut used = 0;
        loop {
            let conn = &mut self.conns[slot as usize];
            if conn.close_after_send {
                break;
            }
            let Some(head) = self.ring.send_head(slot) else {
                break;
            };
            if head.len() >= MAX_BATCHED_HEAD {
                break;
            }
            let rest = input.get(used..).unwrap_or_default();
            if rest.is_empty() {
                conn.head_since = None;
                break;
            }
            match http::parse_request(rest, self.config.max_request_head) {
                Ok(Some(request)) => {
                    self.shared.stats.requests.fetch_add(1, Ordering::Relaxed);
                    conn.head_since = None;
                    let object = match request.method {
                        Method::Get | Method::Head => self
                            .shared
                            .store
                            .lookup_viewed(&request.path, &mut conn.viewer),
                        _ => None,
                    };
                    // alloc: the head buffer grows on a connection's first responses only.
                    let answer = http::answer(&request, object.as_ref(), &self.date.text, head);
                    used += request.head_len;
                    if answer.close {
                        conn.close_after_send = true;
                    }
                    if let Some(body) = answer.body {
                        let _ = self.ring.set_send_body(slot, body);
                        conn.response_since = Some(now);
                        break;
                    }
                }
                Ok(None) => {
                    if conn.head_since.is_none() {
                        conn.head_since = Some(now);
                    }
                    break;
                }
                Err(rejection) => {
                    self.shared
                        .stats
                        .bad_requests
                        .fetch_add(1, Ordering::Relaxed);
                    http::answer_rejection(rejection, &self.date.text, head);
                    conn.close_after_send = true;
                    used = input.len();
                    break;
                }
            }
        }
        self.flush(slot, now);
        used
    }

    fn process_pending(&mut self, slot: u32, now: Instant) {
        let mut input = std::mem::take(&mut self.conns[slot as usize].pending_input);
        let used = self.process(slot, &input, now);
        input.drain(..used.min(input.len()));
        let conn = &mut self.conns[slot as usize];
        if conn.state == ConnState::Open {
            conn.pending_input = input;
        }
    }

    /// Starts sending what the slot has queued, or closes if it is done and asked to.
    fn flush(&mut self, slot: u32, now: Instant) {
        if self.ring.send_in_flight(slot) {
            return;
        }
        let pending = self.ring.send_pending(slot);
        if pending > 0 {
            let zero_copy = self
                .config
                .send_zero_copy_min
                .is_some_and(|min| pending >= min);
            let conn = &mut self.conns[slot as usize];
            let token = Token::new(OpKind::Send, slot, conn.generation);
            conn.send_since = now;
            if let Err(e) = self.ring.send(slot, token, zero_copy) {
                tracing::warn!(worker = self.shared.index, slot, error = %e, "send failed");
                self.begin_close(slot);
            }
        } else if self.conns[slot as usize].close_after_send {
            self.begin_close(slot);
        }
    }

    fn on_send(&mut self, slot: u32, completion: &Completion, now: Instant) {
        let conn = &mut self.conns[slot as usize];
        if conn.state == ConnState::Closing {
            self.finish_close_if_idle(slot);
            return;
        }
        if completion.result < 0 {
            self.begin_close(slot);
            return;
        }
        self.shared
            .stats
            .bytes_sent
            .fetch_add(completion.result as u64, Ordering::Relaxed);
        conn.last_active = now;
        if self.ring.send_pending(slot) == 0 {
            conn.response_since = None;
        }
        if self.ring.send_pending(slot) > 0 || conn.close_after_send {
            // The rest of a long body, or the close after the last answer.
            self.flush(slot, now);
        } else if !conn.pending_input.is_empty() {
            conn.head_since = None;
            self.process_pending(slot, now);
        }
    }

    /// Cancels the connection's ops; its descriptor closes once their completions are in.
    fn begin_close(&mut self, slot: u32) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if conn.state != ConnState::Open {
            return;
        }
        conn.state = ConnState::Closing;
        conn.viewer = None;
        conn.pending_input = Vec::new();
        self.ring.discard_send(slot);
        if conn.recv_armed || self.ring.send_in_flight(slot) {
            conn.cancel_sent = true;
            let token = Token::new(OpKind::Cancel, slot, conn.generation);
            let cancelled = self.ring.cancel_slot(slot, token);
            self.op_failed(cancelled);
        } else {
            self.finish_close_if_idle(slot);
        }
    }

    fn finish_close_if_idle(&mut self, slot: u32) {
        let in_flight = self.ring.send_in_flight(slot);
        let conn = &mut self.conns[slot as usize];
        if conn.state != ConnState::Closing || conn.close_sent || conn.recv_armed || in_flight {
            return;
        }
        conn.close_sent = true;
        let token = Token::new(OpKind::Close, slot, conn.generation);
        if let Err(e) = self.ring.close_slot(slot, token) {
            tracing::error!(worker = self.shared.index, slot, error = %e, "close failed");
        }
    }

    fn on_closed(&mut self, slot: u32) {
        if self.conns[slot as usize].state == ConnState::Closing {
            self.free_conn(slot);
        }
    }

    fn free_conn(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        conn.state = ConnState::Free;
        conn.generation = Token::next_generation(conn.generation);
        conn.recv_armed = false;
        conn.cancel_sent = false;
        conn.close_sent = false;
        conn.close_after_send = false;
        conn.head_since = None;
        conn.viewer = None;
        conn.pending_input = Vec::new();
        self.ring.discard_send(slot);
        self.open = self.open.saturating_sub(1);
    }

    /// Closes connections past a timeout. A full scan per tick: a few microseconds for the
    /// table sizes a ring can have (≤ RLIMIT_NOFILE).
    fn expire(&mut self, now: Instant) {
        if self.accept_retry_at_tick && self.stopping.is_none() {
            self.accept_retry_at_tick = false;
            if !self.accept_armed {
                let armed = self.arm_accept();
                self.op_failed(armed);
            }
        }
        let enfile = self.shared.stats.enfile.load(Ordering::Relaxed);
        if enfile > self.enfile_logged {
            tracing::warn!(
                worker = self.shared.index,
                refused = enfile - self.enfile_logged,
                slots = self.conns.len(),
                "connection table full: newcomers refused"
            );
            self.enfile_logged = enfile;
        }
        for slot in 0..self.conns.len() as u32 {
            let in_flight = self.ring.send_in_flight(slot);
            let pending = self.ring.send_pending(slot);
            let conn = &mut self.conns[slot as usize];
            match conn.state {
                ConnState::Free => {}
                ConnState::Closing => {
                    if in_flight && now - conn.send_since > self.config.send_timeout * 2 {
                        // A send that ignored its cancel: ask again.
                        conn.send_since = now;
                        let token = Token::new(OpKind::Cancel, slot, conn.generation);
                        let cancelled = self.ring.cancel_slot(slot, token);
                        self.op_failed(cancelled);
                    }
                }
                ConnState::Open if in_flight => {
                    let lagging = match (conn.response_since, self.config.lagging_after) {
                        (Some(since), Some(limit)) => now - since > limit,
                        _ => false,
                    };
                    if now - conn.send_since > self.config.send_timeout {
                        self.shared
                            .stats
                            .send_timeouts
                            .fetch_add(1, Ordering::Relaxed);
                        self.begin_close(slot);
                    } else if lagging {
                        self.shared
                            .stats
                            .lagging_drops
                            .fetch_add(1, Ordering::Relaxed);
                        self.begin_close(slot);
                    }
                }
                ConnState::Open => {
                    if let Some(since) = conn.head_since {
                        if now - since > self.config.header_timeout && pending == 0 {
                            self.shared
                                .stats
                                .header_timeouts
                                .fetch_add(1, Ordering::Relaxed);
                            conn.close_after_send = true;
                            conn.pending_input.clear();
                            conn.head_since = None;
                            if let Some(head) = self.ring.send_head(slot) {
                                http::answer_timeout(&self.date.text, head);
                            }
                            self.flush(slot, now);
                        }
                    } else if pending == 0
                        && conn.pending_input.is_empty()
                        && now - conn.last_active > self.config.idle_timeout
                    {
                        self.shared
                            .stats
                            .idle_timeouts
                            .fetch_add(1, Ordering::Relaxed);
                        self.begin_close(slot);
                    }
                }
            }
        }
    }

    fn op_failed(&self, result: Result<(), UringError>) {
        if let Err(e) = result {
            tracing::warn!(worker = self.shared.index, error = %e, "ring op not queued");
        }
    }

    fn publish_counters(&self) {
        let ring = self.ring.counters();
        let stats = &self.shared.stats;
        let set = |counter: &AtomicU64, value: u64| counter.store(value, Ordering::Relaxed);
        set(&stats.connections, self.open);
        set(&stats.sends, ring.sends);
        set(&stats.short_sends, ring.short_sends);
        set(&stats.zc_sends, ring.zc_sends);
        set(&stats.zc_copied, ring.zc_copied);
    }
}
