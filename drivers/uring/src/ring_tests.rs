//! Tests against the running kernel. Each skips with a printed reason where io_uring is
//! unavailable (seccomp, old kernel) instead of failing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{Completion, OpKind, Ring, RingConfig, Token, UringError, Waker, listen_reuseport};

pub(crate) fn ring_or_skip(config: &RingConfig) -> Option<Ring> {
    match Ring::new(config) {
        Ok(ring) => Some(ring),
        Err(e @ (UringError::Unavailable { .. } | UringError::Unsupported { .. })) => {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("ring setup failed: {e}"),
    }
}

pub(crate) fn small_config() -> RingConfig {
    RingConfig {
        sq_entries: 64,
        cq_entries: 256,
        files: 8,
        recv_buffers: 4,
        recv_buffer_size: 64,
        max_send_bytes: 1 << 20,
    }
}

/// Waits for the next completion of `op`; completions of other ops wait in `pending`.
pub(crate) fn next(ring: &mut Ring, op: OpKind, pending: &mut Vec<Completion>) -> Completion {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(index) = pending.iter().position(|c| c.token.op() == Some(op)) {
            return pending.remove(index);
        }
        assert!(Instant::now() < deadline, "no {op:?} completion within 5 s");
        ring.wait(Duration::from_millis(50)).expect("wait");
        ring.reap(pending);
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[test]
fn probe_reports_setup() {
    match crate::probe() {
        Ok(report) => {
            assert_eq!(report.files, 8);
            assert!(report.sq_entries >= 8);
            assert_eq!(report.defer_taskrun, report.fallback_reason.is_none());
        }
        Err(e) => eprintln!("skipping: {e}"),
    }
}

#[test]
fn accepts_receives_into_recycled_buffers_and_sends_head_plus_body() {
    let Some(mut ring) = ring_or_skip(&small_config()) else {
        return;
    };
    let listener = listen_reuseport(loopback(), 16).expect("listen");
    let addr = listener.local_addr().expect("addr");
    ring.accept_multishot(listener.as_raw_fd(), Token::new(OpKind::Accept, 0, 0))
        .expect("accept");
    let mut client = TcpStream::connect(addr).expect("connect");
    let mut other = Vec::new();
    let accepted = next(&mut ring, OpKind::Accept, &mut other);
    assert!(accepted.more, "multishot accept stays armed");
    let slot = u32::try_from(accepted.result).expect("a slot, not an error");
    ring.recv_multishot(slot, Token::new(OpKind::Recv, slot, 7))
        .expect("recv");

    // More messages than the pool has buffers: only works if dropped buffers go back.
    for round in 0..10u8 {
        client.write_all(&[b'a' + round; 10]).expect("write");
        let received = next(&mut ring, OpKind::Recv, &mut other);
        assert_eq!(received.token.generation(), 7);
        assert!(received.more, "round {round}: recv stays armed");
        let buffer = received.buffer.expect("recv completion carries its buffer");
        assert_eq!(&buffer[..], &[b'a' + round; 10]);
    }

    let body = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    ring.send_head(slot)
        .expect("no send in flight")
        .extend_from_slice(b"HEAD:");
    ring.set_send_body(slot, body.clone()).expect("body");
    assert_eq!(ring.send_pending(slot), 100_005);
    ring.send(slot, Token::new(OpKind::Send, slot, 7), false)
        .expect("send");
    assert!(
        ring.send_head(slot).is_none(),
        "head is the kernel's while in flight"
    );
    assert!(
        ring.close_slot(slot, Token::new(OpKind::Close, slot, 7))
            .is_err()
    );
    ring.submit().expect("submit");
    let mut got = vec![0u8; 100_005];
    client.read_exact(&mut got).expect("read");
    assert_eq!(&got[..5], b"HEAD:");
    assert_eq!(&got[5..], &body[..]);
    let sent = next(&mut ring, OpKind::Send, &mut other);
    assert_eq!(sent.result, 100_005);
    assert_eq!(ring.send_pending(slot), 0);
    assert_eq!(ring.counters().sends, 1);
    assert_eq!(ring.counters().short_sends, 0);

    ring.cancel_slot(slot, Token::new(OpKind::Cancel, slot, 7))
        .expect("cancel");
    let _ = next(&mut ring, OpKind::Cancel, &mut other);
    ring.close_slot(slot, Token::new(OpKind::Close, slot, 7))
        .expect("close");
    let closed = next(&mut ring, OpKind::Close, &mut other);
    assert_eq!(closed.result, 0);
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).expect("eof"), 0);
}

