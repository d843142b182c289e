//! MPEG-TS over UDP sources (`[[source]] url = "udp://..."`): a socket per source, unicast or
//! joined to a multicast group, feeding a [`TsFeed`] (`ts_feed.rs`, shared with SRT
//! publishers), which demuxes H.264, HEVC and AAC and publishes the tracks to the hub under
//! the source's name.
//!
//! All UDP sources share one thread, `cc-udp`, pinned to the ingest core and running a
//! current-thread tokio runtime as their socket driver. It is a thread of its own rather than
//! a task on the RTMP listener's runtime because that runtime is built inside `rtmp::run`;
//! sharing it would mean giving the RTMP module a registry of every other protocol. Both
//! threads sit on the same core, so the core plan holds either way.
//!
//! Life cycle of a source: the socket is bound (and the group joined) when the engine starts,
//! so a bad address or interface is an error at start. The stream goes live (claim + start in
//! the hub) once the program's tracks have their configs and media flows, holding the units
//! that come first (the feed's rules: [`STARTUP_WAIT`], [`MAX_HELD_UNITS`]). The first
//! sender is followed; datagrams from other addresses are dropped and counted until the
//! source goes silent. No datagram for `timeout` ends the publisher (the hub's grace period
//! then waits for it); the next datagram starts over with a new feed. A name that is live
//! already (an RTMP publisher using it) is logged and tried again every [`CLAIM_RETRY`].
//!
//! Each source reports to its [`SourceHandle`]: `connecting` while it waits for a feed, `live`,
//! `down` after a silence; datagrams, bytes and access units on lock-free counters, and the
//! demuxer's error counts (`ts_sync_loss`, `ts_continuity`, `pes_error`, …) as deltas after
//! each datagram that added any.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use ingest::ts::TsCounters;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use crate::hub::HubHandle;
use crate::sources::{SourceHandle, SourceState};
use crate::ts_feed::{ClaimPolicy, TsFeed};
pub use crate::ts_feed::{MAX_HELD_UNITS, STARTUP_WAIT};

/// How often a source whose name is taken tries again.
pub const CLAIM_RETRY: Duration = Duration::from_secs(5);
/// At most one log line about malformed input per source this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Socket receive buffer asked for by default: about 1.5 s of a 20 Mbit/s feed, so that a busy
/// moment on the ingest core does not drop datagrams. The kernel caps it at
/// net.core.rmem_max.
pub const DEFAULT_RECEIVE_BUFFER: usize = 4 << 20;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// Which interface joins a multicast group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MulticastInterface {
    /// The kernel's choice (by the route to the group).
    Default,
    /// By name, e.g. `eth1` or `lo`.
    Name(String),
    /// By one of its IPv4 addresses.
    Address(Ipv4Addr),
}

/// One `[[source]]` with a `udp://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpSourceConfig {
    /// The stream name it publishes.
    pub name: String,
    /// The URL as configured, for logs.
    pub url: String,
    /// Where the socket binds: the group address for multicast, else the local address.
    pub bind: SocketAddrV4,
    /// Set when `bind`'s address is a multicast group.
    pub multicast_interface: Option<MulticastInterface>,
    /// No datagram for this long ends the publisher.
    pub timeout: Duration,
    /// SO_RCVBUF asked for.
    pub receive_buffer: usize,
}

