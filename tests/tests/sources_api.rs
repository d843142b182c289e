//! The control API's view of configured sources (`/api/v1/sources`, the `source` object in
//! `/api/v1/streams/{name}`, `corecast_source_*` in `/metrics`), driven by real peers: ffmpeg
//! sending MPEG-TS over UDP through a relay in this test that also injects garbage and drops
//! datagrams, so the malformed-input counters have something real to count.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corecast_e2e::{Server, free_port, require_tool};
use serde_json::Value;

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP port")
        .port()
}

fn api_json(server: &Server, path: &str) -> (u16, Value) {
    let response = server.api_get(path);
    let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, json)
}

/// Polls `path` until `check` likes its JSON.
fn wait_json(
    server: &Server,
    path: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, json) = api_json(server, path);
        if status == 200 && check(&json) {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: not as expected within {timeout:?}; last {status} {json}\n--- log ---\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

#[test]
fn udp_source_counts_datagrams_units_and_malformed_input() {
    require_tool("ffmpeg");
    let source_port = free_udp_port();
    let relay = UdpSocket::bind("127.0.0.1:0").expect("relay socket");
    let relay_port = relay.local_addr().expect("relay addr").port();
    relay
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let server = Server::start(
        &format!(
            "[demo]\nenabled = false\n[packaging]\nsegment_seconds = 2\n\
             [[source]]\nname = \"feed\"\nurl = \"udp://127.0.0.1:{source_port}\"\n\
             timeout_seconds = 1.5\n"
        ),
        &[],
    );
    let source = wait_json(
        &server,
        "/api/v1/sources/feed",
        Duration::from_secs(5),
        |_| true,
    );
    assert_eq!(source["kind"], "udp", "{source}");
    assert_eq!(source["state"], "connecting", "{source}");
    assert_eq!(source["counters"]["packets"], 0, "{source}");

    // ffmpeg -> relay (this test) -> corecast. The relay sends a datagram of bytes with no
    // sync byte after every 40th datagram and drops every 50th, all from its one socket, so
    // corecast follows a single sender and counts what it gets.
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "6", "-c:v", "libx264", "-preset", "veryfast", "-g", "30",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2"])
        .args(["-f", "mpegts"])
        .arg(format!("udp://127.0.0.1:{relay_port}?pkt_size=1316"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ffmpeg");
    let garbage = [0xabu8; 1316];
    let (mut forwarded, mut forwarded_bytes, mut garbage_sent, mut dropped) =
        (0u64, 0u64, 0u64, 0u64);
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut quiet_since = None;
    while Instant::now() < deadline {
        match relay.recv_from(&mut buf) {
            Ok((len, _)) => {
                quiet_since = None;
                let index = forwarded + dropped;
                if index % 50 == 49 {
                    dropped += 1;
                    continue;
                }
                relay
                    .send_to(&buf[..len], ("127.0.0.1", source_port))
                    .expect("forward");
                forwarded += 1;
                forwarded_bytes += len as u64;
                if index % 40 == 39 {
                    relay
                        .send_to(&garbage, ("127.0.0.1", source_port))
                        .expect("garbage");
                    garbage_sent += 1;
                }
            }
            Err(_) => {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if ffmpeg.try_wait().expect("ffmpeg").is_some()
                    && since.elapsed() > Duration::from_millis(400)
                {
                    break;
                }
            }
        }
        if forwarded == 200 {
            // Mid-feed: the source is live and the stream shows it.
            let stream = wait_json(
                &server,
                "/api/v1/streams/feed",
                Duration::from_secs(5),
                |s| s["source"]["state"] == "live",
            );
            assert_eq!(stream["source"]["kind"], "udp", "{stream}");
            assert_eq!(stream["source"]["name"], "feed", "{stream}");
        }
    }
    let _ = ffmpeg.wait();
    assert!(
        forwarded > 300 && garbage_sent > 5 && dropped > 5,
        "{forwarded} {garbage_sent} {dropped}"
    );

    // corecast may still be taking the last datagrams in: wait until they are all counted.
    let source = wait_json(
        &server,
        "/api/v1/sources/feed",
        Duration::from_secs(5),
        |s| s["counters"]["packets"] == forwarded + garbage_sent,
    );
    let counters = &source["counters"];
    assert_eq!(
        counters["bytes"],
        forwarded_bytes + garbage_sent * garbage.len() as u64,
        "{source}"
    );
    // 6 s at 30 fps plus about 47 AAC frames a second, less what the drops destroyed.
    let units = counters["access_units"].as_u64().expect("access_units");
    assert!((250..=500).contains(&units), "{units} units: {source}");
    let errors = &counters["errors"];
    let sync = errors["ts_sync_loss"].as_u64().unwrap_or(0);
    assert!(
        sync >= garbage_sent,
        "one sync loss per garbage datagram at least: {source}"
    );
    let continuity = errors["ts_continuity"].as_u64().unwrap_or(0);
    assert!(
        continuity >= dropped,
        "a dropped datagram breaks a PID's counter: {source}"
    );
    let total: u64 = errors
        .as_object()
        .expect("errors map")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(counters["errors_total"], total, "{source}");

    let metrics = server.api_get("/metrics").text();
    for line in [
        format!(
            "corecast_source_packets_total{{source=\"feed\",kind=\"udp\"}} {}",
            forwarded + garbage_sent
        ),
        format!(
            "corecast_source_errors_total{{source=\"feed\",kind=\"udp\",error=\"ts_sync_loss\"}} {sync}"
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }

    // The feed stopped: down after its timeout, with the reason.
    let source = wait_json(
        &server,
        "/api/v1/sources/feed",
        Duration::from_secs(5),
        |s| s["state"] == "down",
    );
    assert!(
        source["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no datagram")),
        "{source}"
    );
    let metrics = server.api_get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "corecast_source_up{source=\"feed\",kind=\"udp\"} 0"),
        "{metrics}"
    );
}

#[test]
fn sources_are_listed_with_state_and_redacted_urls() {
    // An RTSP camera nobody serves (connection refused, retried) and a UDP feed nobody sends.
    let rtsp_port = free_port();
    let udp_port = free_udp_port();
    let server = Server::start(
        &format!(
            "[demo]\nenabled = false\n\
             [[source]]\nname = \"cam\"\nurl = \"rtsp://admin:hunter2@127.0.0.1:{rtsp_port}/x\"\n\
             [[source]]\nname = \"feed\"\nurl = \"udp://127.0.0.1:{udp_port}\"\n"
        ),
        &[],
    );
    let list = wait_json(&server, "/api/v1/sources", Duration::from_secs(10), |l| {
        l["sources"][0]["state"] == "retrying"
    });
    let sources = list["sources"].as_array().expect("sources array");
    assert_eq!(sources.len(), 2, "{list}");
    let cam = &sources[0];
    assert_eq!(cam["name"], "cam");
    assert_eq!(cam["kind"], "rtsp");
    assert_eq!(cam["stream"], "cam");
    assert_eq!(
        cam["url"],
        format!("rtsp://admin:***@127.0.0.1:{rtsp_port}/x"),
        "{cam}"
    );
    let error = cam["last_error"].as_str().expect("last_error");
    assert!(error.to_lowercase().contains("refused"), "{error}");
    let next = cam["next_attempt_ms"].as_i64().expect("next_attempt_ms");
    let now = unix_ms_now();
    // The first retry comes after 1 s ± 25 %.
    assert!(
        next > now - 1000 && next < now + 1500,
        "next {next}, now {now}"
    );
    assert!(
        cam["counters"]["errors"]["rtsp_error"].as_u64() >= Some(1),
        "{cam}"
    );
    assert_eq!(sources[1]["name"], "feed");
    assert_eq!(sources[1]["kind"], "udp");
    assert_eq!(sources[1]["state"], "connecting");
    assert!(!list.to_string().contains("hunter2"));

    // Retried with a growing backoff: reconnects are counted.
    let cam = wait_json(
        &server,
        "/api/v1/sources/cam",
        Duration::from_secs(10),
        |c| c["counters"]["reconnects"].as_u64() >= Some(2),
    );
    assert_eq!(cam["state"], "retrying", "{cam}");
    let (status, json) = api_json(&server, "/api/v1/sources/nope");
    assert_eq!(status, 404);
    assert!(
        json["error"].as_str().is_some_and(|e| e.contains("nope")),
        "{json}"
    );
    assert_eq!(server.api_get("/api/v1/streams/cam").status, 404);
    let metrics = server.api_get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "corecast_source_up{source=\"cam\",kind=\"rtsp\"} 0"),
        "{metrics}"
    );
    assert!(!metrics.contains("hunter2"));
    assert!(!server.log_text().contains("hunter2"));
}
