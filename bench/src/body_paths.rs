//! `body-paths`: what one response body costs the server's CPU when it is copied into the
//! socket (what corecast's delivery does: one `SENDMSG` of head and body) versus when the
//! socket is handed page references, the way nginx's `sendfile` does. Three minimal HTTP
//! servers, one per way, serve the same bytes under the same closed-loop load
//! ([`crate::closed`], bodies discarded with `MSG_TRUNC`), alternating rounds, and the report
//! gives requests per server CPU-second and each way's ratio to the copy:
//!
//! - `send`: `IORING_OP_SENDMSG` of head and body on a direct descriptor (a copy of the body).
//! - `sendfile`: the body is a file in the temporary directory (the page cache of its file
//!   system); `send(head, MSG_MORE)` then `sendfile(2)` on a regular socket fd, as nginx does
//!   with its files. Sockets block, which on loopback with 256 connections never happens (the
//!   receiver drains at once).
//! - `sendfile-memfd`: the same from a memfd (shmem pages): what a segment store kept in memfds
//!   would do.
//! - `splice`: the body lives in a memfd; linked `SEND(head, MSG_MORE)` → `SPLICE(memfd →
//!   pipe)` → `SPLICE(pipe → socket)` on a direct descriptor, one pipe per connection (a real
//!   server would need a pool: pipes are file descriptors). io_uring runs every splice in an
//!   io-wq worker thread (kernel `io_uring/splice.c` never issues it inline), limited here to
//!   one worker so the server stays on its one CPU.
//!
//! The servers answer any request with the body, one request per connection at a time (the
//! closed loop never pipelines); they stop by themselves after `seconds`. The `send` server
//! given a recorded response ([`Response::Recorded`], `--response FILE`) is compare-nginx's copy
//! floor: corecast's own bytes, sent with nothing else around them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};
use serde::Serialize;

use crate::BenchError;
use crate::closed::{LoadConfig, run_load};
use crate::compare_run::{Proc, free_ports, pin_self, wait_for_http};
use crate::procstat::{clock_ticks_per_second, sample_process};

/// How a server puts the body into the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BodyPath {
    Send,
    Sendfile,
    SendfileMemfd,
    Splice,
}

impl BodyPath {
    pub fn name(self) -> &'static str {
        match self {
            BodyPath::Send => "send",
            BodyPath::Sendfile => "sendfile",
            BodyPath::SendfileMemfd => "sendfile-memfd",
            BodyPath::Splice => "splice",
        }
    }

    fn uses_sendfile(self) -> bool {
        matches!(self, BodyPath::Sendfile | BodyPath::SendfileMemfd)
    }
}

/// Connections one server holds at most (the load uses 256).
const MAX_CONNS: usize = 2048;
const RECV_BUF: usize = 4096;
const ACCEPT: u64 = u64::MAX;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Recv = 1,
    Sent = 2,
    Linked = 3,
    Close = 4,
}

fn user_data(conn: usize, op: Op) -> u64 {
    ((conn as u64) << 8) | op as u64
}

/// One connection's buffers. Boxed and never moved while an op points into them.
struct Conn {
    buf: Box<[u8; RECV_BUF]>,
    got: usize,
    /// The request said `Connection: close` (the readiness probe does).
    close_after: bool,
    iov: [libc::iovec; 2],
    msg: libc::msghdr,
    /// `splice` only: [read end, write end].
    pipe: Option<[OwnedFd; 2]>,
}

impl Conn {
    fn new() -> Box<Conn> {
        Box::new(Conn {
            buf: Box::new([0; RECV_BUF]),
            got: 0,
            close_after: false,
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 2],
            // SAFETY: msghdr is plain data; all-zero is "no name, no iovecs, no control".
            msg: unsafe { std::mem::zeroed() },
            pipe: None,
        })
    }
}

