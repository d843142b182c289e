//! corecast's SRT transport: a thin, safe wrapper over Haivision's libsrt 1.5 (Debian's
//! `libsrt-openssl-dev`), the reference implementation that ffmpeg and `srt-live-transmit`
//! use. docs/srt.md says why this and not the pure-Rust srt-tokio: a caller sending a
//! passphrase to a listener without one panicked srt-tokio 0.4.4's listener, and its
//! srt-protocol core has other `unimplemented!()`s reachable from the network.
//!
//! What is wrapped: live-mode sockets (caller and listener), non-blocking send/receive of whole
//! messages, the listener's access hook (libsrt's `srt_listen_callback`, where the stream id is
//! read and a per-stream passphrase and latency are set before the handshake finishes), an
//! epoll set, statistics, reject reasons and libsrt's log. Not wrapped: rendezvous, groups
//! (bonding), file mode, packet filters.
//!
//! Threads: libsrt runs its own threads (a garbage collector from [`startup`], a receive and a
//! send thread per bound UDP port). Linux threads inherit the CPU affinity of the thread that
//! creates them, so calling [`startup`] and [`Socket::bind`] from a pinned thread keeps
//! libsrt on that core. Every function here may be called from any thread; libsrt's error
//! state is per thread, and each failing call reads it at once.

mod ffi;

use std::ffi::{CStr, c_char, c_int, c_void};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use ffi::SrtTraceStats;

/// libsrt's id of a socket.
pub type SocketId = i32;

/// Largest payload of one live-mode message (libsrt's `SRT_LIVE_MAX_PLSIZE`).
pub const MAX_PAYLOAD: usize = 1456;
/// The live-mode default payload: seven MPEG-TS packets (`SRT_LIVE_DEF_PLSIZE`).
pub const TS_PAYLOAD: usize = 1316;

/// What went wrong in a libsrt call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SrtError {
    #[error("SRT {op}: {message} (libsrt error {code})")]
    Call {
        op: &'static str,
        code: i32,
        message: String,
    },
    #[error("SRT {op}: connection rejected: {reason}")]
    Rejected {
        op: &'static str,
        reason: RejectReason,
    },
    #[error("SRT option {option}: {why}")]
    BadOption {
        option: &'static str,
        why: &'static str,
    },
}

impl SrtError {
    /// The error of the last failed libsrt call on this thread.
    fn last(op: &'static str) -> SrtError {
        let mut errno = 0;
        // SAFETY: both functions only read libsrt's thread-local error state; the string is
        // copied out before any other libsrt call on this thread could change it.
        let (code, message) = unsafe {
            let code = ffi::srt_getlasterror(&mut errno);
            let text = ffi::srt_getlasterror_str();
            let message = if text.is_null() {
                String::new()
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            };
            (code, message)
        };
        SrtError::Call { op, code, message }
    }

    /// libsrt's error code, where it is a call error.
    pub fn code(&self) -> Option<i32> {
        match self {
            SrtError::Call { code, .. } => Some(*code),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, SrtError>;

/// Why a connection was refused (libsrt's `SRT_REJECT_REASON`, or 1000 + an HTTP-like status
/// set by an access hook, see [`RejectCode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectReason(pub i32);

impl RejectReason {
    /// `SRT_REJ_BADSECRET`: the passphrases differ.
    pub const BAD_SECRET: RejectReason = RejectReason(10);
    /// `SRT_REJ_UNSECURE`: one side has a passphrase, the other none.
    pub const UNSECURE: RejectReason = RejectReason(11);
    /// `SRT_REJ_TIMEOUT`.
    pub const TIMEOUT: RejectReason = RejectReason(16);
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= ffi::SRT_REJC_PREDEFINED {
            return write!(f, "refused by the listener with status {}", self.0 - 1000);
        }
        // SAFETY: srt_rejectreason_str returns a pointer to a static string for any id
        // (a generic text for unknown ones), never null in libsrt 1.5; checked anyway.
        let text = unsafe {
            let p = ffi::srt_rejectreason_str(self.0);
            if p.is_null() {
                return write!(f, "reject reason {}", self.0);
            }
            CStr::from_ptr(p).to_string_lossy()
        };
        write!(f, "{text} ({})", self.0)
    }
}

/// A status an access hook refuses a connection with (sent to the caller as
/// `SRT_REJC_PREDEFINED + status`, the convention of libsrt's access_control.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectCode(pub u16);

impl RejectCode {
    pub const BAD_REQUEST: RejectCode = RejectCode(400);
    pub const UNAUTHORIZED: RejectCode = RejectCode(401);
    pub const FORBIDDEN: RejectCode = RejectCode(403);
    pub const NOT_FOUND: RejectCode = RejectCode(404);
    pub const CONFLICT: RejectCode = RejectCode(409);
}

/// Starts libsrt once per process (later calls do nothing). Its garbage-collector thread is
/// created here, on the calling thread's CPUs.
pub fn startup() -> Result<()> {
    static STARTED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            // SAFETY: srt_startup has no preconditions; it is only ever called once here.
            let rc = unsafe { ffi::srt_startup() };
            if rc < 0 {
                Err(SrtError::last("startup").to_string())
            } else {
                Ok(())
            }
        })
        .clone()
        .map_err(|message| SrtError::Call {
            op: "startup",
            code: -1,
            message,
        })
}