impl UdpSourceConfig {
    /// Reads `udp://HOST:PORT[?interface=NAME|ADDR][&buffer_size=BYTES]`. HOST is an IPv4
    /// address: a multicast group (224.0.0.0/4) is joined, anything else is bound to
    /// (`0.0.0.0` for every local address). A leading `@` (VLC's spelling) is accepted.
    pub fn from_url(name: &str, url: &str, timeout: Duration) -> Result<Self, String> {
        let rest = url
            .strip_prefix("udp://")
            .ok_or_else(|| "not a udp:// URL".to_owned())?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_start_matches('@').trim_end_matches('/');
        let bind: SocketAddrV4 = authority.parse().map_err(|_| {
            format!("{authority:?} is not IPV4:PORT (IPv6 and host names are not supported)")
        })?;
        if bind.port() == 0 {
            return Err("port 0: give the port the feed is sent to".into());
        }
        let multicast = bind.ip().is_multicast();
        let mut interface = None;
        let mut receive_buffer = DEFAULT_RECEIVE_BUFFER;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "interface" => {
                    if !multicast {
                        return Err(format!(
                            "interface= is for multicast groups; {} is not one",
                            bind.ip()
                        ));
                    }
                    interface = Some(match value.parse::<Ipv4Addr>() {
                        Ok(address) => MulticastInterface::Address(address),
                        Err(_) if valid_interface_name(value) => {
                            MulticastInterface::Name(value.to_owned())
                        }
                        Err(_) => {
                            return Err(format!(
                                "interface={value:?} is not a name or IPv4 address"
                            ));
                        }
                    });
                }
                "buffer_size" => {
                    receive_buffer = value
                        .parse()
                        .ok()
                        .filter(|&b| (4096..=1 << 30).contains(&b))
                        .ok_or_else(|| format!("buffer_size={value:?}: bytes, 4096 to 2^30"))?;
                }
                other => {
                    return Err(format!(
                        "unknown option {other:?} (known: interface, buffer_size)"
                    ));
                }
            }
        }
        Ok(UdpSourceConfig {
            name: name.to_owned(),
            url: url.to_owned(),
            bind,
            multicast_interface: multicast
                .then(|| interface.unwrap_or(MulticastInterface::Default)),
            timeout,
            receive_buffer,
        })
    }
}

/// Interface names as Linux allows them (IFNAMSIZ 16 with the NUL; no '/' or spaces).
fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b':'))
}

/// Binds a source's socket and joins its group, so that errors surface before any thread
/// starts.
pub fn bind(config: &UdpSourceConfig) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(config.receive_buffer) {
        tracing::debug!(source = %config.name, error = %e, "SO_RCVBUF not set");
    }
    if let Some(interface) = &config.multicast_interface {
        // Other receivers on this host may listen to the same group and port.
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::V4(config.bind).into())?;
        let interface = match interface {
            MulticastInterface::Default => InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
            MulticastInterface::Address(address) => InterfaceIndexOrAddress::Address(*address),
            MulticastInterface::Name(name) => {
                InterfaceIndexOrAddress::Index(interface_index(name)?)
            }
        };
        socket.join_multicast_v4_n(config.bind.ip(), &interface)?;
    } else {
        socket.bind(&SocketAddr::V4(config.bind).into())?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The index of a network interface, read from sysfs (std has no if_nametoindex, and calling
/// libc's is unsafe code this crate does not hold).
fn interface_index(name: &str) -> std::io::Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("no network interface {name:?} ({path}: {e})"),
        )
    })?;
    text.trim().parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{path} holds {text:?}, not an index"),
        )
    })
}

