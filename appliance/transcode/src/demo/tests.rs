//! The demo source end to end: real x264 and AAC encoders, checked by our own parsers and by
//! FFmpeg's decoders.

use std::path::PathBuf;
use std::process::Command;
use std::time::UNIX_EPOCH;

use media::Codec;

use super::*;

/// Runs the demo the way the engine does: one `produce` per `step` of media time.
fn run(config: DemoConfig, seconds: u64, step: Duration) -> (DemoSource, Vec<Vec<AccessUnit>>) {
    let mut source = DemoSource::new(config).unwrap();
    let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut calls = Vec::new();
    let mut media_time = Duration::ZERO;
    while media_time <= Duration::from_secs(seconds) {
        calls.push(source.produce(media_time, start + media_time).unwrap());
        media_time += step;
    }
    (source, calls)
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("corecast-demo-{}-{name}", std::process::id()))
}

/// Runs `program args… path` and returns its stdout, failing on a non-zero exit or any stderr.
fn run_tool(program: &str, args: &[&str], path: &PathBuf, tail: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .arg(path)
        .args(tail)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (run scripts/install-deps.sh --test)"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "{program} on {path:?}: {stderr}"
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn probe_count(path: &PathBuf, stream: &str) -> String {
    run_tool(
        "ffprobe",
        &["-v", "error", "-count_frames", "-select_streams", stream],
        path,
        &[
            "-show_entries",
            "stream=codec_name,width,height,sample_rate,channels,nb_read_frames",
            "-of",
            "default=noprint_wrappers=1",
        ],
    )
}

#[test]
fn four_seconds_of_default_demo_cut_at_two_second_idrs_and_decode_cleanly() {
    let (source, calls) = run(DemoConfig::default(), 4, Duration::from_millis(100));

    // Configs: what the playlists and init segments are made from.
    let avc = source.video_config();
    assert_eq!((avc.width, avc.height), (1280, 720));
    assert_eq!(avc.frame_rate, Some((30, 1)));
    assert_eq!(avc.profile_idc, 100);
    let aac = source.audio_config();
    assert_eq!(
        (aac.object_type, aac.sample_rate, aac.channels),
        (2, 48_000, 2)
    );

    // Every call returns exactly what is due by its media time, in dts order.
    let mut media_time = Duration::ZERO;
    for units in &calls {
        let to_seconds = |u: &AccessUnit| match u.codec {
            Codec::H264 => u.dts as f64 / 90_000.0,
            _ => u.dts as f64 / 48_000.0,
        };
        for pair in units.windows(2) {
            assert!(to_seconds(&pair[0]) <= to_seconds(&pair[1]), "{pair:?}");
        }
        for unit in units {
            assert!(to_seconds(unit) <= media_time.as_secs_f64() + 1e-9);
        }
        media_time += Duration::from_millis(100);
    }

    let all: Vec<&AccessUnit> = calls.iter().flatten().collect();
    let video: Vec<&AccessUnit> = all
        .iter()
        .copied()
        .filter(|u| u.codec == Codec::H264)
        .collect();
    let audio: Vec<&AccessUnit> = all
        .iter()
        .copied()
        .filter(|u| u.codec == Codec::Aac)
        .collect();

    // 0..=4 s at 30 fps: frames 0..=120, IDRs exactly at 0, 2 and 4 s.
    assert_eq!(video.len(), 121);
    for (index, unit) in video.iter().enumerate() {
        assert_eq!(unit.pts, index as i64 * 3000);
        assert_eq!(unit.dts, unit.pts);
    }
    let keyframes: Vec<i64> = video.iter().filter(|u| u.keyframe).map(|u| u.pts).collect();
    assert_eq!(keyframes, vec![0, 180_000, 360_000]);

    // Audio: 1024 apart from 0, every unit with pts <= 4 s (192000 / 1024 = 187.5 -> 188).
    assert_eq!(audio.len(), 188);
    for (index, unit) in audio.iter().enumerate() {
        assert_eq!(unit.pts, index as i64 * 1024);
        assert!(unit.keyframe);
    }

    // Real decoders: Annex B for the video (parameter sets before each IDR), ADTS for the audio.
    let mut h264 = Vec::new();
    for unit in &video {
        if unit.keyframe {
            for set in avc.sps.iter().chain(&avc.pps) {
                h264.extend_from_slice(&[0, 0, 0, 1]);
                h264.extend_from_slice(set);
            }
        }
        assert!(x264::append_annex_b(&unit.payload, &mut h264));
    }
    let mut adts = Vec::new();
    for unit in &audio {
        adts.extend_from_slice(&aac.adts_header(unit.payload.len()));
        adts.extend_from_slice(&unit.payload);
    }
    let (h264_path, adts_path) = (temp_path("demo.h264"), temp_path("demo.aac"));
    std::fs::write(&h264_path, &h264).unwrap();
    std::fs::write(&adts_path, &adts).unwrap();

    let decode = ["-v", "error", "-i"];
    run_tool("ffmpeg", &decode, &h264_path, &["-f", "null", "-"]);
    run_tool("ffmpeg", &decode, &adts_path, &["-f", "null", "-"]);
    let video_probe = probe_count(&h264_path, "v:0");
    let audio_probe = probe_count(&adts_path, "a:0");
    let _ = std::fs::remove_file(&h264_path);
    let _ = std::fs::remove_file(&adts_path);
    for line in [
        "codec_name=h264",
        "width=1280",
        "height=720",
        "nb_read_frames=121",
    ] {
        assert!(
            video_probe.lines().any(|l| l == line),
            "{line} not in {video_probe}"
        );
    }
    for line in [
        "codec_name=aac",
        "sample_rate=48000",
        "channels=2",
        "nb_read_frames=188",
    ] {
        assert!(
            audio_probe.lines().any(|l| l == line),
            "{line} not in {audio_probe}"
        );
    }
}

#[test]
fn one_call_catches_up_like_many() {
    let config = DemoConfig {
        width: 320,
        height: 180,
        video_kbps: 300,
        keyframe_interval: Duration::from_millis(500),
        ..DemoConfig::default()
    };
    let (_, steps) = run(config.clone(), 2, Duration::from_millis(40));
    let stepped: Vec<(Codec, i64, bool)> = steps
        .iter()
        .flatten()
        .map(|u| (u.codec, u.pts, u.keyframe))
        .collect();
    let mut source = DemoSource::new(config).unwrap();
    let burst: Vec<(Codec, i64, bool)> = source
        .produce(Duration::from_secs(2), UNIX_EPOCH)
        .unwrap()
        .iter()
        .map(|u| (u.codec, u.pts, u.keyframe))
        .collect();
    assert_eq!(stepped, burst);
    let keyframes: Vec<i64> = burst
        .iter()
        .filter(|u| u.0 == Codec::H264 && u.2)
        .map(|u| u.1)
        .collect();
    assert_eq!(keyframes, vec![0, 45_000, 90_000, 135_000, 180_000]);
}

#[test]
fn configs_that_cannot_cut_exact_segments_are_refused() {
    let uneven = DemoConfig {
        fps: 30,
        keyframe_interval: Duration::from_millis(1010),
        ..DemoConfig::default()
    };
    assert!(matches!(
        DemoSource::new(uneven),
        Err(TranscodeError::DemoConfig {
            setting: "keyframe_interval",
            ..
        })
    ));
    let odd = DemoConfig {
        width: 641,
        ..DemoConfig::default()
    };
    assert!(matches!(
        DemoSource::new(odd),
        Err(TranscodeError::DemoConfig {
            setting: "size",
            ..
        })
    ));
    let zero = DemoConfig {
        keyframe_interval: Duration::ZERO,
        ..DemoConfig::default()
    };
    assert!(DemoSource::new(zero).is_err());
}