/// libsrt's version as `(major, minor, patch)`.
pub fn version() -> (u8, u8, u8) {
    // SAFETY: srt_getversion only returns a constant.
    let v = unsafe { ffi::srt_getversion() };
    ((v >> 16) as u8, (v >> 8) as u8, v as u8)
}

/// Severity of a libsrt log line (syslog levels, as libsrt uses them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Critical = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Debug = 7,
}

type LogSink = Box<dyn Fn(LogLevel, &str, &str) + Send + Sync>;
static LOG_SINK: OnceLock<LogSink> = OnceLock::new();

/// Sends libsrt's log lines at `level` and above to `sink(level, area, message)` instead of
/// stderr. Set once per process: later calls only change the level. The sink runs on
/// libsrt's threads.
pub fn set_log_sink(level: LogLevel, sink: impl Fn(LogLevel, &str, &str) + Send + Sync + 'static) {
    let installed = LOG_SINK.set(Box::new(sink)).is_ok();
    // SAFETY: the handler only reads the static sink, which is set before it is installed and
    // never freed; the opaque pointer is unused (null).
    unsafe {
        if installed {
            ffi::srt_setloghandler(std::ptr::null_mut(), Some(log_handler));
        }
        ffi::srt_setloglevel(level as c_int);
    }
}

unsafe extern "C" fn log_handler(
    _opaque: *mut c_void,
    level: c_int,
    _file: *const c_char,
    _line: c_int,
    area: *const c_char,
    message: *const c_char,
) {
    let text = |p: *const c_char| {
        if p.is_null() {
            std::borrow::Cow::Borrowed("")
        } else {
            // SAFETY: libsrt passes NUL-terminated strings that live for this call.
            unsafe { CStr::from_ptr(p) }.to_string_lossy()
        }
    };
    let level = match level {
        0..=2 => LogLevel::Critical,
        3 => LogLevel::Error,
        4 => LogLevel::Warning,
        5 | 6 => LogLevel::Notice,
        _ => LogLevel::Debug,
    };
    if let Some(sink) = LOG_SINK.get() {
        let (area, message) = (text(area), text(message));
        // A panic must not unwind into C.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sink(level, &area, message.trim_end())
        }));
    }
}

/// A socket's state (`SRT_SOCKSTATUS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketState {
    Init,
    Opened,
    Listening,
    Connecting,
    Connected,
    Broken,
    Closing,
    Closed,
    NonExistent,
}

/// AES key length for encryption (`SRTO_PBKEYLEN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLength {
    Aes128 = 16,
    Aes192 = 24,
    Aes256 = 32,
}

impl KeyLength {
    /// From bytes (16, 24, 32).
    pub fn from_bytes(bytes: u32) -> Option<KeyLength> {
        match bytes {
            16 => Some(KeyLength::Aes128),
            24 => Some(KeyLength::Aes192),
            32 => Some(KeyLength::Aes256),
            _ => None,
        }
    }
}

/// Checks a passphrase the way libsrt does (10 to 79 characters).
pub fn check_passphrase(passphrase: &str) -> std::result::Result<(), &'static str> {
    if (10..=79).contains(&passphrase.len()) {
        Ok(())
    } else {
        Err("a passphrase has 10 to 79 characters")
    }
}

