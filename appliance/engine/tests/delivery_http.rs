//! The io_uring delivery engine against real clients on 127.0.0.1: std TcpStream and curl.
//! Skips (with a printed reason) where io_uring is unavailable.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corecast_engine::delivery::{DeliveryConfig, DeliveryError, DeliveryWorker};
use corecast_engine::store::{CachePolicy, SegmentStore, StoreChange, StoredObject, content_type};

const SEGMENT: &str = "/live/demo/source/1.m4s";
const PLAYLIST: &str = "/live/demo/index.m3u8";

fn segment_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn store() -> Arc<SegmentStore> {
    let store = Arc::new(SegmentStore::new());
    let put = |path: &str, body: Vec<u8>, kind, cache| StoreChange::Put {
        path: path.into(),
        object: StoredObject::new(Bytes::from(body), kind, cache),
    };
    store.apply(
        "demo",
        vec![
            put(
                "source/1.m4s",
                segment_bytes(1 << 20),
                content_type::MP4_VIDEO,
                CachePolicy::Immutable,
            ),
            put(
                "big.m4s",
                vec![1u8; 64 << 20],
                content_type::MP4_VIDEO,
                CachePolicy::Immutable,
            ),
            put(
                "index.m3u8",
                b"#EXTM3U\n".to_vec(),
                content_type::HLS_PLAYLIST,
                CachePolicy::Live { max_age_secs: 1 },
            ),
        ],
    );
    store.apply(
        "other",
        vec![put(
            "index.m3u8",
            b"#EXTM3U\n#other\n".to_vec(),
            content_type::HLS_PLAYLIST,
            CachePolicy::Live { max_age_secs: 1 },
        )],
    );
    store
}

fn test_config() -> DeliveryConfig {
    DeliveryConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_connections_per_worker: 256,
        recv_buffers: 256,
        ..DeliveryConfig::default()
    }
}