#[test]
fn full_table_refuses_with_enfile_and_accepts_again_after_a_close() {
    let config = RingConfig {
        files: 2,
        ..small_config()
    };
    let Some(mut ring) = ring_or_skip(&config) else {
        return;
    };
    let listener = listen_reuseport(loopback(), 16).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let accept = Token::new(OpKind::Accept, 0, 0);
    ring.accept_multishot(listener.as_raw_fd(), accept)
        .expect("accept");
    let mut clients: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let mut pending = Vec::new();
    let mut results = Vec::new();
    for _ in 0..3 {
        let accepted = next(&mut ring, OpKind::Accept, &mut pending);
        results.push(accepted.result);
        // The kernel may end the multishot accept on ENFILE: the caller re-arms it.
        if !accepted.more {
            ring.accept_multishot(listener.as_raw_fd(), accept)
                .expect("re-arm");
        }
    }
    results.sort();
    assert_eq!(results, vec![-libc::ENFILE, 0, 1]);
    // The refused client was closed by the kernel: it reads EOF (or a reset).
    // A still-open socket times out with WouldBlock instead.
    let refused = clients
        .iter_mut()
        .filter_map(|client| {
            client
                .set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            match client.read(&mut [0u8; 1]) {
                Ok(0) => Some(()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(()),
                _ => None,
            }
        })
        .count();
    assert_eq!(refused, 1);

    ring.close_slot(0, Token::new(OpKind::Close, 0, 0))
        .expect("close");
    assert_eq!(next(&mut ring, OpKind::Close, &mut pending).result, 0);
    let _late = TcpStream::connect(addr).expect("connect");
    let accepted = next(&mut ring, OpKind::Accept, &mut pending);
    assert_eq!(accepted.result, 0, "the freed slot is used again");
}

#[test]
fn dropping_a_ring_with_a_stalled_send_drains_it() {
    let Some(mut ring) = ring_or_skip(&small_config()) else {
        return;
    };
    let listener = listen_reuseport(loopback(), 16).expect("listen");
    let addr = listener.local_addr().expect("addr");
    ring.accept_multishot(listener.as_raw_fd(), Token::new(OpKind::Accept, 0, 0))
        .expect("accept");
    let client = TcpStream::connect(addr).expect("connect");
    let mut other = Vec::new();
    let slot = next(&mut ring, OpKind::Accept, &mut other).result as u32;
    // Larger than both socket buffers: the send stays in flight while the client never reads.
    let body = Bytes::from(vec![7u8; 64 << 20]);
    ring.set_send_body(slot, body.clone()).expect("body");
    ring.send(slot, Token::new(OpKind::Send, slot, 0), false)
        .expect("send");
    ring.submit().expect("submit");
    std::thread::sleep(Duration::from_millis(50));
    assert!(ring.send_in_flight(slot));
    drop(ring);
    // The ring released its view of the body when the cancelled send completed.
    assert!(body.is_unique(), "the ring still holds the body");
    drop(client);
}

#[test]
fn waker_completes_the_armed_read() {
    let Some(mut ring) = ring_or_skip(&small_config()) else {
        return;
    };
    let waker = Waker::new().expect("eventfd");
    ring.arm_wake(&waker, Token::new(OpKind::Wake, 0, 0))
        .expect("arm");
    let remote = waker.clone();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        remote.wake();
    });
    let mut other = Vec::new();
    let woken = next(&mut ring, OpKind::Wake, &mut other);
    assert_eq!(woken.result, 8);
    thread.join().expect("waker thread");
    ring.arm_wake(&waker, Token::new(OpKind::Wake, 0, 0))
        .expect("re-arm");
}