/// A libsrt socket in live mode; closed when dropped.
#[derive(Debug)]
pub struct Socket {
    id: SocketId,
    /// The access hook libsrt calls, kept alive while the listener is.
    hook: Option<Box<HookBox>>,
}

type HookBox = Arc<dyn ListenHook>;

impl Socket {
    /// A new live-mode socket (libsrt's defaults: 120 ms latency, 1316-byte payloads, TSBPD,
    /// too-late packet drop, enforced encryption).
    pub fn new() -> Result<Socket> {
        startup()?;
        // SAFETY: libsrt is started; srt_create_socket has no other precondition.
        let id = unsafe { ffi::srt_create_socket() };
        if id == ffi::SRT_INVALID_SOCK {
            return Err(SrtError::last("create socket"));
        }
        let socket = Socket { id, hook: None };
        socket.set_i32("transtype", ffi::SRTO_TRANSTYPE, ffi::SRTT_LIVE)?;
        Ok(socket)
    }

    pub fn id(&self) -> SocketId {
        self.id
    }

    fn set_i32(&self, name: &'static str, option: c_int, value: i32) -> Result<()> {
        set_flag_i32(self.id, name, option, value)
    }

    /// Makes sends and receives return at once (the epoll loop drives them).
    pub fn set_nonblocking(&self) -> Result<()> {
        self.set_i32("sndsyn", ffi::SRTO_SNDSYN, 0)?;
        self.set_i32("rcvsyn", ffi::SRTO_RCVSYN, 0)
    }

    /// Latency both ways (`SRTO_LATENCY`): how long lost packets may be recovered.
    pub fn set_latency(&self, latency: Duration) -> Result<()> {
        set_latency(self.id, latency)
    }

    /// Encrypts with `passphrase` (10 to 79 characters).
    pub fn set_passphrase(&self, passphrase: &str) -> Result<()> {
        set_passphrase(self.id, passphrase)
    }

    /// AES key length used when this side starts the key exchange.
    pub fn set_key_length(&self, key: KeyLength) -> Result<()> {
        self.set_i32("pbkeylen", ffi::SRTO_PBKEYLEN, key as i32)
    }

    /// The stream id a caller sends (at most 512 bytes).
    pub fn set_stream_id(&self, stream_id: &str) -> Result<()> {
        if stream_id.len() > 512 {
            return Err(SrtError::BadOption {
                option: "streamid",
                why: "at most 512 bytes",
            });
        }
        set_flag_bytes(
            self.id,
            "streamid",
            ffi::SRTO_STREAMID,
            stream_id.as_bytes(),
        )
    }

    /// How long a caller waits for the listener.
    pub fn set_connect_timeout(&self, timeout: Duration) -> Result<()> {
        self.set_i32("conntimeo", ffi::SRTO_CONNTIMEO, millis(timeout))
    }

    /// A peer silent this long breaks the connection (libsrt's default: 5 s).
    pub fn set_peer_idle_timeout(&self, timeout: Duration) -> Result<()> {
        self.set_i32("peeridletimeo", ffi::SRTO_PEERIDLETIMEO, millis(timeout))
    }

    /// The UDP socket's receive buffer, bytes.
    pub fn set_udp_receive_buffer(&self, bytes: usize) -> Result<()> {
        let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
        self.set_i32("udp_rcvbuf", ffi::SRTO_UDP_RCVBUF, bytes)
    }

    pub fn bind(&self, addr: SocketAddr) -> Result<()> {
        let (storage, len) = sockaddr_from(addr);
        // SAFETY: storage holds a valid sockaddr_in/sockaddr_in6 of `len` bytes.
        let rc = unsafe { ffi::srt_bind(self.id, (&raw const storage).cast(), len) };
        if rc == ffi::SRT_ERROR {
            return Err(SrtError::last("bind"));
        }
        Ok(())
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        let mut storage = zeroed_storage();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as c_int;
        // SAFETY: storage is a writable sockaddr_storage and len its size.
        let rc = unsafe { ffi::srt_getsockname(self.id, (&raw mut storage).cast(), &mut len) };
        if rc == ffi::SRT_ERROR {
            return Err(SrtError::last("getsockname"));
        }
        sockaddr_to(&storage).ok_or(SrtError::BadOption {
            option: "sockname",
            why: "not an IP address",
        })
    }