fn os_error(what: &str) -> BenchError {
    BenchError::Plan(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// A memfd holding `body`: shmem pages that `sendfile` and `splice` hand out by reference.
fn body_memfd(body: &[u8]) -> Result<OwnedFd, BenchError> {
    // SAFETY: the name is a NUL-terminated literal; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"body".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(os_error("memfd_create"));
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut written = 0;
    while written < body.len() {
        let rest = &body[written..];
        // SAFETY: `rest` is valid for `rest.len()` bytes; the fd is ours.
        let n = unsafe { libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return Err(os_error("writing the memfd"));
        }
        written += n as usize;
    }
    Ok(fd)
}

/// A file in the temporary directory holding `body`, read back through the page cache; the
/// file is unlinked at once (the open descriptor keeps it).
fn body_file(body: &[u8], port: u16) -> Result<OwnedFd, BenchError> {
    let path = std::env::temp_dir().join(format!("corecast-body-{}-{port}", std::process::id()));
    let io = |source| BenchError::Output {
        path: path.display().to_string(),
        source,
    };
    std::fs::write(&path, body).map_err(io)?;
    let file = std::fs::File::open(&path).map_err(io)?;
    std::fs::remove_file(&path).map_err(io)?;
    Ok(OwnedFd::from(file))
}

/// A pipe that holds `bytes` at once (`F_SETPIPE_SZ`), so one splice moves a whole body.
fn pipe_for(bytes: usize) -> Result<[OwnedFd; 2], BenchError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os_error("pipe2"));
    }
    // SAFETY: pipe2 returned two new fds that nothing else owns.
    let pipe = unsafe { [OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])] };
    let want = libc::c_int::try_from(bytes.next_power_of_two().max(4096)).unwrap_or(i32::MAX);
    // SAFETY: F_SETPIPE_SZ takes an int and touches no memory of ours.
    let got = unsafe { libc::fcntl(pipe[1].as_raw_fd(), libc::F_SETPIPE_SZ, want) };
    if got < 0 || (got as usize) < bytes {
        return Err(BenchError::Plan(format!(
            "a pipe cannot hold a {bytes} B body (F_SETPIPE_SZ gave {got}; see \
             /proc/sys/fs/pipe-max-size)"
        )));
    }
    Ok(pipe)
}

/// What a body-path server answers every request with.
#[derive(Debug, Clone)]
pub enum Response {
    /// A `size`-byte body of letters under a minimal head.
    Synthetic { size: usize },
    /// Exactly these bytes (head, blank line, body), e.g. another server's recorded response:
    /// compare-nginx's copy floor sends corecast's own response this way.
    Recorded(Vec<u8>),
}

impl Response {
    /// (head, body).
    fn parts(self) -> Result<(Vec<u8>, Vec<u8>), BenchError> {
        match self {
            Response::Synthetic { size } => Ok((
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {size}\r\n\r\n"
                )
                .into_bytes(),
                (0..size).map(|i| b'a' + (i % 26) as u8).collect(),
            )),
            Response::Recorded(mut raw) => {
                let end = raw
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .ok_or_else(|| {
                        BenchError::Plan("the recorded response has no end of head".into())
                    })?
                    + 4;
                let body = raw.split_off(end);
                Ok((raw, body))
            }
        }
    }
}

/// Runs one server (the hidden `body-path-server` subcommand) until `seconds` have passed.
pub fn serve(
    path: BodyPath,
    response: Response,
    port: u16,
    seconds: u64,
) -> Result<(), BenchError> {
    let (head, body) = response.parts()?;
    let size = body.len();
    let memfd = match path {
        BodyPath::Sendfile => body_file(&body, port)?,
        _ => body_memfd(&body)?,
    };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .map_err(|e| BenchError::Plan(format!("binding 127.0.0.1:{port}: {e}")))?;
    let one: libc::c_int = 1;
    // SAFETY: a valid int option for a socket we own; accepted sockets inherit TCP_NODELAY.
    unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(8192)
        .build(4096)
        .map_err(|e| BenchError::Plan(format!("io_uring_setup: {e}")))?;
    let direct = !path.uses_sendfile();
    if direct {
        ring.submitter()
            .register_files_sparse(MAX_CONNS as u32)
            .map_err(|e| BenchError::Plan(format!("registering the file table: {e}")))?;
    }
    if path == BodyPath::Splice {
        let mut workers = [1, 1];
        ring.submitter()
            .register_iowq_max_workers(&mut workers)
            .map_err(|e| BenchError::Plan(format!("limiting io-wq workers: {e}")))?;
    }
    let mut conns: Vec<Option<Box<Conn>>> = (0..MAX_CONNS).map(|_| None).collect();
    let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
        .allocate_file_index(direct)
        .build()
        .user_data(ACCEPT);
    push(&mut ring, &[accept])?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let wait = types::Timespec::new().nsec(100_000_000);
    let mut cqes = Vec::new();
    while Instant::now() < until {
        let args = types::SubmitArgs::new().timespec(&wait);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => return Err(BenchError::Plan(format!("io_uring_enter: {e}"))),
        }
        cqes.clear();
        cqes.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for &(data, result) in &cqes {
            if data == ACCEPT {
                if result >= 0 {
                    open(&mut ring, &mut conns, result, direct, path, size)?;
                }
                continue;
            }
            let index = (data >> 8) as usize;
            let op = data & 0xff;
            if op == Op::Recv as u64 {
                on_recv(
                    &mut ring, &mut conns, index, result, direct, path, &head, &body, &memfd,
                )?;
            } else if op == Op::Sent as u64 {
                let expected = if path == BodyPath::Send {
                    head.len() + size
                } else {
                    size
                };
                let close_after = matches!(conns.get(index), Some(Some(c)) if c.close_after);
                if result < 0 || (result as usize) < expected || close_after {
                    close(&mut ring, &mut conns, index, direct)?;
                } else {
                    arm_recv(&mut ring, &mut conns, index, direct)?;
                }
            } else if op == Op::Close as u64
                && let Some(slot) = conns.get_mut(index)
            {
                *slot = None;
            }
            // Op::Linked: only failures post a CQE (SKIP_SUCCESS); the chain's last op then
            // completes with -ECANCELED and closes the connection.
        }
    }
    Ok(())
}

