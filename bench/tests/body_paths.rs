//! `corecast-bench body-paths` end to end: each of its four servers (copying send, sendfile
//! from a file and from a memfd, io_uring splice through a pipe) serves whole, correct
//! responses to the closed loop. Functional only: which one is cheaper is for
//! docs/capacity.md, not for a test.

use std::process::Command;

use corecast_e2e::TempDir;
use serde_json::Value;

#[test]
fn every_body_path_serves_whole_responses() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = TempDir::new("body-paths");
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_corecast-bench"))
        .args(["body-paths", "--sizes", "4096,200000", "--rounds", "1"])
        .args(["--seconds", "1", "-c", "16"])
        .args(["--load-cpu", &(cpus.min(2) - 1).to_string()])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run corecast-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "body-paths failed: {stderr}\n{stdout}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written"))
            .expect("JSON parses");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 8, "{report}");
    for run in runs {
        assert_eq!(run["errors"].as_u64(), Some(0), "{run}");
        assert!(
            run["requests_per_s"].as_f64().unwrap_or(0.0) > 10.0,
            "{run}"
        );
        assert!(run["server_cores"].as_f64().unwrap_or(0.0) > 0.0, "{run}");
    }
    let summary = report["summary"].as_array().expect("summary");
    assert!(
        summary
            .iter()
            .filter(|s| s["path"] == "send")
            .all(|s| s["per_cpu_vs_send"].as_f64() == Some(1.0)),
        "{report}"
    );
}

/// compare-nginx's copy floor: `body-path-server --response FILE` answers every request on a
/// keep-alive connection with exactly the recorded bytes.
#[test]
fn the_copy_floor_answers_with_the_recorded_response() {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    let dir = TempDir::new("copy-floor");
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: video/iso.segment\r\nContent-Length: {}\r\nETag: \"42\"\r\n\r\n",
        body.len()
    );
    let recorded = [head.as_bytes(), &body].concat();
    let file = dir.path().join("seg.http");
    std::fs::write(&file, &recorded).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_corecast-bench"))
        .args(["body-path-server", "--path", "send", "--response"])
        .arg(&file)
        .args(["--port", &port.to_string(), "--seconds", "20"])
        .spawn()
        .expect("start body-path-server");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(addr) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("the floor never listened: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /live/x/source/1.m4s HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut got = vec![0; recorded.len()];
        stream.read_exact(&mut got).expect("a whole response");
        assert!(
            got == recorded,
            "the floor's response differs from the recording"
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}