    pub fn peer_addr(&self) -> Result<SocketAddr> {
        let mut storage = zeroed_storage();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as c_int;
        // SAFETY: storage is a writable sockaddr_storage and len its size.
        let rc = unsafe { ffi::srt_getpeername(self.id, (&raw mut storage).cast(), &mut len) };
        if rc == ffi::SRT_ERROR {
            return Err(SrtError::last("getpeername"));
        }
        sockaddr_to(&storage).ok_or(SrtError::BadOption {
            option: "peername",
            why: "not an IP address",
        })
    }

    /// Installs the access hook (before [`Socket::listen`]): libsrt calls it for each caller
    /// once the stream id is known, before the handshake (and the key exchange) completes.
    pub fn set_listen_hook(&mut self, hook: Arc<dyn ListenHook>) -> Result<()> {
        let boxed: Box<HookBox> = Box::new(hook);
        let opaque = (&raw const *boxed).cast_mut().cast::<c_void>();
        // SAFETY: `opaque` points to the boxed hook, which lives in `self.hook` until the
        // socket is closed (and is leaked at close, see Drop), so libsrt never sees it dangle.
        let rc = unsafe { ffi::srt_listen_callback(self.id, Some(listen_hook), opaque) };
        if rc == ffi::SRT_ERROR {
            return Err(SrtError::last("listen callback"));
        }
        self.hook = Some(boxed);
        Ok(())
    }

    pub fn listen(&self, backlog: u16) -> Result<()> {
        // SAFETY: plain call on a socket id we own.
        let rc = unsafe { ffi::srt_listen(self.id, c_int::from(backlog)) };
        if rc == ffi::SRT_ERROR {
            return Err(SrtError::last("listen"));
        }
        Ok(())
    }

    /// A caller that finished its handshake, or `None` when none is waiting (non-blocking
    /// listener).
    pub fn accept(&self) -> Result<Option<(Socket, SocketAddr)>> {
        let mut storage = zeroed_storage();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as c_int;
        // SAFETY: storage is a writable sockaddr_storage and len its size.
        let id = unsafe { ffi::srt_accept(self.id, (&raw mut storage).cast(), &mut len) };
        if id == ffi::SRT_INVALID_SOCK {
            let error = SrtError::last("accept");
            if error.code() == Some(ffi::SRT_EASYNCRCV) {
                return Ok(None);
            }
            return Err(error);
        }
        let socket = Socket { id, hook: None };
        let peer = sockaddr_to(&storage).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        Ok(Some((socket, peer)))
    }

    /// Starts connecting to a listener. Non-blocking sockets return at once: the epoll set
    /// reports the socket writable when connected, or in error when refused
    /// ([`Socket::reject_reason`] says why).
    pub fn connect(&self, addr: SocketAddr) -> Result<()> {
        let (storage, len) = sockaddr_from(addr);
        // SAFETY: storage holds a valid sockaddr of `len` bytes.
        let rc = unsafe { ffi::srt_connect(self.id, (&raw const storage).cast(), len) };
        if rc == ffi::SRT_ERROR {
            let error = SrtError::last("connect");
            if error.code() == Some(ffi::SRT_ECONNREJ) {
                return Err(SrtError::Rejected {
                    op: "connect",
                    reason: self.reject_reason(),
                });
            }
            return Err(error);
        }
        Ok(())
    }