/// SAFETY contract for callers: every pointer in `entries` stays valid until its completion.
fn push(ring: &mut IoUring, entries: &[squeue::Entry]) -> Result<(), BenchError> {
    let free = {
        let sq = ring.submission();
        sq.capacity() - sq.len()
    };
    if free < entries.len() {
        ring.submit()
            .map_err(|e| BenchError::Plan(format!("io_uring_enter: {e}")))?;
    }
    // SAFETY: the entries point into `Conn`s (boxed, kept until their close completes), the
    // head and body (alive for the whole `serve`) or name no memory at all.
    unsafe { ring.submission().push_multiple(entries) }
        .map_err(|_| BenchError::Plan("submission queue full".into()))
}

fn open(
    ring: &mut IoUring,
    conns: &mut [Option<Box<Conn>>],
    index: i32,
    direct: bool,
    path: BodyPath,
    size: usize,
) -> Result<(), BenchError> {
    let index = index as usize;
    let Some(slot) = conns.get_mut(index) else {
        // A regular fd above the table: nothing to serve it with.
        // SAFETY: the accept gave us this fd; nothing else owns it.
        drop(unsafe { OwnedFd::from_raw_fd(index as RawFd) });
        return Ok(());
    };
    let mut conn = Conn::new();
    if path == BodyPath::Splice {
        conn.pipe = Some(pipe_for(size)?);
    }
    *slot = Some(conn);
    arm_recv(ring, conns, index, direct)
}

fn arm_recv(
    ring: &mut IoUring,
    conns: &mut [Option<Box<Conn>>],
    index: usize,
    direct: bool,
) -> Result<(), BenchError> {
    let Some(Some(conn)) = conns.get_mut(index) else {
        return Ok(());
    };
    let rest = &mut conn.buf[conn.got..];
    let (ptr, len) = (rest.as_mut_ptr(), rest.len() as u32);
    let entry = if direct {
        opcode::Recv::new(types::Fixed(index as u32), ptr, len).build()
    } else {
        opcode::Recv::new(types::Fd(index as RawFd), ptr, len).build()
    };
    push(ring, &[entry.user_data(user_data(index, Op::Recv))])
}

fn close(
    ring: &mut IoUring,
    conns: &mut [Option<Box<Conn>>],
    index: usize,
    direct: bool,
) -> Result<(), BenchError> {
    if !matches!(conns.get(index), Some(Some(_))) {
        return Ok(());
    }
    let entry = if direct {
        opcode::Close::new(types::Fixed(index as u32)).build()
    } else {
        opcode::Close::new(types::Fd(index as RawFd)).build()
    };
    push(ring, &[entry.user_data(user_data(index, Op::Close))])
}

