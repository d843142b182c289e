//! The client side against the running kernel, with a std listener as the peer. Each test
//! skips with a printed reason where io_uring is unavailable.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use bytes::Bytes;

use crate::ring_tests::{next, ring_or_skip, small_config};
use crate::{OpKind, Token, UringError, tcp_client_socket};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn connects_an_installed_socket_and_receives_three_ways() {
    let Some(mut ring) = ring_or_skip(&small_config()) else {
        return;
    };
    let listener = TcpListener::bind((LOCALHOST, 0)).expect("listen");
    let peer = listener.local_addr().expect("addr");
    let slot = 3;
    let socket = tcp_client_socket(peer, Some(LOCALHOST)).expect("socket");
    ring.install_socket(slot, socket).expect("install");
    ring.connect(slot, peer, Token::new(OpKind::Connect, slot, 1))
        .expect("connect");
    let mut pending = Vec::new();
    let connected = next(&mut ring, OpKind::Connect, &mut pending);
    assert_eq!(connected.result, 0, "connect failed");
    let (mut server, from) = listener.accept().expect("accept");
    assert_eq!(from.ip(), LOCALHOST, "bound to the source address");

    // A request from the ring, as the bench sends one: head buffer plus shared body.
    ring.send_head(slot)
        .expect("no send in flight")
        .extend_from_slice(b"GET / ");
    ring.set_send_body(slot, Bytes::from_static(b"HTTP/1.1\r\n\r\n"))
        .expect("body");
    ring.send(slot, Token::new(OpKind::Send, slot, 1), false)
        .expect("send");
    assert_eq!(next(&mut ring, OpKind::Send, &mut pending).result, 18);
    let mut request = [0u8; 18];
    server.read_exact(&mut request).expect("read request");
    assert_eq!(&request, b"GET / HTTP/1.1\r\n\r\n");

    // One-shot recv into the buffer ring: the completion lends the buffer.
    server.write_all(b"HTTP/1.1 200 OK\r\n").expect("write");
    ring.recv_provided(slot, Token::new(OpKind::Recv, slot, 1))
        .expect("recv");
    let head = next(&mut ring, OpKind::Recv, &mut pending);
    assert!(!head.more, "one-shot recv is not multishot");
    assert_eq!(
        &head.buffer.expect("a provided buffer")[..],
        b"HTTP/1.1 200 OK\r\n"
    );

    // MSG_TRUNC: exactly the bytes asked for go, uncopied; what follows stays.
    let body: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    server.write_all(&body).expect("write body");
    server.write_all(b"tail").expect("write tail");
    let mut remaining = body.len() as u64;
    while remaining > 0 {
        let asked = ring
            .recv_discard(slot, remaining, Token::new(OpKind::RecvDiscard, slot, 1))
            .expect("discard");
        assert!(u64::from(asked) <= remaining);
        let consumed = next(&mut ring, OpKind::RecvDiscard, &mut pending).result;
        assert!(consumed > 0, "recv_discard: {consumed}");
        remaining -= consumed as u64;
    }

    // Recv appended to the slot's buffer, after what is already there.
    ring.received_mut(slot)
        .expect("no recv in flight")
        .extend_from_slice(b"kept:");
    ring.recv_into(slot, 64, Token::new(OpKind::RecvInto, slot, 1))
        .expect("recv_into");
    assert!(
        ring.received_mut(slot).is_none(),
        "the kernel's while in flight"
    );
    assert!(
        ring.recv_into(slot, 64, Token::new(OpKind::RecvInto, slot, 1))
            .is_err(),
        "one recv into a buffer at a time"
    );
    assert!(
        ring.close_slot(slot, Token::new(OpKind::Close, slot, 1))
            .is_err(),
        "no close under a recv into the slot's buffer"
    );
    assert_eq!(next(&mut ring, OpKind::RecvInto, &mut pending).result, 4);
    assert_eq!(
        ring.received_mut(slot).expect("released").as_slice(),
        b"kept:tail"
    );

    ring.close_slot(slot, Token::new(OpKind::Close, slot, 1))
        .expect("close");
    assert_eq!(next(&mut ring, OpKind::Close, &mut pending).result, 0);
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(server.read(&mut [0u8; 1]).expect("eof"), 0);
}

#[test]
fn connect_to_a_closed_port_completes_with_the_errno() {
    let Some(mut ring) = ring_or_skip(&small_config()) else {
        return;
    };
    // Bind then drop: nothing listens on this port any more.
    let peer = TcpListener::bind((LOCALHOST, 0))
        .expect("bind")
        .local_addr()
        .expect("addr");
    let socket = tcp_client_socket(peer, None).expect("socket");
    ring.install_socket(0, socket).expect("install");
    ring.connect(0, peer, Token::new(OpKind::Connect, 0, 0))
        .expect("connect");
    let mut pending = Vec::new();
    let refused = next(&mut ring, OpKind::Connect, &mut pending);
    assert_eq!(refused.error(), Some(libc::ECONNREFUSED));
}

#[test]
fn refuses_mislabelled_tokens_and_slots_outside_the_table() {
    let Some(mut ring) = ring_or_skip(&small_config()) else {
        return;
    };
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
    let wrong_kind = ring.connect(1, peer, Token::new(OpKind::Recv, 1, 0));
    assert!(matches!(wrong_kind, Err(UringError::TokenMismatch { .. })));
    let wrong_slot = ring.recv_into(1, 16, Token::new(OpKind::RecvInto, 2, 0));
    assert!(matches!(wrong_slot, Err(UringError::TokenMismatch { .. })));
    let wrong_send = ring.send(1, Token::new(OpKind::Close, 1, 0), false);
    assert!(matches!(wrong_send, Err(UringError::TokenMismatch { .. })));
    let outside = small_config().files;
    let socket = tcp_client_socket(peer, None).expect("socket");
    assert!(matches!(
        ring.install_socket(outside, socket),
        Err(UringError::SlotMisuse { .. })
    ));
    assert!(ring.received_mut(outside).is_none());
    assert_eq!(ring.in_flight(), 0, "nothing was pushed");
}

#[test]
fn dropping_a_ring_with_client_ops_in_flight_drains_and_closes() {
    let Some(mut ring) = ring_or_skip(&small_config()) else {
        return;
    };
    let listener = TcpListener::bind((LOCALHOST, 0)).expect("listen");
    let peer = listener.local_addr().expect("addr");
    let socket = tcp_client_socket(peer, None).expect("socket");
    ring.install_socket(0, socket).expect("install");
    ring.connect(0, peer, Token::new(OpKind::Connect, 0, 0))
        .expect("connect");
    let mut pending = Vec::new();
    assert_eq!(next(&mut ring, OpKind::Connect, &mut pending).result, 0);
    let (mut server, _) = listener.accept().expect("accept");
    // Nothing is ever sent: both recvs stay in flight until the drop cancels them.
    ring.recv_into(0, 64, Token::new(OpKind::RecvInto, 0, 0))
        .expect("recv_into");
    ring.recv_discard(0, 64, Token::new(OpKind::RecvDiscard, 0, 0))
        .expect("recv_discard");
    ring.submit().expect("submit");
    assert_eq!(ring.in_flight(), 2);
    let started = std::time::Instant::now();
    drop(ring);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "drained by cancelling, not by the 2 s deadline"
    );
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // The ring's teardown runs as task work on this thread, which can interrupt a socket read
    // that has a timeout (EINTR instead of a restart): read again.
    let read = loop {
        match server.read(&mut [0u8; 1]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    assert_eq!(read.expect("eof"), 0, "the table closed it");
}