    /// Receives one message into `buf` (at least [`MAX_PAYLOAD`] bytes); `None` when nothing
    /// is ready on a non-blocking socket.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<usize>> {
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        // SAFETY: buf is writable for `len` bytes.
        let rc = unsafe { ffi::srt_recv(self.id, buf.as_mut_ptr().cast(), len) };
        if rc == ffi::SRT_ERROR {
            let error = SrtError::last("recv");
            if error.code() == Some(ffi::SRT_EASYNCRCV) {
                return Ok(None);
            }
            return Err(error);
        }
        Ok(Some(usize::try_from(rc).unwrap_or(0)))
    }

    /// Sends one message (at most [`MAX_PAYLOAD`] bytes); `None` when the send buffer is full.
    pub fn send(&self, data: &[u8]) -> Result<Option<usize>> {
        if data.len() > MAX_PAYLOAD {
            return Err(SrtError::BadOption {
                option: "payload",
                why: "a live-mode message has at most 1456 bytes",
            });
        }
        // SAFETY: data is readable for its length (checked to fit a c_int above).
        let rc = unsafe { ffi::srt_send(self.id, data.as_ptr().cast(), data.len() as c_int) };
        if rc == ffi::SRT_ERROR {
            let error = SrtError::last("send");
            if error.code() == Some(ffi::SRT_EASYNCSND) {
                return Ok(None);
            }
            return Err(error);
        }
        Ok(Some(usize::try_from(rc).unwrap_or(0)))
    }

    /// The stream id the caller sent (on an accepted socket).
    pub fn stream_id(&self) -> Result<String> {
        let mut buf = [0u8; 513];
        let mut len = buf.len() as c_int;
        // SAFETY: buf is writable for len bytes; libsrt writes at most len and updates it.
        let rc = unsafe {
            ffi::srt_getsockflag(
                self.id,
                ffi::SRTO_STREAMID,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == ffi::SRT_ERROR {
            return Err(SrtError::last("get streamid"));
        }
        let len = usize::try_from(len).unwrap_or(0).min(buf.len());
        let text = buf.get(..len).unwrap_or(&[]);
        let text = text.split(|&b| b == 0).next().unwrap_or(&[]);
        Ok(String::from_utf8_lossy(text).into_owned())
    }

    pub fn state(&self) -> SocketState {
        // SAFETY: plain query; unknown ids answer SRTS_NONEXIST.
        state_of(unsafe { ffi::srt_getsockstate(self.id) })
    }

    /// Why the connection was refused (meaningful once a connect failed).
    pub fn reject_reason(&self) -> RejectReason {
        // SAFETY: plain query on our socket id.
        RejectReason(unsafe { ffi::srt_getrejectreason(self.id) })
    }

    /// Statistics; `clear` restarts the interval counters (`pktRecv`, `pktRcvRetrans`, ...).
    pub fn stats(&self, clear: bool) -> Result<SrtTraceStats> {
        let mut stats = SrtTraceStats::default();
        // SAFETY: stats is a writable SRT_TRACEBSTATS whose layout the ffi tests check.
        let rc = unsafe { ffi::srt_bstats(self.id, &mut stats, c_int::from(clear)) };
        if rc == ffi::SRT_ERROR {
            return Err(SrtError::last("stats"));
        }
        Ok(stats)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: we own this id; closing twice is not possible (drop runs once).
        unsafe {
            ffi::srt_close(self.id);
        }
        // libsrt may be inside the hook on its receive thread while the listener closes, and
        // gives no way to wait for that: leak the (small) hook rather than free it under it.
        if let Some(hook) = self.hook.take() {
            std::mem::forget(hook);
        }
    }
}

fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

fn set_flag_i32(id: SocketId, name: &'static str, option: c_int, value: i32) -> Result<()> {
    // SAFETY: value is a readable i32, and libsrt reads exactly size_of::<i32>() bytes.
    let rc = unsafe {
        ffi::srt_setsockflag(
            id,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<i32>() as c_int,
        )
    };
    if rc == ffi::SRT_ERROR {
        return Err(SrtError::last(name));
    }
    Ok(())
}

fn set_flag_bytes(id: SocketId, name: &'static str, option: c_int, value: &[u8]) -> Result<()> {
    // SAFETY: value is readable for its length; libsrt copies it.
    let rc = unsafe {
        ffi::srt_setsockflag(
            id,
            option,
            value.as_ptr().cast(),
            c_int::try_from(value.len()).unwrap_or(c_int::MAX),
        )
    };
    if rc == ffi::SRT_ERROR {
        return Err(SrtError::last(name));
    }
    Ok(())
}

fn set_latency(id: SocketId, latency: Duration) -> Result<()> {
    set_flag_i32(id, "latency", ffi::SRTO_LATENCY, millis(latency))
}

fn set_passphrase(id: SocketId, passphrase: &str) -> Result<()> {
    check_passphrase(passphrase).map_err(|why| SrtError::BadOption {
        option: "passphrase",
        why,
    })?;
    set_flag_bytes(
        id,
        "passphrase",
        ffi::SRTO_PASSPHRASE,
        passphrase.as_bytes(),
    )
}

fn state_of(raw: c_int) -> SocketState {
    match raw {
        ffi::SRTS_INIT => SocketState::Init,
        ffi::SRTS_OPENED => SocketState::Opened,
        ffi::SRTS_LISTENING => SocketState::Listening,
        ffi::SRTS_CONNECTING => SocketState::Connecting,
        ffi::SRTS_CONNECTED => SocketState::Connected,
        ffi::SRTS_BROKEN => SocketState::Broken,
        ffi::SRTS_CLOSING => SocketState::Closing,
        ffi::SRTS_CLOSED => SocketState::Closed,
        _ => SocketState::NonExistent,
    }
}

/// The state of any socket by id (e.g. one an access hook saw but that never reached
/// `accept`).
pub fn socket_state(id: SocketId) -> SocketState {
    // SAFETY: plain query; unknown ids answer SRTS_NONEXIST.
    state_of(unsafe { ffi::srt_getsockstate(id) })
}

/// One caller as the access hook sees it, before the handshake completes.
#[derive(Debug)]
pub struct ConnectionRequest<'a> {
    socket: SocketId,
    peer: Option<SocketAddr>,
    stream_id: &'a str,
}