#[allow(clippy::too_many_arguments)]
fn on_recv(
    ring: &mut IoUring,
    conns: &mut [Option<Box<Conn>>],
    index: usize,
    result: i32,
    direct: bool,
    path: BodyPath,
    head: &[u8],
    body: &[u8],
    memfd: &OwnedFd,
) -> Result<(), BenchError> {
    let Some(Some(conn)) = conns.get_mut(index) else {
        return Ok(());
    };
    if result <= 0 {
        return close(ring, conns, index, direct);
    }
    conn.got += result as usize;
    let complete = conn.buf[..conn.got].windows(4).any(|w| w == b"\r\n\r\n");
    if !complete {
        if conn.got == RECV_BUF {
            return close(ring, conns, index, direct);
        }
        return arm_recv(ring, conns, index, direct);
    }
    conn.close_after = conn.buf[..conn.got]
        .windows(17)
        .any(|w| w.eq_ignore_ascii_case(b"connection: close"));
    conn.got = 0;
    let size = body.len() as u32;
    match path {
        BodyPath::Send => {
            conn.iov = [
                libc::iovec {
                    iov_base: head.as_ptr() as *mut libc::c_void,
                    iov_len: head.len(),
                },
                libc::iovec {
                    iov_base: body.as_ptr() as *mut libc::c_void,
                    iov_len: body.len(),
                },
            ];
            conn.msg.msg_iov = conn.iov.as_mut_ptr();
            conn.msg.msg_iovlen = 2;
            let entry = opcode::SendMsg::new(types::Fixed(index as u32), &conn.msg)
                .flags(libc::MSG_WAITALL as u32)
                .build()
                .user_data(user_data(index, Op::Sent));
            push(ring, &[entry])
        }
        BodyPath::Sendfile | BodyPath::SendfileMemfd => {
            let fd = index as RawFd;
            // SAFETY: `head` is valid for its length; `fd` is a socket this server accepted.
            let sent = unsafe { libc::send(fd, head.as_ptr().cast(), head.len(), libc::MSG_MORE) };
            if sent != head.len() as isize {
                return close(ring, conns, index, direct);
            }
            let mut offset: libc::off_t = 0;
            while (offset as usize) < body.len() {
                let left = body.len() - offset as usize;
                // SAFETY: both fds are open and ours; `offset` is a valid off_t we own.
                let n = unsafe { libc::sendfile(fd, memfd.as_raw_fd(), &mut offset, left) };
                if n <= 0 {
                    return close(ring, conns, index, direct);
                }
            }
            if conn.close_after {
                return close(ring, conns, index, direct);
            }
            arm_recv(ring, conns, index, direct)
        }
        BodyPath::Splice => {
            let Some([read_end, write_end]) = &conn.pipe else {
                return close(ring, conns, index, direct);
            };
            let link = squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS;
            let socket = types::Fixed(index as u32);
            let head_op = opcode::Send::new(socket, head.as_ptr(), head.len() as u32)
                .flags(libc::MSG_MORE | libc::MSG_WAITALL)
                .build()
                .flags(link)
                .user_data(user_data(index, Op::Linked));
            let fill = opcode::Splice::new(
                types::Fd(memfd.as_raw_fd()),
                0,
                types::Fd(write_end.as_raw_fd()),
                -1,
                size,
            )
            .build()
            .flags(link)
            .user_data(user_data(index, Op::Linked));
            let drain = opcode::Splice::new(types::Fd(read_end.as_raw_fd()), -1, socket, -1, size)
                .build()
                .user_data(user_data(index, Op::Sent));
            push(ring, &[head_op, fill, drain])
        }
    }
}

/// What `run_body_paths` does.
#[derive(Debug, Clone)]
pub struct BodyPathsConfig {
    /// This program, started again as `body-path-server`.
    pub exe: PathBuf,
    pub sizes: Vec<usize>,
    pub paths: Vec<BodyPath>,
    pub rounds: u32,
    pub seconds: u64,
    pub connections: u32,
    pub server_cpu: usize,
    pub load_cpu: usize,
}

/// One server under one load.
#[derive(Debug, Clone, Serialize)]
pub struct BodyPathRun {
    pub path: BodyPath,
    pub size: usize,
    pub round: u32,
    pub requests_per_s: f64,
    pub p99_ms: f64,
    /// The server process's CPU (all its threads, io-wq workers included), in cores.
    pub server_cores: f64,
    pub requests_per_cpu_s: f64,
    pub errors: u64,
}

