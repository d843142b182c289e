//! `corecast-bench viewers` against the real corecast binary serving its demo stream at
//! 640x360, 300 kbps, 2 s segments. Functional checks only: no timing assertions.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use corecast_e2e::{MediaPlaylist, Server, TempDir};
use serde_json::Value;

const DEMO_300K: &str = "[demo]\nwidth = 640\nheight = 360\nfps = 30\nvideo_kbps = 300\n\
                         [packaging]\nsegment_seconds = 2.0\n";

fn start_demo() -> Server {
    start_demo_with("")
}

fn start_demo_with(extra_config: &str) -> Server {
    let server = Server::start(&format!("{DEMO_300K}{extra_config}"), &[]);
    // Two segments listed, so players have something behind the live edge to start from.
    server.wait_for(
        "/live/demo/source/index.m3u8",
        Duration::from_secs(30),
        |t| MediaPlaylist::parse(t).segments.len() >= 2,
    );
    server
}

/// Runs the bench binary and returns its JSON report.
fn run_viewers(server: &Server, viewers: u32, seconds: u32) -> Value {
    run_viewers_with(server, viewers, seconds, viewers * 2)
}

fn run_viewers_with(server: &Server, viewers: u32, seconds: u32, ramp_per_second: u32) -> Value {
    let dir = TempDir::new("bench");
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_corecast-bench"))
        .args(["viewers", "--url", &server.url("/live/demo")])
        .args(["-n", &viewers.to_string()])
        .args(["--duration", &seconds.to_string()])
        .args(["--ramp", &ramp_per_second.to_string(), "--progress", "0"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run corecast-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "corecast-bench failed: {stderr}\n{stdout}"
    );
    println!("{stdout}");
    let text = std::fs::read_to_string(&json).expect("JSON report written");
    serde_json::from_str(&text).expect("JSON report parses")
}

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {report}"))
}

#[test]
fn five_hundred_viewers_are_held_without_errors() {
    let server = start_demo();
    let report = run_viewers(&server, 500, 8);
    assert_eq!(count(&report, "errors_total"), 0, "{}", report["errors"]);
    assert_eq!(count(&report, "viewers_asked"), 500);
    assert_eq!(count(&report, "connections_held_at_end"), 500);
    assert_eq!(count(&report, "connections_min_steady"), 500);
    assert_eq!(count(&report, "connects"), 500, "no reconnects");
    let kinds = &report["kinds"];
    // Every viewer fetched the playlist, the init segment and at least one media segment.
    assert!(kinds["playlist"]["requests"].as_u64().unwrap() >= 500);
    assert_eq!(kinds["init"]["requests"].as_u64(), Some(500));
    assert!(count(&report, "segments") >= 500, "{report}");
    assert!(
        count(&report, "sampled_bodies") > 0,
        "some bodies checked whole"
    );
    assert!(report["gbps"].as_f64().unwrap() > 0.0);
}

/// A client that pipelines many segment requests and never reads fills its socket buffers;
/// the server's send to it stalls. Viewers on the same workers must not notice, and the
/// server drops the stalled reader after `delivery.send_timeout_seconds`.
#[test]
fn a_reader_that_stops_reading_is_dropped_without_affecting_other_viewers() {
    let server = start_demo_with("[delivery]\nsend_timeout_seconds = 3\n");
    let playlist = MediaPlaylist::parse(&server.get("/live/demo/source/index.m3u8").text());
    let (uri, _, _) = playlist.segments.last().expect("a segment");
    let mut slow = TcpStream::connect(server.http).expect("connect slow reader");
    let request = format!(
        "GET /live/demo/source/{uri} HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.http
    );
    // About 75 KB per response: far more than socket buffers hold.
    let pipelined = request.repeat(400);
    slow.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = slow.write_all(pipelined.as_bytes());

    let report = run_viewers(&server, 200, 8);
    assert_eq!(count(&report, "errors_total"), 0, "{}", report["errors"]);
    assert_eq!(count(&report, "connections_held_at_end"), 200);
    // A worker held up by the stalled reader would starve every viewer on it (about half of
    // them) for the whole send timeout. A few short stalls can still happen when the shared
    // box is busy enough to delay the demo encoder itself, which is not delivery's doing.
    let stalled = count(&report, "viewers_stalled");
    assert!(
        stalled * 20 <= 200,
        "{stalled} of 200 viewers stalled: {report}"
    );
    assert!(count(&report, "segments") >= 200);

    // By now (8 s > 3 s) the stalled reader was dropped, and counted as a send timeout.
    let delivery: Value =
        serde_json::from_slice(&server.api_get("/api/v1/delivery").body).expect("JSON");
    assert!(
        delivery["total"]["send_timeouts"].as_u64().unwrap_or(0) >= 1,
        "slow reader not dropped: {delivery}"
    );
    drop(slow);
}

/// One corecast process holds more viewer connections than its file-descriptor limit
/// (20,000 here): connections live in io_uring direct descriptors, two rings of 20,000.
#[test]
fn one_process_holds_more_connections_than_its_fd_limit() {
    let limit = fd_limit();
    let viewers = (limit + 1_000).min(35_000) as u32;
    let server = start_demo_with("[delivery]\nworkers = 2\nmax_connections_per_worker = 20000\n");
    let report = run_viewers_with(&server, viewers, 10, 6000);
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .expect("server fds")
        .count();
    assert_eq!(count(&report, "errors_total"), 0, "{}", report["errors"]);
    assert_eq!(
        count(&report, "connections_held_at_end"),
        u64::from(viewers),
        "{report}"
    );
    assert!(
        u64::from(viewers) > limit,
        "{viewers} viewers do not exceed the fd limit {limit}"
    );
    assert!(
        fds < 200,
        "viewer connections must not use process fds: {fds} open"
    );
}

fn fd_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .expect("soft fd limit")
}