impl ConnectionRequest<'_> {
    /// The id the socket will have once accepted.
    pub fn socket_id(&self) -> SocketId {
        self.socket
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The caller's stream id; empty when it sent none.
    pub fn stream_id(&self) -> &str {
        self.stream_id
    }

    /// Requires this passphrase for this connection (libsrt then refuses a caller with
    /// another one, or none, with `SRT_REJ_BADSECRET` / `SRT_REJ_UNSECURE`).
    pub fn set_passphrase(&self, passphrase: &str) -> Result<()> {
        set_passphrase(self.socket, passphrase)
    }

    /// Latency of this connection (the larger of this and the caller's applies).
    pub fn set_latency(&self, latency: Duration) -> Result<()> {
        set_latency(self.socket, latency)
    }

    /// Key length when this side (as the sender, for a reader) announces the key.
    pub fn set_key_length(&self, key: KeyLength) -> Result<()> {
        set_flag_i32(self.socket, "pbkeylen", ffi::SRTO_PBKEYLEN, key as i32)
    }
}

/// Decides, per caller, whether and how a listener accepts it. Runs on libsrt's receive
/// thread: keep it short and never block.
pub trait ListenHook: Send + Sync {
    fn on_request(&self, request: &ConnectionRequest<'_>) -> std::result::Result<(), RejectCode>;
}

impl fmt::Debug for dyn ListenHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ListenHook")
    }
}

unsafe extern "C" fn listen_hook(
    opaque: *mut c_void,
    ns: ffi::SRTSOCKET,
    _hs_version: c_int,
    peer: *const libc::sockaddr,
    stream_id: *const c_char,
) -> c_int {
    if opaque.is_null() {
        return -1;
    }
    // SAFETY: opaque is the HookBox installed by set_listen_hook, alive while the listener
    // is (it is never freed, see Socket's Drop).
    let hook: &HookBox = unsafe { &*opaque.cast::<HookBox>() };
    let peer = if peer.is_null() {
        None
    } else {
        // SAFETY: libsrt passes the caller's address as a sockaddr_in or sockaddr_in6, whose
        // family field says which; sockaddr_to_raw reads only as much as the family implies.
        unsafe { sockaddr_to_raw(peer) }
    };
    let stream_id = if stream_id.is_null() {
        std::borrow::Cow::Borrowed("")
    } else {
        // SAFETY: a NUL-terminated string that lives for this call.
        unsafe { CStr::from_ptr(stream_id) }.to_string_lossy()
    };
    let request = ConnectionRequest {
        socket: ns,
        peer,
        stream_id: &stream_id,
    };
    let decision =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.on_request(&request)))
            .unwrap_or(Err(RejectCode(500)));
    match decision {
        Ok(()) => 0,
        Err(code) => {
            // SAFETY: ns is the socket libsrt handed to this hook.
            unsafe {
                ffi::srt_setrejectreason(ns, ffi::SRT_REJC_PREDEFINED + c_int::from(code.0));
            }
            -1
        }
    }
}

/// Readiness reported by [`Epoll::wait`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    pub readable: bool,
    pub writable: bool,
    pub error: bool,
}

impl Events {
    pub const READ: Events = Events {
        readable: true,
        writable: false,
        error: true,
    };
    pub const WRITE: Events = Events {
        readable: false,
        writable: true,
        error: true,
    };

