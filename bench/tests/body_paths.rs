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
