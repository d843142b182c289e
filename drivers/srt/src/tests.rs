//! Against the real libsrt on loopback: a listener with an access hook and a caller, with and
//! without a passphrase.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;

/// Accepts stream ids starting with `ok`, sets `passphrase` on them, remembers what it saw.
struct TestHook {
    passphrase: Option<&'static str>,
    seen: Mutex<Vec<(String, Option<SocketAddr>)>>,
}

impl ListenHook for TestHook {
    fn on_request(&self, request: &ConnectionRequest<'_>) -> std::result::Result<(), RejectCode> {
        self.seen
            .lock()
            .unwrap()
            .push((request.stream_id().to_owned(), request.peer()));
        if !request.stream_id().starts_with("ok") {
            return Err(RejectCode::NOT_FOUND);
        }
        if let Some(p) = self.passphrase {
            request.set_passphrase(p).map_err(|_| RejectCode(500))?;
        }
        Ok(())
    }
}

fn listener(hook: Arc<TestHook>) -> (Socket, SocketAddr) {
    let mut socket = Socket::new().unwrap();
    socket.set_nonblocking().unwrap();
    socket.set_listen_hook(hook).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket.listen(4).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// Connects (blocking) with `stream_id` and `passphrase`.
fn call(addr: SocketAddr, stream_id: &str, passphrase: Option<&str>) -> Result<Socket> {
    let socket = Socket::new()?;
    socket.set_stream_id(stream_id)?;
    socket.set_connect_timeout(Duration::from_secs(2))?;
    if let Some(p) = passphrase {
        socket.set_passphrase(p)?;
        socket.set_key_length(KeyLength::Aes256)?;
    }
    socket.connect(addr)?;
    Ok(socket)
}

fn accept_within(listener: &Socket, timeout: Duration) -> Option<(Socket, SocketAddr)> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(accepted) = listener.accept().unwrap() {
            return Some(accepted);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn version_is_1_5() {
    let (major, minor, _) = version();
    assert_eq!((major, minor), (1, 5));
}

#[test]
fn messages_flow_through_an_encrypted_connection() {
    let hook = Arc::new(TestHook {
        passphrase: Some("correct horse battery"),
        seen: Mutex::new(Vec::new()),
    });
    let (listener, addr) = listener(hook.clone());
    let caller = call(addr, "ok-1", Some("correct horse battery")).unwrap();
    let (accepted, peer) = accept_within(&listener, Duration::from_secs(2)).expect("accepted");
    assert_eq!(accepted.stream_id().unwrap(), "ok-1");
    assert_eq!(peer, caller.local_addr().unwrap());
    assert_eq!(accepted.peer_addr().unwrap(), peer);
    assert_eq!(hook.seen.lock().unwrap()[0].1, Some(peer));

    accepted.set_nonblocking().unwrap();
    for i in 0u8..20 {
        assert_eq!(caller.send(&[i; TS_PAYLOAD]).unwrap(), Some(TS_PAYLOAD));
    }
    let mut epoll = Epoll::new().unwrap();
    epoll.add(accepted.id(), Events::READ).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; MAX_PAYLOAD];
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.len() < 20 && Instant::now() < deadline {
        let mut ready = Vec::new();
        epoll.wait(Duration::from_millis(200), &mut ready).unwrap();
        while let Some(n) = accepted.recv(&mut buf).unwrap() {
            assert_eq!(n, TS_PAYLOAD);
            got.push(buf[0]);
        }
    }
    assert_eq!(got, (0u8..20).collect::<Vec<_>>());
    let stats = accepted.stats(false).unwrap();
    assert_eq!(stats.pktRecvUniqueTotal, 20);
    // Bytes count the SRT and UDP/IP headers too (44 bytes a packet).
    assert_eq!(stats.byteRecvUniqueTotal, 20 * (TS_PAYLOAD as u64 + 44));
    assert!(
        stats.msRTT >= 0.0 && stats.msRTT < 1000.0,
        "{}",
        stats.msRTT
    );
}

#[test]
fn wrong_passphrase_and_unknown_stream_are_refused() {
    let hook = Arc::new(TestHook {
        passphrase: Some("correct horse battery"),
        seen: Mutex::new(Vec::new()),
    });
    let (listener, addr) = listener(hook.clone());

    let wrong = call(addr, "ok-2", Some("wrong horse battery"));
    match wrong {
        Err(SrtError::Rejected { reason, .. }) => assert_eq!(reason, RejectReason::BAD_SECRET),
        other => panic!("wrong passphrase: {other:?}"),
    }
    let none = call(addr, "ok-3", None);
    match none {
        Err(SrtError::Rejected { reason, .. }) => assert_eq!(reason, RejectReason::UNSECURE),
        other => panic!("no passphrase: {other:?}"),
    }
    let unknown = call(addr, "nope", Some("correct horse battery"));
    match unknown {
        Err(SrtError::Rejected { reason, .. }) => {
            assert_eq!(reason, RejectReason(1404));
            assert!(reason.to_string().contains("404"), "{reason}");
        }
        other => panic!("unknown stream: {other:?}"),
    }
    assert!(accept_within(&listener, Duration::from_millis(300)).is_none());
    let seen: Vec<String> = hook
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(s, _)| s.clone())
        .collect();
    assert!(seen.contains(&"nope".to_owned()), "{seen:?}");
}

#[test]
fn options_are_checked() {
    assert!(check_passphrase("short").is_err());
    assert!(check_passphrase("long enough").is_ok());
    let socket = Socket::new().unwrap();
    assert!(socket.set_passphrase("short").is_err());
    assert!(socket.set_stream_id(&"x".repeat(600)).is_err());
    assert!(socket.send(&[0u8; 2000]).is_err());
    assert_eq!(KeyLength::from_bytes(24), Some(KeyLength::Aes192));
    assert_eq!(KeyLength::from_bytes(20), None);
    assert_eq!(socket.state(), SocketState::Init);
}
