//! End to end: real ffmpeg output (H.264 with B-frames + AAC) through the live packager,
//! written out as files, read back by ffprobe as HLS (fMP4 and TS) and DASH.
//!
//! The units come from an MP4 that ffmpeg writes: `ffprobe -show_packets -show_data` gives each
//! packet's timestamps, flags and bytes (length-prefixed NAL units, raw AAC), which is exactly
//! what ingest hands the packager. Skips with a message where ffmpeg is not installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use corecast_package::{LivePackager, PackagerConfig, PackagerOutput};
use media::{AacConfig, AccessUnit, AvcConfig, Codec, rescale};
use serde_json::Value;

const SECONDS: u32 = 7;
const FPS: u32 = 30;
const T0: i64 = 1_709_294_400_000;

fn tool_available(name: &str) -> bool {
    Command::new(name)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corecast-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Bytes of an ffprobe hex dump (`00000000: 0164 001e ...  ascii`).
fn hexdump_bytes(dump: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in dump.lines().filter(|l| l.len() > 10) {
        let hex = line.get(10..49).unwrap_or(&line[10..]);
        for group in hex.split_whitespace() {
            for pair in group.as_bytes().chunks(2) {
                let text = std::str::from_utf8(pair).expect("ascii");
                out.push(u8::from_str_radix(text, 16).expect("hex byte"));
            }
        }
    }
    out
}

fn ffprobe_json(args: &[&str], input: &Path) -> Value {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(input)
        .output()
        .expect("run ffprobe");
    assert!(
        output.status.success(),
        "ffprobe {args:?} {}: {}",
        input.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe JSON")
}

fn rational(text: &str) -> (i64, i64) {
    let (num, den) = text.split_once('/').expect("a/b");
    (num.parse().expect("num"), den.parse().expect("den"))
}

struct Input {
    video: AvcConfig,
    audio: AacConfig,
    /// Units in file order (interleaved as a muxer would send them).
    units: Vec<AccessUnit>,
}

fn make_input(dir: &Path) -> Input {
    let mp4 = dir.join("input.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=640x360:rate={FPS}"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &SECONDS.to_string()])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "60",
        ])
        .args([
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-ac", "2", "-b:a", "128k"])
        .arg(&mp4)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg made the input");

    let streams = ffprobe_json(&["-show_streams", "-show_data"], &mp4);
    let mut video = None;
    let mut audio = None;
    let mut time_bases = BTreeMap::new();
    for stream in streams["streams"].as_array().expect("streams") {
        let index = stream["index"].as_i64().expect("index");
        let extradata = hexdump_bytes(stream["extradata"].as_str().expect("extradata"));
        time_bases.insert(index, rational(stream["time_base"].as_str().expect("tb")));
        match stream["codec_type"].as_str() {
            Some("video") => {
                video = Some((index, AvcConfig::from_record(&extradata).expect("avcC")))
            }
            Some("audio") => audio = Some((index, AacConfig::from_asc(&extradata).expect("ASC"))),
            _ => {}
        }
    }
    let (video_index, video) = video.expect("video stream");
    let (_, audio) = audio.expect("audio stream");

    let packets = ffprobe_json(&["-show_packets", "-show_data"], &mp4);
    let mut units = Vec::new();
    for packet in packets["packets"].as_array().expect("packets") {
        let index = packet["stream_index"].as_i64().expect("stream_index");
        let (num, den) = time_bases[&index];
        let is_video = index == video_index;
        let to = if is_video {
            90_000
        } else {
            i64::from(audio.sample_rate)
        };
        let scale = |value: &Value| {
            let ticks = value.as_i64().expect("timestamp");
            rescale(ticks * num, den as u32, to as u32)
        };
        units.push(AccessUnit {
            codec: if is_video { Codec::H264 } else { Codec::Aac },
            pts: scale(&packet["pts"]),
            dts: scale(&packet["dts"]),
            keyframe: packet["flags"].as_str().is_some_and(|f| f.starts_with('K')),
            payload: Bytes::from(hexdump_bytes(packet["data"].as_str().expect("data"))),
        });
    }
    Input {
        video,
        audio,
        units,
    }
}

/// Runs the packager over the input, applying each committed batch to files under `out`.
fn package(input: &Input, out: &Path) -> LivePackager {
    let mut packager = LivePackager::new(PackagerConfig {
        window: 100, // keep every segment, so ffprobe sees the whole stream
        ..PackagerConfig::default()
    });
    let apply = |packager: &mut LivePackager| {
        let mut batch = Vec::new();
        while let Some(output) = packager.poll_output() {
            match output {
                PackagerOutput::Commit => {
                    for change in batch.drain(..) {
                        match change {
                            PackagerOutput::Put { path, body, .. } => {
                                let file = out.join(path);
                                std::fs::create_dir_all(file.parent().expect("parent"))
                                    .expect("mkdir");
                                std::fs::write(file, body).expect("write object");
                            }
                            PackagerOutput::Remove { path } => {
                                std::fs::remove_file(out.join(path)).expect("remove object");
                            }
                            PackagerOutput::Commit => {}
                        }
                    }
                }
                other => batch.push(other),
            }
        }
    };
    packager.handle_start(T0, Some(input.video.clone()), Some(input.audio.clone()));
    for unit in &input.units {
        let ms = match unit.codec {
            Codec::H264 => unit.dts / 90,
            _ => unit.dts * 1000 / i64::from(input.audio.sample_rate),
        };
        packager.handle_unit(T0 + ms.max(0), unit.clone());
        apply(&mut packager);
    }
    packager.handle_publisher_gone(T0 + i64::from(SECONDS) * 1000);
    packager.handle_end(T0 + i64::from(SECONDS) * 1000 + 10_000);
    apply(&mut packager);
    packager
}

/// (codec, width, height, frames read) of every stream ffprobe finds.
fn probe_streams(path: &Path) -> Vec<(String, i64, i64, i64)> {
    let json = ffprobe_json(
        &[
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ],
        path,
    );
    json["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["codec_name"].as_str().unwrap_or("").to_string(),
                s["width"].as_i64().unwrap_or(0),
                s["height"].as_i64().unwrap_or(0),
                s["nb_read_frames"]
                    .as_str()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            )
        })
        .collect()
}

