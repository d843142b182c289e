//! `corecast-bench load`: a closed-loop HTTP/1.1 client, like `wrk -c N` on one URL, but on the
//! same io_uring client as the viewer simulation: each connection sends a GET, reads the head,
//! counts the body away with `MSG_TRUNC` (no copy into user space) and asks again at once.
//!
//! Why it exists beside wrk: on a 2-core box the load generator shares the machine with the
//! server, and wrk copies every body byte out of the socket. In compare-nginx's 100 KB case
//! wrk's single core was 86–98 % busy while corecast's core was not (docs/capacity.md), so the
//! client, not the server, set the number. Discarding bodies in the kernel makes the client
//! cheap enough that the server under test is the bottleneck, for corecast and nginx alike.
//! wrk stays available (`--client wrk`) as the independent reference.
//!
//! Latency is per request, from handing the GET to the ring to the last body byte; TTFB is not
//! measured separately. Every response must be a 200 with the `Content-Length` of the first
//! one (the object must not change under the load), else it is counted as an error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use uring::{Completion, OpKind, Ring, RingConfig, Token, tcp_client_socket};

use crate::nginx::WrkResult;
use crate::response::parse_head;
use crate::{BenchError, MAX_CQ_ENTRIES};

/// What one closed-loop run does.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub target: SocketAddrV4,
    /// `Host` header value.
    pub host: String,
    pub path: String,
    pub connections: u32,
    pub duration: Duration,
    /// Worker threads, each with one ring and its share of the connections.
    pub threads: usize,
    /// Source addresses, round robin (empty: the kernel chooses).
    pub sources: Vec<Ipv4Addr>,
}

/// What one run measured. Requests count when their last byte arrived inside the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadResult {
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_s: f64,
    /// Head and body bytes per second.
    pub bytes_per_s: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Failed connects, sends or receives, closes by the server, bad heads.
    pub socket_errors: u64,
    /// Responses that were not a 200 of the expected length.
    pub bad_responses: u64,
}

impl LoadResult {
    /// The same figures in the shape compare-nginx records for wrk.
    pub fn as_wrk(&self) -> WrkResult {
        WrkResult {
            requests: self.requests,
            seconds: self.seconds,
            requests_per_s: self.requests_per_s,
            bytes_per_s: self.bytes_per_s,
            p50_ms: self.p50_ms,
            p75_ms: self.p75_ms,
            p90_ms: self.p90_ms,
            p99_ms: self.p99_ms,
            socket_errors: self.socket_errors,
            non_2xx_3xx: self.bad_responses,
        }
    }

    /// A wrk-like report, for logs.
    pub fn text(&self, config: &LoadConfig) -> String {
        format!(
            "corecast-bench load http://{}{} -c{} -t{} {:.1}s\n  {} requests in {:.2}s, \
             {:.2} MB/s\n  Requests/sec: {:.2}\n  Latency p50 {:.3}ms p75 {:.3}ms p90 {:.3}ms \
             p99 {:.3}ms max {:.3}ms\n  socket errors {}, bad responses {}\n",
            config.target,
            config.path,
            config.connections,
            config.threads,
            config.duration.as_secs_f64(),
            self.requests,
            self.seconds,
            self.bytes_per_s / 1e6,
            self.requests_per_s,
            self.p50_ms,
            self.p75_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.socket_errors,
            self.bad_responses
        )
    }
}