/// Runs every UDP source until the process ends. Runs on the calling thread.
pub fn run(
    sources: Vec<(UdpSourceConfig, std::net::UdpSocket, SourceHandle)>,
    hub: HubHandle,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let mut tasks = Vec::new();
        for (config, socket, board) in sources {
            let socket = tokio::net::UdpSocket::from_std(socket)?;
            let hub = hub.clone();
            tasks.push(tokio::task::spawn_local(async move {
                UdpSource::new(config, hub, board).serve(socket).await
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    })
}

/// One source: its sender filter and error log beside the [`TsFeed`] of the current feed.
struct UdpSource {
    config: UdpSourceConfig,
    hub: HubHandle,
    board: SourceHandle,
    feed: TsFeed,
    /// The address followed while the source is receiving.
    sender: Option<SocketAddr>,
    /// Counters as of the last error log line.
    logged: TsCounters,
    last_error_log: Option<Instant>,
    foreign_datagrams: u64,
}

impl UdpSource {
    fn new(config: UdpSourceConfig, hub: HubHandle, board: SourceHandle) -> Self {
        let feed = TsFeed::new(
            &config.name,
            format!("udp {}", config.bind),
            "UDP source",
            hub.clone(),
            board.clone(),
            ClaimPolicy::Retry(CLAIM_RETRY),
        );
        UdpSource {
            config,
            hub,
            board,
            feed,
            sender: None,
            logged: TsCounters::default(),
            last_error_log: None,
            foreign_datagrams: 0,
        }
    }

    async fn serve(mut self, socket: tokio::net::UdpSocket) {
        tracing::info!(source = %self.config.name, url = %self.config.url, "UDP source waiting for datagrams");
        // alloc: once per source.
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let received = if self.sender.is_some() {
                match tokio::time::timeout(self.config.timeout, socket.recv_from(&mut buf)).await {
                    Ok(received) => received,
                    Err(_) => {
                        self.handle_silence();
                        continue;
                    }
                }
            } else {
                socket.recv_from(&mut buf).await
            };
            match received {
                Ok((len, from)) => self.handle_datagram(Instant::now(), from, &buf[..len]),
                Err(e) => {
                    // ICMP errors and the like: nothing to do but wait and read on.
                    tracing::debug!(source = %self.config.name, error = %e, "UDP receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        match self.sender {
            None => {
                self.sender = Some(from);
                self.feed
                    .set_origin(format!("udp {from} -> {}", self.config.bind));
                if self.board.state() == SourceState::Down {
                    self.board.count_reconnect();
                }
                self.board.set_connecting();
            }
            Some(sender) if sender != from => {
                self.foreign_datagrams += 1;
                self.board.count_error("udp_foreign_sender", 1);
                if self.foreign_datagrams.is_power_of_two() {
                    tracing::warn!(source = %self.config.name, %from, following = %sender, dropped = self.foreign_datagrams, "UDP source: datagrams from a second sender dropped");
                }
                return;
            }
            Some(_) => {}
        }
        // Under ClaimPolicy::Retry a taken name is logged and retried by the feed: no error.
        let _ = self.feed.handle_bytes(now, data);
        self.report_errors(now);
    }

    /// No datagram for `timeout`: hand out what the demuxer holds, end the publisher and
    /// start over.
    fn handle_silence(&mut self) {
        let now = Instant::now();
        let reason = format!("no datagram for {} s", self.config.timeout.as_secs_f32());
        let was_live = self.feed.finish(now, &reason);
        self.report_errors(now);
        let counters = *self.feed.counters();
        tracing::info!(
            source = %self.config.name,
            from = ?self.sender,
            was_live,
            packets = counters.packets,
            errors = counters.errors(),
            "UDP source silent: {reason}"
        );
        self.board.set_down(&reason);
        let (config, hub, board) = (self.config.clone(), self.hub.clone(), self.board.clone());
        let foreign = self.foreign_datagrams;
        *self = UdpSource::new(config, hub, board);
        self.foreign_datagrams = foreign;
    }

    /// Logs malformed input, at most once per [`ERROR_LOG_INTERVAL`].
    fn report_errors(&mut self, now: Instant) {
        let counters = *self.feed.counters();
        let new_errors = counters.errors() - self.logged.errors();
        let new_skipped = counters.skipped_bytes - self.logged.skipped_bytes;
        if new_errors == 0 && new_skipped == 0 {
            return;
        }
        if self
            .last_error_log
            .is_some_and(|at| now.duration_since(at) < ERROR_LOG_INTERVAL)
        {
            return;
        }
        let since = |now: u64, then: u64| now - then;
        let logged = self.logged;
        tracing::warn!(
            source = %self.config.name,
            errors = new_errors,
            skipped_bytes = new_skipped,
            sync_losses = since(counters.sync_losses, logged.sync_losses),
            continuity_errors = since(counters.continuity_errors, logged.continuity_errors),
            transport_errors = since(counters.transport_errors, logged.transport_errors),
            bad_sections = since(counters.bad_sections, logged.bad_sections),
            bad_pes = since(counters.bad_pes, logged.bad_pes),
            bad_video = since(counters.bad_video, logged.bad_video),
            bad_audio = since(counters.bad_audio, logged.bad_audio),
            total_errors = counters.errors(),
            "UDP source: malformed input dropped"
        );
        self.logged = counters;
        self.last_error_log = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Duration::from_secs(10);
        let c = UdpSourceConfig::from_url("feed1", "udp://239.1.1.1:5000?interface=lo", t).unwrap();
        assert_eq!(c.bind, "239.1.1.1:5000".parse().unwrap());
        assert_eq!(
            c.multicast_interface,
            Some(MulticastInterface::Name("lo".into()))
        );
        assert_eq!(c.receive_buffer, DEFAULT_RECEIVE_BUFFER);
        let c = UdpSourceConfig::from_url(
            "f",
            "udp://@239.1.1.1:5000?interface=10.0.0.1&buffer_size=65536",
            t,
        )
        .unwrap();
        assert_eq!(
            c.multicast_interface,
            Some(MulticastInterface::Address(Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!(c.receive_buffer, 65536);
        let c = UdpSourceConfig::from_url("f", "udp://239.1.1.1:5000", t).unwrap();
        assert_eq!(c.multicast_interface, Some(MulticastInterface::Default));
        let c = UdpSourceConfig::from_url("f", "udp://0.0.0.0:5000", t).unwrap();
        assert_eq!(c.multicast_interface, None);
        for (url, expected) in [
            ("rtsp://x:1", "not a udp"),
            ("udp://host:5000", "not IPV4:PORT"),
            ("udp://[::1]:5000", "not IPV4:PORT"),
            ("udp://0.0.0.0:0", "port 0"),
            ("udp://0.0.0.0:5000?interface=lo", "not one"),
            ("udp://239.0.0.1:5000?interface=a/b", "not a name"),
            ("udp://239.0.0.1:5000?ttl=3", "unknown option \"ttl\""),
            ("udp://239.0.0.1:5000?buffer_size=12", "buffer_size"),
        ] {
            let err = UdpSourceConfig::from_url("f", url, t).unwrap_err();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn binding_unicast_and_multicast_on_loopback() {
        let t = Duration::from_secs(10);
        let unicast = UdpSourceConfig::from_url("u", "udp://127.0.0.1:0", t);
        assert!(unicast.is_err(), "port 0 is refused");
        // A free port: bind, release, reuse.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = UdpSourceConfig::from_url("u", &format!("udp://127.0.0.1:{port}"), t).unwrap();
        let socket = bind(&config).unwrap();
        assert_eq!(socket.local_addr().unwrap().port(), port);
        let missing = UdpSourceConfig::from_url(
            "m",
            &format!("udp://239.255.7.7:{port}?interface=nosuchif0"),
            t,
        )
        .unwrap();
        let err = bind(&missing).unwrap_err().to_string();
        assert!(err.contains("nosuchif0"), "{err}");

        // Multicast on loopback: join on `lo`, send with IP_MULTICAST_IF 127.0.0.1.
        let group =
            UdpSourceConfig::from_url("m", &format!("udp://239.255.7.7:{port}?interface=lo"), t)
                .unwrap();
        let receiver = bind(&group).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let sender = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        sender.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
        sender
            .send_to(b"ts", &SocketAddr::V4(group.bind).into())
            .unwrap();
        receiver.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 8];
        let (len, _) = receiver
            .recv_from(&mut buf)
            .expect("multicast datagram on lo");
        assert_eq!(&buf[..len], b"ts");
    }
}