    fn raw(self) -> c_int {
        let mut raw = 0;
        if self.readable {
            raw |= ffi::SRT_EPOLL_IN;
        }
        if self.writable {
            raw |= ffi::SRT_EPOLL_OUT;
        }
        if self.error {
            raw |= ffi::SRT_EPOLL_ERR;
        }
        raw
    }
}

/// An SRT epoll set (libsrt's own, for SRT sockets).
#[derive(Debug)]
pub struct Epoll {
    eid: c_int,
    ready: Vec<ffi::SRT_EPOLL_EVENT>,
}

impl Epoll {
    pub fn new() -> Result<Epoll> {
        startup()?;
        // SAFETY: libsrt is started.
        let eid = unsafe { ffi::srt_epoll_create() };
        if eid < 0 {
            return Err(SrtError::last("epoll create"));
        }
        // An empty set waits instead of failing (a relay with no connection yet).
        // SAFETY: eid was just created.
        unsafe { ffi::srt_epoll_set(eid, ffi::SRT_EPOLL_ENABLE_EMPTY) };
        Ok(Epoll {
            eid,
            ready: vec![ffi::SRT_EPOLL_EVENT::default(); 256],
        })
    }

    pub fn add(&self, socket: SocketId, events: Events) -> Result<()> {
        let raw = events.raw();
        // SAFETY: raw is a readable int; eid is ours.
        let rc = unsafe { ffi::srt_epoll_add_usock(self.eid, socket, &raw) };
        if rc == ffi::SRT_ERROR {
            return Err(SrtError::last("epoll add"));
        }
        Ok(())
    }

    pub fn remove(&self, socket: SocketId) {
        // SAFETY: plain call; removing an unknown socket only returns an error, ignored.
        unsafe {
            ffi::srt_epoll_remove_usock(self.eid, socket);
        }
    }

    /// Waits up to `timeout` and appends the ready sockets to `out`.
    pub fn wait(&mut self, timeout: Duration, out: &mut Vec<(SocketId, Events)>) -> Result<()> {
        let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        // SAFETY: self.ready is writable for its length, which is what we pass.
        let n = unsafe {
            ffi::srt_epoll_uwait(
                self.eid,
                self.ready.as_mut_ptr(),
                c_int::try_from(self.ready.len()).unwrap_or(c_int::MAX),
                ms,
            )
        };
        if n < 0 {
            let error = SrtError::last("epoll wait");
            if error.code() == Some(ffi::SRT_ETIMEOUT) {
                return Ok(());
            }
            return Err(error);
        }
        let n = usize::try_from(n).unwrap_or(0).min(self.ready.len());
        out.extend(self.ready.iter().take(n).map(|e| {
            (
                e.fd,
                Events {
                    readable: e.events & ffi::SRT_EPOLL_IN != 0,
                    writable: e.events & ffi::SRT_EPOLL_OUT != 0,
                    error: e.events & ffi::SRT_EPOLL_ERR != 0,
                },
            )
        }));
        Ok(())
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: eid is ours and released once.
        unsafe {
            ffi::srt_epoll_release(self.eid);
        }
    }
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid (AF_UNSPEC) value.
    unsafe { std::mem::zeroed() }
}

fn sockaddr_from(addr: SocketAddr) -> (libc::sockaddr_storage, c_int) {
    let mut storage = zeroed_storage();
    match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            (storage, std::mem::size_of::<libc::sockaddr_in>() as c_int)
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            (storage, std::mem::size_of::<libc::sockaddr_in6>() as c_int)
        }
    }
}

fn sockaddr_to(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    // SAFETY: a sockaddr_storage is large enough for any family it may hold.
    unsafe { sockaddr_to_raw((&raw const *storage).cast()) }
}

/// Reads an IPv4 or IPv6 address; `None` for other families.
///
/// # Safety
/// `addr` points to a readable socket address whose size matches its family field.
unsafe fn sockaddr_to_raw(addr: *const libc::sockaddr) -> Option<SocketAddr> {
    // SAFETY: the caller guarantees a readable sockaddr, whose family field comes first.
    let family = c_int::from(unsafe { (*addr).sa_family });
    match family {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { std::ptr::read_unaligned(addr.cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { std::ptr::read_unaligned(addr.cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let addr = match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), u16::from_be(sin6.sin6_port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )),
            };
            Some(addr)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