/// `None` (and a printed reason) where io_uring is unavailable.
fn spawn(config: DeliveryConfig, store: &Arc<SegmentStore>) -> Option<DeliveryWorker> {
    match DeliveryWorker::spawn(0, None, config, store.clone()) {
        Ok(worker) => Some(worker),
        Err(DeliveryError::Uring { source, .. })
            if matches!(
                source,
                uring::UringError::Unavailable { .. } | uring::UringError::Unsupported { .. }
            ) =>
        {
            eprintln!("skipping: {source}");
            None
        }
        Err(e) => panic!("spawn: {e}"),
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, raw: &[u8]) {
        self.reader.get_mut().write_all(raw).expect("write");
    }

    fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.response(false)
    }

    /// Reads one response; `no_body` for answers to HEAD.
    fn response(&mut self, no_body: bool) -> Response {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(": ").expect("header syntax");
            headers.push((name.to_string(), value.to_string()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let length: usize = response
            .header("content-length")
            .map_or(0, |v| v.parse().expect("length"));
        if !no_body && status != 204 && status != 304 {
            response.body.resize(length, 0);
            self.reader.read_exact(&mut response.body).expect("body");
        }
        response
    }

    /// True when the server has closed the connection (EOF or reset) within the timeout.
    fn closed_by_server(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn get_head_range_and_conditional_on_one_keep_alive_connection() {
    let store = store();
    let Some(worker) = spawn(test_config(), &store) else {
        return;
    };
    let mut client = Client::connect(worker.local_addr());
    let full = client.get(SEGMENT);
    assert_eq!(full.status, 200);
    assert_eq!(
        full.body,
        segment_bytes(1 << 20),
        "1 MiB body byte for byte"
    );
    assert_eq!(full.header("content-type"), Some("video/mp4"));
    assert_eq!(full.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        full.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let etag = full.header("etag").expect("etag").to_string();

    client.send(format!("HEAD {SEGMENT} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let head = client.response(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1048576"));

    client.send(
        format!("GET {SEGMENT}?x=1 HTTP/1.1\r\nHost: t\r\nRange: bytes=1000-1999\r\n\r\n")
            .as_bytes(),
    );
    let range = client.response(false);
    assert_eq!(range.status, 206);
    assert_eq!(
        range.header("content-range"),
        Some("bytes 1000-1999/1048576")
    );
    assert_eq!(range.body, segment_bytes(1 << 20)[1000..2000]);

    client.send(
        format!("GET {SEGMENT} HTTP/1.1\r\nHost: t\r\nRange: bytes=2000000-\r\n\r\n").as_bytes(),
    );
    assert_eq!(client.response(false).status, 416);

    client.send(
        format!("GET {SEGMENT} HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
    );
    let not_modified = client.response(false);
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));

    let playlist = client.get(PLAYLIST);
    assert_eq!(playlist.body, b"#EXTM3U\n");
    assert_eq!(playlist.header("cache-control"), Some("public, max-age=1"));
    let stats = worker.stats().snapshot();
    assert_eq!(stats.accepted, 1, "every request rode one connection");
    assert_eq!(stats.requests, 6);
    assert!(stats.bytes_sent > (1 << 20) + 1000);
    worker.stop();
}

#[test]
fn error_answers() {
    let store = store();
    let Some(worker) = spawn(test_config(), &store) else {
        return;
    };
    let addr = worker.local_addr();
    let mut client = Client::connect(addr);
    let missing = client.get("/live/demo/none.m4s");
    assert_eq!(
        (missing.status, missing.body.as_slice()),
        (404, &b"not found\n"[..])
    );
    client.send(b"POST /live/demo/index.m3u8 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    let refused = client.response(false);
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("GET, HEAD, OPTIONS"));
    client.send(
        b"OPTIONS /live/demo/index.m3u8 HTTP/1.1\r\nHost: t\r\nOrigin: http://o\r\n\
          Access-Control-Request-Method: GET\r\n\r\n",
    );
    let preflight = client.response(false);
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS")
    );
    // Still the same connection.
    assert_eq!(client.get(PLAYLIST).status, 200);

    let mut bad = Client::connect(addr);
    bad.send(b"GET / HTTP/1.1\r\nHost t\r\n\r\n");
    assert_eq!(bad.response(false).status, 400);
    assert!(bad.closed_by_server());

    let mut large = Client::connect(addr);
    let mut head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_vec();
    head.resize(9000, b'a');
    large.send(&head);
    assert_eq!(large.response(false).status, 431);
    assert!(large.closed_by_server());

    let mut closing = Client::connect(addr);
    closing.send(format!("GET {PLAYLIST} HTTP/1.0\r\n\r\n").as_bytes());
    assert_eq!(closing.response(false).status, 200);
    assert!(
        closing.closed_by_server(),
        "HTTP/1.0 without keep-alive closes"
    );
    let stats = worker.stats().snapshot();
    assert_eq!(stats.bad_requests, 2);
    worker.stop();
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let store = store();
    let Some(worker) = spawn(test_config(), &store) else {
        return;
    };
    let mut client = Client::connect(worker.local_addr());
    client.send(
        format!(
            "GET {PLAYLIST} HTTP/1.1\r\nHost: t\r\n\r\n\
             GET {SEGMENT} HTTP/1.1\r\nHost: t\r\n\r\n\
             HEAD {SEGMENT} HTTP/1.1\r\nHost: t\r\n\r\n\
             GET /nope HTTP/1.1\r\nHost: t\r\n\r\n\
             GET /live/other/index.m3u8 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(client.response(false).body, b"#EXTM3U\n");
    assert_eq!(client.response(false).body, segment_bytes(1 << 20));
    assert_eq!(client.response(true).status, 200);
    assert_eq!(client.response(false).status, 404);
    let last = client.response(false);
    assert_eq!(last.body, b"#EXTM3U\n#other\n");
    assert_eq!(last.header("connection"), Some("close"));
    assert!(client.closed_by_server());
    worker.stop();
}

#[test]
fn curl_downloads_match() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: curl is not installed (scripts/install-deps.sh --test)");
        return;
    }
    let store = store();
    let Some(worker) = spawn(test_config(), &store) else {
        return;
    };
    let url = format!("http://{}{SEGMENT}", worker.local_addr());
    let dir = std::env::temp_dir().join(format!("corecast-delivery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let whole = dir.join("whole");
    let part = dir.join("part");
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o"])
        .arg(&whole)
        .args([
            "-w",
            "%{http_code} %{num_connects}",
            &url,
            "--next",
            "-sS",
            "-o",
        ])
        .arg(&part)
        .args(["-r", "100-199", "-w", " %{http_code} %{num_connects}", &url])
        .output()
        .expect("run curl");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "curl: {report} {output:?}");
    // The second transfer reused the connection (0 new connects).
    assert_eq!(report, "200 1 206 0");
    assert_eq!(std::fs::read(&whole).expect("file"), segment_bytes(1 << 20));
    assert_eq!(
        std::fs::read(&part).expect("file"),
        segment_bytes(1 << 20)[100..200]
    );
    let _ = std::fs::remove_dir_all(&dir);
    worker.stop();
}

#[test]
fn idle_and_header_timeouts_close_connections() {
    let store = store();
    let config = DeliveryConfig {
        idle_timeout: Duration::from_millis(300),
        header_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let Some(worker) = spawn(config, &store) else {
        return;
    };
    let started = Instant::now();
    let mut idle = Client::connect(worker.local_addr());
    assert_eq!(idle.get(PLAYLIST).status, 200);
    let mut partial = Client::connect(worker.local_addr());
    partial.send(b"GET /live/demo/index.m3u8 HTTP/1.1\r\nHost:");
    let timeout = partial.response(false);
    assert_eq!(timeout.status, 408);
    assert!(partial.closed_by_server());
    assert!(idle.closed_by_server());
    assert!(started.elapsed() < Duration::from_secs(3));
    let stats = worker.stats();
    wait_until("both timeouts counted", || {
        let s = stats.snapshot();
        s.idle_timeouts == 1 && s.header_timeouts == 1 && s.connections == 0
    });
    worker.stop();
}

#[test]
fn dropped_and_stalled_downloads_do_not_hold_up_others() {
    let store = store();
    let config = DeliveryConfig {
        send_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let Some(worker) = spawn(config, &store) else {
        return;
    };
    let addr = worker.local_addr();
    // Reads a little of 1 MiB, then goes away: the server sees a reset mid-send.
    let mut quitter = Client::connect(addr);
    quitter.send(format!("GET {SEGMENT} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let mut first = [0u8; 1000];
    quitter.reader.read_exact(&mut first).expect("first bytes");
    drop(quitter);
    // Asks for 64 MiB and never reads: its send stalls until the send timeout.
    let mut staller = Client::connect(addr);
    staller.send(b"GET /live/demo/big.m4s HTTP/1.1\r\nHost: t\r\n\r\n");

    let mut other = Client::connect(addr);
    for _ in 0..20 {
        assert_eq!(other.get(SEGMENT).body.len(), 1 << 20);
    }
    let stats = worker.stats();
    wait_until("the stalled download to time out", || {
        stats.snapshot().send_timeouts == 1
    });
    wait_until("both dropped connections to be closed", || {
        stats.snapshot().connections == 1
    });
    // What reached the staller's socket before the close is less than the whole object.
    let mut received = Vec::new();
    let outcome = staller.reader.read_to_end(&mut received);
    assert!(
        outcome.is_err() || received.len() < 64 << 20,
        "the stalled download was cut off"
    );
    assert_eq!(other.get(PLAYLIST).status, 200);
    worker.stop();
}

#[test]
fn a_reader_that_falls_a_window_behind_is_dropped() {
    let store = store();
    let config = DeliveryConfig {
        // Every op makes progress, so the send timeout never fires; the window rule must.
        send_timeout: Duration::from_secs(30),
        lagging_after: Some(Duration::from_millis(800)),
        max_send_bytes: 64 * 1024,
        ..test_config()
    };
    let Some(worker) = spawn(config, &store) else {
        return;
    };
    let addr = worker.local_addr();
    // Reads 64 MiB at about 1.3 MB/s: it would need close to a minute.
    let mut trickler = Client::connect(addr);
    trickler.send(b"GET /live/demo/big.m4s HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut other = Client::connect(addr);
    let stats = worker.stats();
    let began = Instant::now();
    let mut received = 0usize;
    let mut chunk = vec![0u8; 64 * 1024];
    let cut_off = loop {
        match trickler.reader.read(&mut chunk) {
            Ok(0) | Err(_) => break true,
            Ok(n) => received += n,
        }
        // Everyone else is served meanwhile.
        assert_eq!(other.get(SEGMENT).body.len(), 1 << 20);
        if began.elapsed() > Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(cut_off, "the lagging reader was never dropped");
    assert!(received < 64 << 20, "it got the whole object: {received}");
    assert!(received > 0, "it was served before it fell behind");
    assert_eq!(stats.snapshot().lagging_drops, 1);
    assert_eq!(stats.snapshot().send_timeouts, 0);
    assert_eq!(other.get(PLAYLIST).status, 200);
    worker.stop();
}

#[test]
fn two_workers_share_one_port() {
    let store = store();
    let Some(first) = spawn(test_config(), &store) else {
        return;
    };
    let second = DeliveryWorker::spawn(
        1,
        None,
        DeliveryConfig {
            listen: first.local_addr(),
            ..test_config()
        },
        store.clone(),
    )
    .expect("second worker on the same port");
    assert_eq!(second.local_addr(), first.local_addr());
    let mut clients: Vec<Client> = (0..40)
        .map(|_| Client::connect(first.local_addr()))
        .collect();
    for client in &mut clients {
        assert_eq!(client.get(PLAYLIST).status, 200);
    }
    let (a, b) = (first.stats().snapshot(), second.stats().snapshot());
    assert_eq!(a.accepted + b.accepted, 40);
    assert!(a.requests > 0 && b.requests > 0, "both served: {a:?} {b:?}");
    drop(clients);
    first.stop();
    second.stop();
}

#[test]
fn viewer_counts_follow_requests_and_closes() {
    let store = store();
    let Some(worker) = spawn(test_config(), &store) else {
        return;
    };
    let mut one = Client::connect(worker.local_addr());
    let mut two = Client::connect(worker.local_addr());
    one.get(PLAYLIST);
    two.get(SEGMENT);
    assert_eq!(store.viewers("demo"), 2);
    two.get("/live/other/index.m3u8");
    assert_eq!((store.viewers("demo"), store.viewers("other")), (1, 1));
    two.get("/elsewhere");
    assert_eq!(store.viewers("other"), 0);
    drop(one);
    wait_until("the closed viewer to be uncounted", || {
        store.viewers("demo") == 0
    });
    worker.stop();
}

#[test]
fn a_full_table_refuses_newcomers_and_keeps_serving() {
    let store = store();
    let config = DeliveryConfig {
        max_connections_per_worker: 4,
        ..test_config()
    };
    let Some(worker) = spawn(config, &store) else {
        return;
    };
    let addr = worker.local_addr();
    let mut held: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    for client in &mut held {
        assert_eq!(client.get(PLAYLIST).status, 200);
    }
    let mut refused: Vec<Client> = (0..2).map(|_| Client::connect(addr)).collect();
    for client in &mut refused {
        assert!(
            client.closed_by_server(),
            "the kernel closes a refused newcomer"
        );
    }
    let stats = worker.stats();
    wait_until("two refusals counted", || stats.snapshot().enfile == 2);
    for client in &mut held {
        assert_eq!(client.get(PLAYLIST).status, 200);
    }
    held.pop();
    wait_until("the slot to be freed", || stats.snapshot().connections == 3);
    let mut late = Client::connect(addr);
    assert_eq!(late.get(PLAYLIST).status, 200);
    worker.stop();
}