fn check_streams(what: &str, streams: &[(String, i64, i64, i64)]) {
    eprintln!("{what}: {streams:?}");
    let video: Vec<_> = streams.iter().filter(|s| s.0 == "h264").collect();
    let audio: Vec<_> = streams.iter().filter(|s| s.0 == "aac").collect();
    assert!(
        !video.is_empty() && !audio.is_empty(),
        "{what}: {streams:?}"
    );
    for v in video {
        assert_eq!((v.1, v.2), (640, 360), "{what}: resolution");
        assert_eq!(v.3, i64::from(SECONDS * FPS), "{what}: every video frame");
    }
    // 7 s of 48 kHz AAC is 328 frames; the packager trims audio before the first picture.
    for a in audio {
        assert!((320..=330).contains(&a.3), "{what}: audio frames {}", a.3);
    }
}

#[test]
fn ffprobe_reads_hls_ts_and_dash_output() {
    if !tool_available("ffmpeg") || !tool_available("ffprobe") {
        eprintln!("skipped: ffmpeg/ffprobe not installed (scripts/install-deps.sh installs them)");
        return;
    }
    let dir = scratch_dir("packager-ffprobe");
    let input = make_input(&dir);
    assert!(
        input.units.iter().any(|u| u.pts != u.dts),
        "input has B-frames"
    );
    let out = dir.join("live");
    let packager = package(&input, &out);
    assert_eq!(packager.published_segments(), 4, "2 + 2 + 2 + 1 s");

    let multivariant = std::fs::read_to_string(out.join("index.m3u8")).expect("index.m3u8");
    assert!(
        multivariant.contains("RESOLUTION=640x360,FRAME-RATE=30.000"),
        "{multivariant}"
    );
    assert!(multivariant.contains(&format!(
        "CODECS=\"{},mp4a.40.2\"",
        input.video.codec_string()
    )));
    let source = std::fs::read_to_string(out.join("source/index.m3u8")).expect("playlist");
    let durations: Vec<f64> = source
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| d.trim_end_matches(',').parse().expect("EXTINF"))
        .collect();
    assert_eq!(durations, [2.0, 2.0, 2.0, 1.0], "{source}");
    assert!(source.ends_with("#EXT-X-ENDLIST\n"));

    check_streams("HLS fMP4", &probe_streams(&out.join("index.m3u8")));
    check_streams("HLS TS", &probe_streams(&out.join("ts/index.m3u8")));
    check_streams("DASH", &probe_streams(&out.join("index.mpd")));

    // Video timestamps run on across segment boundaries: every frame 1/30 s after the last.
    let json = ffprobe_json(
        &["-select_streams", "v", "-show_entries", "packet=dts"],
        &out.join("source/index.m3u8"),
    );
    let dts: Vec<i64> = json["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .filter_map(|p| p["dts"].as_i64())
        .collect();
    assert_eq!(dts.len(), (SECONDS * FPS) as usize);
    assert!(
        dts.windows(2).all(|w| w[1] - w[0] == 3000),
        "contiguous dts"
    );
    if std::env::var_os("CORECAST_KEEP_OUTPUT").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
