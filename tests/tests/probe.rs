//! `corecast probe` on this box: the encoders it really has, and why the missing ones are
//! missing. Runs the binary; checks the JSON against what the machine has (a machine with an
//! NVIDIA driver is allowed to report NVENC available, with a GPU named).

use std::process::Command;

use corecast_e2e::corecast_binary;
use serde_json::Value;

fn probe(args: &[&str]) -> std::process::Output {
    Command::new(corecast_binary())
        .arg("probe")
        .args(args)
        .output()
        .expect("run corecast probe")
}

#[test]
fn probe_json_lists_real_encoders_and_reasons() {
    let output = probe(&["--json"]);
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("probe prints JSON");
    let encoders = report["encoders"].as_array().expect("encoders");
    let entry = |name: &str| {
        encoders
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {report}"))
    };

    let x264 = entry("x264");
    assert_eq!(x264["available"], true);
    assert!(
        x264["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("libx264 build 1"),
        "{x264}"
    );
    assert_eq!(entry("aac")["available"], true);

    let driver_here = std::path::Path::new("/proc/driver/nvidia/version").exists();
    for name in ["h264_nvenc", "hevc_nvenc"] {
        let nvenc = entry(name);
        if nvenc["available"] == true {
            assert!(
                driver_here,
                "{name} available without an NVIDIA driver: {nvenc}"
            );
            assert!(
                nvenc["detail"].as_str().unwrap_or("").contains("GPU 0"),
                "{nvenc}"
            );
            continue;
        }
        let reason = nvenc["reason"]
            .as_str()
            .expect("a reason for a missing encoder");
        assert!(
            reason.contains("libcuda") || reason.contains("NVENC") || reason.contains("CUDA"),
            "{name}: {reason}"
        );
        if !driver_here {
            assert!(
                reason.starts_with("libcuda.so.1 not found"),
                "{name}: {reason}"
            );
        }
    }

    // The AV1 encoders of the linked FFmpeg are reported as found or not, each with its text,
    // and agree with what the ffmpeg command line (same Debian libraries) lists.
    let ffmpeg_encoders = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    for name in ["libsvtav1", "librav1e", "libaom-av1"] {
        let av1 = entry(name);
        let text = if av1["available"] == true {
            &av1["detail"]
        } else {
            &av1["reason"]
        };
        assert!(
            text.as_str().is_some_and(|t| t.contains("libavcodec")),
            "{av1}"
        );
        if let Some(list) = &ffmpeg_encoders {
            let listed = list
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name));
            assert_eq!(
                av1["available"], listed,
                "{name}: ffmpeg -encoders disagrees"
            );
        }
    }
    let rav1e = entry("rav1e");
    assert_eq!(rav1e["available"], true, "{rav1e}");
    assert!(
        rav1e["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("rav1e 0."),
        "{rav1e}"
    );

    let cpus = report["cpus"].as_u64().expect("cpus");
    let online = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert_eq!(cpus, online);
    let uring = &report["io_uring"];
    assert!(uring["available"].is_boolean(), "{uring}");
    assert!(
        uring["detail"].is_string() || uring["reason"].is_string(),
        "{uring}"
    );
}

#[test]
fn probe_table_names_every_encoder() {
    let output = probe(&[]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let header = text.lines().next().unwrap_or("");
    assert!(
        header.starts_with("encoder") && header.contains("details"),
        "{text}"
    );
    for name in [
        "x264",
        "aac",
        "h264_nvenc",
        "hevc_nvenc",
        "libsvtav1",
        "rav1e",
    ] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} not in:\n{text}"
        );
    }
    assert!(text.contains("\ncpus "), "{text}");
    assert!(text.contains("\nio_uring "), "{text}");
    // FFmpeg's own log lines stay out of it.
    assert!(!String::from_utf8_lossy(&output.stderr).contains("Cannot load"));
}