/// Medians of one way at one size, with its ratio to `send` at that size.
#[derive(Debug, Clone, Serialize)]
pub struct BodyPathSummary {
    pub path: BodyPath,
    pub size: usize,
    pub requests_per_s: f64,
    pub requests_per_cpu_s: f64,
    pub per_cpu_vs_send: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BodyPathsReport {
    pub runs: Vec<BodyPathRun>,
    pub summary: Vec<BodyPathSummary>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Runs every (size, path) for `rounds` rounds, paths alternating inside each round.
pub fn run_body_paths(config: &BodyPathsConfig) -> Result<BodyPathsReport, BenchError> {
    pin_self(&[config.load_cpu])?;
    let log_dir = std::env::temp_dir().join(format!("corecast-body-paths-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).map_err(|source| BenchError::Output {
        path: log_dir.display().to_string(),
        source,
    })?;
    let mut runs = Vec::new();
    for &size in &config.sizes {
        for round in 1..=config.rounds {
            for &path in &config.paths {
                runs.push(run_one(config, path, size, round, &log_dir)?);
                let last = runs.last().expect("just pushed");
                eprintln!(
                    "body-paths: {} B {} round {round}: {:.0} req/s, {:.2} cores, {:.0} req per \
                     CPU-second",
                    size,
                    path.name(),
                    last.requests_per_s,
                    last.server_cores,
                    last.requests_per_cpu_s
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&log_dir);
    let mut summary = Vec::new();
    for &size in &config.sizes {
        let of = |path: BodyPath, field: fn(&BodyPathRun) -> f64| {
            median(
                runs.iter()
                    .filter(|r| r.size == size && r.path == path)
                    .map(field)
                    .collect(),
            )
        };
        let send_per_cpu = of(BodyPath::Send, |r| r.requests_per_cpu_s);
        for &path in &config.paths {
            let per_cpu = of(path, |r| r.requests_per_cpu_s);
            summary.push(BodyPathSummary {
                path,
                size,
                requests_per_s: of(path, |r| r.requests_per_s),
                requests_per_cpu_s: per_cpu,
                per_cpu_vs_send: (config.paths.contains(&BodyPath::Send) && send_per_cpu > 0.0)
                    .then(|| per_cpu / send_per_cpu),
            });
        }
    }
    Ok(BodyPathsReport { runs, summary })
}

fn run_one(
    config: &BodyPathsConfig,
    path: BodyPath,
    size: usize,
    round: u32,
    log_dir: &std::path::Path,
) -> Result<BodyPathRun, BenchError> {
    let port = free_ports(1)?[0];
    let args: Vec<String> = [
        "body-path-server",
        "--path",
        path.name(),
        "--size",
        &size.to_string(),
        "--port",
        &port.to_string(),
        "--seconds",
        &(config.seconds + 30).to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = log_dir.join(format!("{}-{size}-{round}.log", path.name()));
    let server = Proc::spawn(
        path.name(),
        &config.exe,
        &args,
        Some(&[config.server_cpu]),
        &log,
    )?;
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    wait_for_http(SocketAddr::V4(addr), &server, Duration::from_secs(10))?;
    let before = sample_process(server.pid())
        .ok_or_else(|| BenchError::Plan(format!("{} server has no /proc entry", path.name())))?;
    let load = run_load(&LoadConfig {
        target: addr,
        host: addr.to_string(),
        path: "/body".into(),
        connections: config.connections,
        duration: Duration::from_secs(config.seconds),
        threads: 1,
        sources: Vec::new(),
    })?;
    let after = sample_process(server.pid())
        .ok_or_else(|| BenchError::Plan(format!("{} server exited during the run", path.name())))?;
    drop(server);
    let elapsed = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let server_cores =
        after.ticks.saturating_sub(before.ticks) as f64 / clock_ticks_per_second() / elapsed;
    Ok(BodyPathRun {
        path,
        size,
        round,
        requests_per_s: load.requests_per_s,
        p99_ms: load.p99_ms,
        server_cores,
        requests_per_cpu_s: if server_cores > 0.0 {
            load.requests_per_s / server_cores
        } else {
            0.0
        },
        errors: load.socket_errors + load.bad_responses,
    })
}

impl BodyPathsReport {
    pub fn table(&self) -> String {
        let mut out = String::from(
            "size B     path           |   req/s  req/CPU-s  vs send\n\
             ---------------------------+---------------------------\n",
        );
        for s in &self.summary {
            out.push_str(&format!(
                "{:<10} {:<14} | {:>7.0} {:>10.0}  {}\n",
                s.size,
                s.path.name(),
                s.requests_per_s,
                s.requests_per_cpu_s,
                s.per_cpu_vs_send.map_or("-".into(), |r| format!("{r:.2}x"))
            ));
        }
        out
    }
}
