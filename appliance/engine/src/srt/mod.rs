//! SRT in and out (docs/srt.md): a listener where encoders publish (`publish:live/NAME`,
//! `#!::r=live/NAME,m=publish`) and relays read (`read:live/NAME`, `m=request`), per-stream
//! listeners for encoders that send no stream id, and `[[source]]` pulls that call a remote
//! listener. The transport is Haivision's libsrt through `drivers/srt` (why: docs/srt.md).
//!
//! Threads: everything runs on one thread, `cc-srt`, pinned to the ingest core. libsrt brings
//! its own socket threads; they are created by this thread (libsrt's start-up and each
//! listener's bind happen here), so they inherit its CPU affinity and stay on the ingest core.
//! No async runtime: libsrt's epoll is the driver. A loop turn waits on the epoll set (at most
//! [`TICK`], less when a reader has a message due), reads every ready socket until it would
//! block, sends what readers have due, and does the periodic work (statistics, refused
//! handshakes, silent publishers, caller retries).
//!
//! Access: libsrt calls [`Access`] (an `srt_listen_callback` hook, on libsrt's receive
//! thread) for each caller once its stream id is known and before the key exchange: it parses
//! the stream id ([`ingest::srt::parse_stream_id`]), refuses unknown or malformed requests
//! with a status the caller sees (`SRT_REJC_PREDEFINED` + 400/404/409), and sets the stream's
//! passphrase and latency on the new socket. libsrt then refuses a caller whose passphrase
//! differs (`SRT_REJ_BADSECRET`) or that has none (`SRT_REJ_UNSECURE`) by itself, without
//! telling the listener's owner; to log those with the caller's address, the hook remembers
//! each request and the loop reports the ones that never reach `accept`, with the reason
//! libsrt gave in its log.

mod access;
mod config;
mod publish;
mod read;

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ingest::srt::{SrtMode, StreamRequest, parse_stream_id};
use libsrt::{Epoll, Events, KeyLength, Socket, SocketId};

pub use config::{DEFAULT_LATENCY, SrtConfig, SrtSourceConfig, SrtStreamConfig};
pub use publish::TsPublisher;
pub use read::{ContinuityRewriter, StoreReader, TsPlaylist};

use crate::hub::HubHandle;
use crate::plan::{CorePlan, Role};
use crate::sources::{SourceBoard, SourceHandle, redact_url};
use crate::store::SegmentStore;
use access::{Access, AccessShared, Handshakes, install_log_sink, lock};
use read::ReadPoll;

/// Longest wait of a loop turn.
pub const TICK: Duration = Duration::from_millis(50);
/// How often each connection's statistics reach the source board.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How often each connection's statistics are logged (and once more when it ends).
pub const STATS_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// A handshake the hook let through that has not reached `accept` after this long, and whose
/// socket is gone, was refused by libsrt.
const HANDSHAKE_GRACE: Duration = Duration::from_millis(200);
/// Largest SRT message we read.
const RECEIVE_BUFFER: usize = libsrt::MAX_PAYLOAD;

/// The SRT thread, started: its listener addresses.
#[derive(Debug)]
pub struct SrtRunning {
    pub thread: JoinHandle<()>,
    /// The main listener's address (its port resolved when 0 was asked for).
    pub listen: SocketAddr,
}