/// Runs the load and returns when every thread has stopped (after `duration`).
pub fn run_load(config: &LoadConfig) -> Result<LoadResult, BenchError> {
    let threads = config.threads.max(1);
    if config.connections == 0 {
        return Err(BenchError::Plan(
            "load needs at least one connection".into(),
        ));
    }
    let request = Bytes::from(format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: corecast-bench\r\n\r\n",
        config.path, config.host
    ));
    let start = Instant::now();
    let end = start + config.duration;
    let failed = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..threads)
        .map(|index| {
            let share = config.connections / threads as u32
                + u32::from((index as u32) < config.connections % threads as u32);
            let sources: Vec<Ipv4Addr> = config.sources.clone();
            let request = request.clone();
            let target = config.target;
            let failed = failed.clone();
            std::thread::Builder::new()
                .name(format!("load-{index}"))
                .spawn(move || {
                    let result = LoadWorker::new(share, target, request, sources, end)
                        .and_then(LoadWorker::run);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    result
                })
                .map_err(|e| BenchError::Plan(format!("spawning a load thread: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let mut latency = new_histogram();
    let mut totals = Totals::default();
    for (index, handle) in handles.into_iter().enumerate() {
        let (h, t) = handle
            .join()
            .map_err(|_| BenchError::WorkerPanicked(index))??;
        latency
            .add(&h)
            .map_err(|e| BenchError::Plan(format!("merging histograms: {e}")))?;
        totals.requests += t.requests;
        totals.bytes += t.bytes;
        totals.socket_errors += t.socket_errors;
        totals.bad_responses += t.bad_responses;
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    Ok(LoadResult {
        requests: totals.requests,
        seconds,
        requests_per_s: totals.requests as f64 / seconds,
        bytes_per_s: totals.bytes as f64 / seconds,
        p50_ms: ms(0.5),
        p75_ms: ms(0.75),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: latency.max() as f64 / 1000.0,
        socket_errors: totals.socket_errors,
        bad_responses: totals.bad_responses,
    })
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds, up to 2 minutes.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid constant bounds")
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    requests: u64,
    bytes: u64,
    socket_errors: u64,
    bad_responses: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    /// GET sent (or being sent), waiting for the head.
    Head,
    /// Counting the body away; `remaining` bytes to go.
    Body {
        remaining: u64,
    },
    /// The response is in but the GET's send has not completed yet.
    AwaitSend,
    /// Ops are being cancelled, then the slot closes and reconnects.
    Closing,
}

#[derive(Debug)]
struct Conn {
    state: State,
    ops: u8,
    sent_at: Instant,
    response_bytes: u64,
    source: Option<Ipv4Addr>,
}

struct LoadWorker {
    ring: Ring,
    conns: Vec<Conn>,
    target: SocketAddrV4,
    request: Bytes,
    end: Instant,
    cqes: Vec<Completion>,
    latency: Histogram<u64>,
    totals: Totals,
    /// Body length of the first good response; every later one must match.
    expected_length: Option<u64>,
}

fn token(op: OpKind, slot: u32) -> Token {
    // One connection per slot at a time, and a slot is reused only after all its ops completed.
    Token::new(op, slot, 0)
}

impl LoadWorker {
    fn new(
        connections: u32,
        target: SocketAddrV4,
        request: Bytes,
        sources: Vec<Ipv4Addr>,
        end: Instant,
    ) -> Result<LoadWorker, BenchError> {
        let slots = connections.max(1);
        let ring = Ring::new(&RingConfig {
            sq_entries: 4096,
            cq_entries: slots.saturating_mul(4).clamp(4096, MAX_CQ_ENTRIES),
            files: slots,
            recv_buffers: slots.clamp(256, 8192).next_power_of_two() as u16,
            recv_buffer_size: 2048,
            max_send_bytes: 64 * 1024,
        })?;
        let now = Instant::now();
        let conns = (0..connections)
            .map(|i| Conn {
                state: State::Connecting,
                ops: 0,
                sent_at: now,
                response_bytes: 0,
                source: (!sources.is_empty()).then(|| sources[i as usize % sources.len()]),
            })
            .collect();
        Ok(LoadWorker {
            ring,
            conns,
            target,
            request,
            end,
            cqes: Vec::with_capacity(4096),
            latency: new_histogram(),
            totals: Totals::default(),
            expected_length: None,
        })
    }

    fn run(mut self) -> Result<(Histogram<u64>, Totals), BenchError> {
        for slot in 0..self.conns.len() as u32 {
            self.open(slot)?;
        }
        loop {
            let now = Instant::now();
            if now >= self.end {
                break;
            }
            self.ring.wait(
                self.end
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            )?;
            let mut cqes = std::mem::take(&mut self.cqes);
            self.ring.reap(&mut cqes);
            let now = Instant::now();
            for c in cqes.drain(..) {
                if now < self.end {
                    self.on_completion(c, now)?;
                }
            }
            self.cqes = cqes;
        }
        // Dropping the ring cancels what is in flight and closes every connection.
        Ok((self.latency, self.totals))
    }

    fn open(&mut self, slot: u32) -> Result<(), BenchError> {
        let peer = SocketAddr::V4(self.target);
        let source = self.conns[slot as usize].source;
        self.ring.discard_send(slot);
        let socket = tcp_client_socket(peer, source.map(IpAddr::V4))
            .map_err(|e| BenchError::Plan(format!("client socket for {peer}: {e}")))?;
        self.ring.install_socket(slot, socket)?;
        self.ring
            .connect(slot, peer, token(OpKind::Connect, slot))?;
        let conn = &mut self.conns[slot as usize];
        conn.state = State::Connecting;
        conn.ops += 1;
        Ok(())
    }

    fn ask(&mut self, slot: u32, now: Instant) -> Result<(), BenchError> {
        self.ring.set_send_body(slot, self.request.clone())?;
        self.ring.send(slot, token(OpKind::Send, slot), false)?;
        self.ring.recv_provided(slot, token(OpKind::Recv, slot))?;
        let conn = &mut self.conns[slot as usize];
        conn.state = State::Head;
        conn.ops += 2;
        conn.sent_at = now;
        Ok(())
    }

    fn on_completion(&mut self, c: Completion, now: Instant) -> Result<(), BenchError> {
        let slot = c.token.slot();
        let Some(op) = c.token.op() else {
            return Ok(());
        };
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Ok(());
        };
        conn.ops = conn.ops.saturating_sub(1);
        if conn.state == State::Closing {
            if op == OpKind::Close {
                return self.open(slot);
            }
            if conn.ops == 0 {
                conn.ops += 1;
                self.ring.close_slot(slot, token(OpKind::Close, slot))?;
            }
            return Ok(());
        }
        match op {
            OpKind::Connect if c.result < 0 => self.fail(slot),
            OpKind::Connect => self.ask(slot, now),
            OpKind::Send if c.result < 0 => self.fail(slot),
            OpKind::Send => {
                if self.ring.send_pending(slot) > 0 {
                    conn.ops += 1;
                    self.ring.send(slot, token(OpKind::Send, slot), false)?;
                } else if conn.state == State::AwaitSend {
                    return self.ask(slot, now);
                }
                Ok(())
            }
            OpKind::Recv if c.result == -libc::ENOBUFS => {
                conn.ops += 1;
                self.ring.recv_provided(slot, token(OpKind::Recv, slot))?;
                Ok(())
            }
            OpKind::Recv => {
                let Some(buffer) = c.buffer.filter(|_| c.result > 0) else {
                    return self.fail(slot);
                };
                // A head split over two reads would need reassembly; servers send one short
                // head in one write, so treat it as an error rather than carry that code.
                let head = match parse_head(&buffer) {
                    Ok(Some(head)) => head,
                    Ok(None) | Err(_) => return self.fail(slot),
                };
                let body_here = buffer.len().saturating_sub(head.head_len) as u64;
                let expected = *self.expected_length.get_or_insert(head.content_length);
                if head.status != 200 || head.content_length != expected || head.close {
                    self.totals.bad_responses += 1;
                    return self.fail(slot);
                }
                if body_here > head.content_length {
                    return self.fail(slot);
                }
                let conn = &mut self.conns[slot as usize];
                conn.response_bytes = head.head_len as u64 + head.content_length;
                self.body(slot, head.content_length - body_here, now)
            }
            OpKind::RecvDiscard if c.result <= 0 => self.fail(slot),
            OpKind::RecvDiscard => {
                let State::Body { remaining } = conn.state else {
                    return Ok(());
                };
                self.body(slot, remaining.saturating_sub(c.result as u64), now)
            }
            _ => Ok(()),
        }
    }

    /// Discards what is left of the body, or records the response and asks again.
    fn body(&mut self, slot: u32, remaining: u64, now: Instant) -> Result<(), BenchError> {
        let conn = &mut self.conns[slot as usize];
        if remaining > 0 {
            conn.state = State::Body { remaining };
            conn.ops += 1;
            self.ring
                .recv_discard(slot, remaining, token(OpKind::RecvDiscard, slot))?;
            return Ok(());
        }
        let micros = now.saturating_duration_since(conn.sent_at).as_micros() as u64;
        self.latency.saturating_record(micros.max(1));
        self.totals.requests += 1;
        self.totals.bytes += conn.response_bytes;
        // The send's completion can come after the response; the next GET waits for it.
        if self.ring.send_in_flight(slot) {
            conn.state = State::AwaitSend;
            return Ok(());
        }
        self.ask(slot, now)
    }

    fn fail(&mut self, slot: u32) -> Result<(), BenchError> {
        self.totals.socket_errors += 1;
        let conn = &mut self.conns[slot as usize];
        conn.state = State::Closing;
        if conn.ops > 0 {
            conn.ops += 1;
            self.ring.cancel_slot(slot, token(OpKind::Cancel, slot))?;
        } else {
            conn.ops += 1;
            self.ring.close_slot(slot, token(OpKind::Close, slot))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A tiny blocking keep-alive server: answers every GET with `body`, counts requests.
    fn serve(body: Vec<u8>, requests: Arc<std::sync::atomic::AtomicU64>) -> SocketAddrV4 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let SocketAddr::V4(addr) = listener.local_addr().expect("addr") else {
            unreachable!("bound to IPv4")
        };
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let body = body.clone();
                let requests = requests.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut pending = Vec::new();
                    loop {
                        let Ok(n) = stream.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            requests.fetch_add(1, Ordering::Relaxed);
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            );
                            if stream.write_all(head.as_bytes()).is_err()
                                || stream.write_all(&body).is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn counts_whole_responses_of_a_real_server() {
        let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let body = vec![7u8; 100_000];
        let target = serve(body, served.clone());
        let config = LoadConfig {
            target,
            host: target.to_string(),
            path: "/x".into(),
            connections: 4,
            duration: Duration::from_millis(500),
            threads: 2,
            sources: Vec::new(),
        };
        let result = run_load(&config).expect("load runs");
        assert_eq!(result.socket_errors, 0, "{result:?}");
        assert_eq!(result.bad_responses, 0, "{result:?}");
        assert!(result.requests > 0, "{result:?}");
        // Completed responses never exceed what the server answered, and at most one request
        // per connection is still open at the end.
        let served = served.load(Ordering::Relaxed);
        assert!(result.requests <= served, "{} > {served}", result.requests);
        assert!(
            served - result.requests <= 4,
            "{served} vs {}",
            result.requests
        );
        let per_response = result.bytes_per_s * result.seconds / result.requests as f64;
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".len() as f64;
        assert!(
            (per_response - (100_000.0 + head)).abs() < 1e-6,
            "{per_response}"
        );
    }

    #[test]
    fn a_changing_length_is_a_bad_response() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let SocketAddr::V4(target) = listener.local_addr().expect("addr") else {
            unreachable!("bound to IPv4")
        };
        std::thread::spawn(move || {
            let mut len = 10usize;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    len += 1;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n{}",
                        "x".repeat(len)
                    );
                    if stream.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                }
            }
        });
        let config = LoadConfig {
            target,
            host: target.to_string(),
            path: "/x".into(),
            connections: 1,
            duration: Duration::from_millis(300),
            threads: 1,
            sources: Vec::new(),
        };
        let result = run_load(&config).expect("load runs");
        assert!(result.bad_responses > 0, "{result:?}");
        assert_eq!(
            result.requests, 1,
            "only the first response is good: {result:?}"
        );
    }
}