/// Starts `cc-srt` on the ingest core, binds the listeners there and returns once they are
/// bound (or with the bind error).
pub fn start(
    plan: &CorePlan,
    config: SrtConfig,
    sources: Vec<(SrtSourceConfig, SourceHandle)>,
    hub: HubHandle,
    store: Arc<SegmentStore>,
    board: SourceBoard,
) -> Result<SrtRunning, (SocketAddr, std::io::Error)> {
    let (bound_tx, bound_rx) = mpsc::channel();
    let listen = config.listen;
    let thread = plan
        .spawn(Role::Ingest, "cc-srt", move || {
            let mut worker = match SrtWorker::new(config, sources, hub, store, board) {
                Ok(worker) => worker,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            let _ = bound_tx.send(Ok(worker.listen_addr()));
            worker.run();
        })
        .map_err(|e| (listen, e))?;
    match bound_rx.recv() {
        Ok(Ok(addr)) => Ok(SrtRunning {
            thread,
            listen: addr,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err((
            listen,
            std::io::Error::other("the SRT thread ended during start-up"),
        )),
    }
}

/// What a connection does.
#[derive(Debug)]
enum ConnectionRole {
    Publish(Box<TsPublisher>),
    Read(Box<StoreReader>),
}

/// One SRT connection (accepted, or a caller pull once connected).
#[derive(Debug)]
struct Connection {
    socket: Socket,
    peer: SocketAddr,
    role: ConnectionRole,
    /// Publishers' entry on the source board.
    board: Option<SourceHandle>,
    /// Index into the caller pulls, for connections they made.
    caller: Option<usize>,
    started: Instant,
    next_stats: Instant,
    next_stats_log: Instant,
    totals: Totals,
    last: StatsSnapshot,
    /// A reader's message is due at this time.
    due: Option<Instant>,
}

/// Interval counters summed by us (libsrt keeps totals for some only).
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    retransmitted: u64,
}

/// A configured pull.
#[derive(Debug)]
struct CallerPull {
    config: SrtSourceConfig,
    board: SourceHandle,
    state: CallerState,
    backoff: Duration,
}

#[derive(Debug)]
enum CallerState {
    Waiting { until: Instant },
    Connecting { socket: Socket, addr: SocketAddr },
    Connected,
}

struct SrtWorker {
    epoll: Epoll,
    listeners: Vec<Socket>,
    listen_addr: SocketAddr,
    connections: HashMap<SocketId, Connection>,
    callers: Vec<CallerPull>,
    handshakes: Arc<Mutex<Handshakes>>,
    config: SrtConfig,
    hub: HubHandle,
    store: Arc<SegmentStore>,
    board: SourceBoard,
    random: u64,
    ready: Vec<(SocketId, Events)>,
    buf: Vec<u8>,
}

impl SrtWorker {
    fn new(
        config: SrtConfig,
        sources: Vec<(SrtSourceConfig, SourceHandle)>,
        hub: HubHandle,
        store: Arc<SegmentStore>,
        board: SourceBoard,
    ) -> Result<SrtWorker, (SocketAddr, std::io::Error)> {
        let io = |addr: SocketAddr| move |e: libsrt::SrtError| (addr, std::io::Error::other(e));
        libsrt::startup().map_err(io(config.listen))?;
        let handshakes = Arc::new(Mutex::new(Handshakes::default()));
        install_log_sink(&handshakes);
        let epoll = Epoll::new().map_err(io(config.listen))?;
        let shared = Arc::new(AccessShared {
            config: config.clone(),
            hub: hub.clone(),
            store: store.clone(),
            handshakes: handshakes.clone(),
        });
        let mut listeners = Vec::new();
        let mut addresses = vec![(config.listen, None)];
        for stream in &config.streams {
            if let Some(port) = stream.port {
                let addr = SocketAddr::new(config.listen.ip(), port);
                addresses.push((addr, Some(stream.name.clone())));
            }
        }
        let mut listen_addr = config.listen;
        for (index, (addr, port_stream)) in addresses.into_iter().enumerate() {
            let mut socket = Socket::new().map_err(io(addr))?;
            socket.set_nonblocking().map_err(io(addr))?;
            socket.bind(addr).map_err(io(addr))?;
            let bound = socket.local_addr().map_err(io(addr))?;
            socket
                .set_listen_hook(Arc::new(Access {
                    shared: shared.clone(),
                    listener: bound,
                    port_stream: port_stream.clone(),
                }))
                .map_err(io(addr))?;
            socket.listen(64).map_err(io(addr))?;
            epoll.add(socket.id(), Events::READ).map_err(io(addr))?;
            if index == 0 {
                listen_addr = bound;
            }
            match &port_stream {
                Some(stream) => {
                    tracing::info!(addr = %bound, %stream, "SRT listener for callers without a stream id")
                }
                None => tracing::info!(addr = %bound, "SRT listener"),
            }
            listeners.push(socket);
        }
        let now = Instant::now();
        let callers = sources
            .into_iter()
            .map(|(config, board)| CallerPull {
                config,
                board,
                state: CallerState::Waiting { until: now },
                backoff: crate::rtsp::INITIAL_BACKOFF,
            })
            .collect();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64)
            | 1;
        Ok(SrtWorker {
            epoll,
            listeners,
            listen_addr,
            connections: HashMap::new(),
            callers,
            handshakes,
            config,
            hub,
            store,
            board,
            random: seed,
            ready: Vec::with_capacity(64),
            // alloc: once for the thread.
            buf: vec![0; RECEIVE_BUFFER],
        })
    }

    fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    fn run(&mut self) {
        let mut next_housekeeping = Instant::now();
        loop {
            let now = Instant::now();
            let wait = self
                .next_due()
                .map_or(TICK, |due| due.saturating_duration_since(now).min(TICK));
            self.ready.clear();
            let mut ready = std::mem::take(&mut self.ready);
            if let Err(e) = self.epoll.wait(wait, &mut ready) {
                tracing::warn!(error = %e, "SRT epoll wait failed");
                std::thread::sleep(TICK);
            }
            let now = Instant::now();
            for &(id, events) in &ready {
                self.handle_ready(now, id, events);
            }
            self.ready = ready;
            self.pump_readers(now);
            if now >= next_housekeeping {
                self.housekeeping(now);
                next_housekeeping = now + Duration::from_millis(100);
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.connections.values().filter_map(|c| c.due).min()
    }

    fn handle_ready(&mut self, now: Instant, id: SocketId, events: Events) {
        if self.listeners.iter().any(|l| l.id() == id) {
            self.accept_all(now, id);
            return;
        }
        if let Some(index) = self.callers.iter().position(
            |c| matches!(&c.state, CallerState::Connecting { socket, .. } if socket.id() == id),
        ) {
            self.caller_connected(now, index, events);
            return;
        }
        if events.readable || events.error {
            self.receive(now, id, events.error);
        }
    }

    fn accept_all(&mut self, now: Instant, listener_id: SocketId) {
        let Some(listener) = self.listeners.iter().find(|l| l.id() == listener_id) else {
            return;
        };
        let mut accepted = Vec::new();
        loop {
            match listener.accept() {
                Ok(Some(connection)) => accepted.push(connection),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "SRT accept failed");
                    break;
                }
            }
        }
        for (socket, peer) in accepted {
            let pending = lock(&self.handshakes).pending.remove(&socket.id());
            let request = match pending {
                Some(p) => p.request,
                None => match socket.stream_id().ok().map(|s| parse_stream_id(&s)) {
                    Some(Ok(Some(request))) => request,
                    // The hook saw every caller; this is only a safety net.
                    _ => {
                        tracing::warn!(%peer, "SRT connection without a known request: closed");
                        continue;
                    }
                },
            };
            self.open_connection(now, socket, peer, request, None);
        }
    }

    /// Sets up an accepted (or a caller's) connection.
    fn open_connection(
        &mut self,
        now: Instant,
        socket: Socket,
        peer: SocketAddr,
        request: StreamRequest,
        caller: Option<usize>,
    ) {
        if let Err(e) = socket.set_nonblocking() {
            tracing::warn!(%peer, error = %e, "SRT connection dropped");
            return;
        }
        let mode = match request.mode {
            SrtMode::Publish => "publish",
            SrtMode::Read => "read",
        };
        if let Err(e) = self.epoll.add(socket.id(), Events::READ) {
            tracing::warn!(%peer, error = %e, "SRT connection dropped");
            return;
        }
        let (role, board) = match request.mode {
            SrtMode::Publish => {
                // A pull keeps its configured entry; a caller gets one for its connection.
                let board = match caller.and_then(|i| self.callers.get(i)) {
                    Some(pull) => pull.board.clone(),
                    None => self.board.register(
                        "srt",
                        &format!("srt {mode} {} {peer}", request.name),
                        &request.name,
                        &format!(
                            "srt://{peer}?streamid={mode}:{}/{}",
                            self.config.app, request.name
                        ),
                    ),
                };
                let origin = match caller {
                    Some(_) => format!("srt pull {peer}"),
                    None => format!("srt {peer}"),
                };
                let publisher =
                    TsPublisher::new(&request.name, origin, self.hub.clone(), board.clone(), now);
                (ConnectionRole::Publish(Box::new(publisher)), Some(board))
            }
            // Readers feed no stream, so they stay off the source board (whose entries are
            // a stream's sources); their statistics are in the log.
            SrtMode::Read => {
                let mut reader = StoreReader::new(&request.name);
                reader.refresh(&self.store);
                (ConnectionRole::Read(Box::new(reader)), None)
            }
        };
        let encrypted = self
            .config
            .stream(&request.name)
            .is_some_and(|s| s.passphrase.is_some())
            || caller
                .and_then(|i| self.callers.get(i))
                .is_some_and(|c| c.config.passphrase.is_some());
        tracing::info!(%peer, stream = %request.name, mode, encrypted, user = ?request.user, "SRT connection open");
        let id = socket.id();
        self.connections.insert(
            id,
            Connection {
                socket,
                peer,
                role,
                board,
                caller,
                started: now,
                next_stats: now + STATS_INTERVAL,
                next_stats_log: now + STATS_LOG_INTERVAL,
                totals: Totals::default(),
                last: StatsSnapshot::default(),
                due: Some(now),
            },
        );
    }

    fn receive(&mut self, now: Instant, id: SocketId, error: bool) {
        let Some(connection) = self.connections.get_mut(&id) else {
            self.epoll.remove(id);
            return;
        };
        let mut end: Option<String> = None;
        // Bounded: a fast publisher cannot hold the loop (libsrt keeps the rest).
        for _ in 0..256 {
            match connection.socket.recv(&mut self.buf) {
                Ok(Some(len)) => {
                    let ConnectionRole::Publish(publisher) = &mut connection.role else {
                        // A reader's peer sent data: ignored.
                        continue;
                    };
                    let data = self.buf.get(..len).unwrap_or(&[]);
                    if let Err(e) = publisher.handle_message(now, data) {
                        end = Some(format!("cannot publish: {e}"));
                        break;
                    }
                }
                Ok(None) => break,
                // SRT_ECONNLOST: the peer closed, or went silent past libsrt's idle timeout.
                Err(e) if e.code() == Some(2001) => {
                    end = Some("the peer closed the connection (or went silent)".to_owned());
                    break;
                }
                Err(e) => {
                    end = Some(format!("connection ended: {e}"));
                    break;
                }
            }
        }
        if end.is_none() && error {
            end = Some(format!("connection {:?}", connection.socket.state()));
        }
        if let Some(reason) = end {
            self.close(now, id, &reason);
        }
    }

    fn pump_readers(&mut self, now: Instant) {
        let mut ended = Vec::new();
        for (&id, connection) in &mut self.connections {
            let ConnectionRole::Read(reader) = &mut connection.role else {
                connection.due = None;
                continue;
            };
            if connection.due.is_some_and(|due| due > now) {
                continue;
            }
            reader.refresh(&self.store);
            connection.due = None;
            // Bounded per turn, like receiving.
            for _ in 0..64 {
                match reader.poll(now, &self.store) {
                    ReadPoll::Message(message) => match connection.socket.send(message) {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            reader.unsend();
                            connection.due = Some(now + Duration::from_millis(5));
                            break;
                        }
                        Err(e) => {
                            ended.push((id, format!("send failed: {e}")));
                            break;
                        }
                    },
                    ReadPoll::WaitUntil(at) => {
                        connection.due = Some(at);
                        break;
                    }
                    ReadPoll::Idle => {
                        connection.due = Some(now + TICK);
                        break;
                    }
                    ReadPoll::Finished => {
                        ended.push((id, "the stream ended".to_owned()));
                        break;
                    }
                }
            }
            if connection.due.is_none() {
                connection.due = Some(now);
            }
        }
        for (id, reason) in ended {
            self.close(now, id, &reason);
        }
    }

    fn close(&mut self, now: Instant, id: SocketId, reason: &str) {
        self.epoll.remove(id);
        let Some(mut connection) = self.connections.remove(&id) else {
            return;
        };
        log_stats(&mut connection, now, true);
        let stream = match &mut connection.role {
            ConnectionRole::Publish(publisher) => {
                publisher.finish(now, reason);
                publisher.stream().to_owned()
            }
            ConnectionRole::Read(reader) => reader.stream().to_owned(),
        };
        tracing::info!(peer = %connection.peer, %stream, seconds = now.duration_since(connection.started).as_secs(), "SRT connection closed: {reason}");
        match connection.caller {
            Some(index) => {
                let delay = self.retry_delay(index);
                if let Some(pull) = self.callers.get_mut(index) {
                    pull.board.set_retrying(reason, delay);
                    pull.board.count_reconnect();
                    pull.state = CallerState::Waiting { until: now + delay };
                }
            }
            None => {
                if let Some(board) = connection.board.take() {
                    board.unregister();
                }
            }
        }
    }

    /// The jittered delay before a pull's next attempt; doubles the pull's backoff.
    fn retry_delay(&mut self, index: usize) -> Duration {
        // xorshift64: enough to spread the retries of many pulls.
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        let random = (self.random >> 11) as f64 / (1u64 << 53) as f64;
        let Some(pull) = self.callers.get_mut(index) else {
            return crate::rtsp::INITIAL_BACKOFF;
        };
        let delay = crate::rtsp::jittered(pull.backoff, random);
        pull.backoff = crate::rtsp::next_backoff(pull.backoff);
        delay
    }

    fn housekeeping(&mut self, now: Instant) {
        // Statistics; silent publishers.
        let mut silent = Vec::new();
        for (&id, connection) in &mut self.connections {
            if now >= connection.next_stats {
                let log = now >= connection.next_stats_log;
                log_stats(connection, now, log);
                connection.next_stats = now + STATS_INTERVAL;
                if log {
                    connection.next_stats_log = now + STATS_LOG_INTERVAL;
                }
            }
            if let ConnectionRole::Publish(publisher) = &connection.role
                && now.duration_since(publisher.last_input) > self.config.timeout
            {
                silent.push(id);
            }
        }
        for id in silent {
            let reason = format!("no media for {} s", self.config.timeout.as_secs_f32());
            self.close(now, id, &reason);
        }
        self.report_refusals(now);
        self.drive_callers(now);
    }

    /// Logs handshakes the hook let through that libsrt then refused. libsrt is asked about
    /// socket states without our lock held: its threads take that lock (hook, log sink) and
    /// may hold their own while doing so.
    fn report_refusals(&mut self, now: Instant) {
        let waiting: Vec<(SocketId, Duration)> = lock(&self.handshakes)
            .pending
            .iter()
            .map(|(&id, p)| (id, now.saturating_duration_since(p.at)))
            .filter(|&(_, age)| age >= HANDSHAKE_GRACE)
            .collect();
        let done: Vec<SocketId> = waiting
            .into_iter()
            .filter(|&(id, age)| {
                let gone = matches!(
                    libsrt::socket_state(id),
                    libsrt::SocketState::Closed
                        | libsrt::SocketState::NonExistent
                        | libsrt::SocketState::Broken
                );
                gone || age >= Duration::from_secs(30)
            })
            .map(|(id, _)| id)
            .collect();
        let mut handshakes = lock(&self.handshakes);
        for id in done {
            let Some(pending) = handshakes.pending.remove(&id) else {
                continue;
            };
            let reason = handshakes
                .refused
                .remove(&id)
                .unwrap_or_else(|| "handshake not completed".to_owned());
            let peer = pending
                .peer
                .map_or_else(|| "?".to_owned(), |p| p.to_string());
            tracing::warn!(
                %peer,
                listener = %pending.listener,
                stream = %pending.request.name,
                mode = ?pending.request.mode,
                "SRT caller refused: {reason}"
            );
        }
        // Refusals of sockets the hook never saw (none expected): do not grow forever.
        if handshakes.refused.len() > 1024 {
            handshakes.refused.clear();
        }
    }

    fn drive_callers(&mut self, now: Instant) {
        for index in 0..self.callers.len() {
            let Some(pull) = self.callers.get_mut(index) else {
                continue;
            };
            match &pull.state {
                CallerState::Waiting { until } if now >= *until => {}
                CallerState::Connecting { socket, addr } => {
                    // libsrt's connect timeout breaks the socket; epoll then reports it.
                    if matches!(
                        socket.state(),
                        libsrt::SocketState::Broken | libsrt::SocketState::Closed
                    ) {
                        let reason =
                            format!("cannot connect to {addr}: {}", socket.reject_reason());
                        self.caller_failed(now, index, &reason);
                    }
                    continue;
                }
                _ => continue,
            }
            match Self::dial(&pull.config) {
                Ok((socket, addr)) => {
                    if let Err(e) = self.epoll.add(socket.id(), Events::WRITE) {
                        self.caller_failed(now, index, &e.to_string());
                        continue;
                    }
                    tracing::info!(source = %pull.config.name, url = %redact_url(&pull.config.url), %addr, "SRT pull connecting");
                    pull.board.set_connecting();
                    pull.state = CallerState::Connecting { socket, addr };
                }
                Err(reason) => self.caller_failed(now, index, &reason),
            }
        }
    }

    /// A socket set up for a pull and its connect started.
    fn dial(config: &SrtSourceConfig) -> Result<(Socket, SocketAddr), String> {
        let addr = (config.host.as_str(), config.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", config.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", config.host))?;
        let setup = || -> Result<Socket, libsrt::SrtError> {
            let socket = Socket::new()?;
            socket.set_nonblocking()?;
            socket.set_latency(config.latency)?;
            socket.set_connect_timeout(Duration::from_secs(3))?;
            if let Some(id) = &config.stream_id {
                socket.set_stream_id(id)?;
            }
            if let Some(passphrase) = &config.passphrase {
                socket.set_passphrase(passphrase)?;
            }
            if let Some(key) = config
                .key_length
                .and_then(|k| KeyLength::from_bytes(u32::from(k)))
            {
                socket.set_key_length(key)?;
            }
            socket.connect(addr)?;
            Ok(socket)
        };
        setup().map(|s| (s, addr)).map_err(|e| e.to_string())
    }

    fn caller_connected(&mut self, now: Instant, index: usize, events: Events) {
        let Some(pull) = self.callers.get_mut(index) else {
            return;
        };
        let CallerState::Connecting { socket, addr } =
            std::mem::replace(&mut pull.state, CallerState::Waiting { until: now })
        else {
            return;
        };
        self.epoll.remove(socket.id());
        if events.error || socket.state() != libsrt::SocketState::Connected {
            let reason = format!("cannot connect to {addr}: {}", socket.reject_reason());
            drop(socket);
            self.caller_failed(now, index, &reason);
            return;
        }
        pull.backoff = crate::rtsp::INITIAL_BACKOFF;
        let name = pull.config.name.clone();
        let id = socket.id();
        pull.state = CallerState::Connected;
        let request = StreamRequest {
            mode: SrtMode::Publish,
            app: None,
            name,
            user: None,
        };
        self.open_connection(now, socket, addr, request, Some(index));
        if !self.connections.contains_key(&id) {
            self.caller_failed(now, index, "connection set-up failed");
        }
    }

    fn caller_failed(&mut self, now: Instant, index: usize, reason: &str) {
        let delay = self.retry_delay(index);
        let Some(pull) = self.callers.get_mut(index) else {
            return;
        };
        if let CallerState::Connecting { socket, .. } = &pull.state {
            self.epoll.remove(socket.id());
        }
        tracing::warn!(source = %pull.config.name, url = %redact_url(&pull.config.url), retry_in_ms = delay.as_millis() as u64, "SRT pull failed: {reason}");
        pull.board.set_retrying(reason, delay);
        pull.state = CallerState::Waiting { until: now + delay };
    }
}

/// One connection's figures as the logs and the board show them.
#[derive(Debug, Default, Clone, Copy)]
struct StatsSnapshot {
    rtt_ms: f64,
    bitrate_kbps: f64,
    lost: i32,
    retransmitted: u64,
    dropped: i32,
    bytes: u64,
    latency_ms: i32,
}

/// Reads a connection's statistics, puts them on the board and, when `log`, in the log. A
/// connection libsrt already closed logs the figures of its last reading.
fn log_stats(connection: &mut Connection, now: Instant, log: bool) {
    let publishing = matches!(connection.role, ConnectionRole::Publish(_));
    if let Ok(stats) = connection.socket.stats(true) {
        // The receiving side counts what arrived again; the sending side what it sent again.
        let (retransmitted_now, lost, dropped, bytes, mbps) = if publishing {
            (
                stats.pktRcvRetrans,
                stats.pktRcvLossTotal,
                stats.pktRcvDropTotal,
                stats.byteRecvTotal,
                stats.mbpsRecvRate,
            )
        } else {
            (
                stats.pktRetrans,
                stats.pktSndLossTotal,
                stats.pktSndDropTotal,
                stats.byteSentTotal,
                stats.mbpsSendRate,
            )
        };
        connection.totals.retransmitted += u64::try_from(retransmitted_now).unwrap_or(0);
        connection.last = StatsSnapshot {
            rtt_ms: (stats.msRTT * 100.0).round() / 100.0,
            bitrate_kbps: (mbps * 1000.0).round(),
            lost,
            retransmitted: connection.totals.retransmitted,
            dropped,
            bytes,
            latency_ms: stats.msRcvTsbPdDelay.max(stats.msSndTsbPdDelay),
        };
        let s = connection.last;
        if let Some(board) = &connection.board {
            board.set_stats(&[
                ("rtt_ms", s.rtt_ms),
                ("bitrate_kbps", s.bitrate_kbps),
                ("lost_packets", f64::from(s.lost)),
                ("retransmitted_packets", s.retransmitted as f64),
                ("dropped_packets", f64::from(s.dropped)),
                ("latency_ms", f64::from(s.latency_ms)),
            ]);
        }
    }
    if log {
        let s = connection.last;
        let stream = match &connection.role {
            ConnectionRole::Publish(p) => p.stream(),
            ConnectionRole::Read(r) => r.stream(),
        };
        tracing::info!(
            peer = %connection.peer,
            %stream,
            mode = if publishing { "publish" } else { "read" },
            rtt_ms = s.rtt_ms,
            bitrate_kbps = s.bitrate_kbps,
            lost = s.lost,
            retransmitted = s.retransmitted,
            dropped = s.dropped,
            bytes = s.bytes,
            latency_ms = s.latency_ms,
            seconds = now.duration_since(connection.started).as_secs(),
            "SRT stats"
        );
    }
}
