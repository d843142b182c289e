//! The issue's headline case: an RTMP publish of 12 s of 1080p30 H.264 with B-frames and AAC,
//! through the default ladder (1080p, 720p, 480p, 360p, x264 veryfast) on one transcode worker.
//! The source is encoded beforehand and published with `-c copy`, so the publisher costs
//! nothing on this 2-core box while the ladder runs in real time. Checked with ffprobe: every
//! rung at its size, key frames at the same pts in every rendition at every segment boundary,
//! the audio in step with the video, the playlists and the DASH MPD.

use std::process::{Command, Stdio};
use std::time::Duration;

use corecast_e2e::codec_rungs::packets;
use corecast_e2e::{
    Server, TempDir, ffmpeg_decode_errors, ffprobe_json, require_tool, video_sizes, wait_success,
};
use testmedia::TestSource;

const CONFIG: &str = r#"
[demo]
enabled = false
[packaging]
window = 10
grace_period_seconds = 2
[transcode]
enabled = true
"#;

const RENDITIONS: [(&str, u64, u64); 5] = [
    ("source", 1920, 1080),
    ("1080p", 1920, 1080),
    ("720p", 1280, 720),
    ("480p", 854, 480),
    ("360p", 640, 360),
];

/// Writes init + every segment of `rendition` to `dir/<rendition>.mp4` and returns its path.
fn download(server: &Server, rendition: &str, segments: &[String], dir: &TempDir) -> String {
    let mut bytes = server.get(&format!("/live/cam/{rendition}/init.mp4")).body;
    for uri in segments {
        let segment = server.get(&format!("/live/cam/{rendition}/{uri}"));
        assert_eq!(segment.status, 200, "{rendition}/{uri}");
        bytes.extend_from_slice(&segment.body);
    }
    let path = dir.path().join(format!("{rendition}.mp4"));
    std::fs::write(&path, bytes).expect("write");
    path.to_str().expect("utf-8 path").to_owned()
}

/// First pts and duration in seconds of a file's only stream, by ffprobe.
fn start_and_duration(path: &str) -> (f64, f64) {
    let probe = ffprobe_json(&["-show_streams"], path);
    let stream = &probe["streams"][0];
    let number = |key: &str| {
        stream[key]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{key} in {stream}"))
    };
    (number("start_time"), number("duration"))
}

#[test]
fn a_1080p30_publish_gets_the_default_ladder_aligned_and_in_sync() {
    require_tool("ffmpeg");
    let dir = TempDir::new("ladder-1080p");
    let source = TestSource::new(1920, 1080, 12)
        .with_audio()
        .preset("ultrafast")
        .make(dir.path());
    let source_units = source.video_units();
    assert!(
        source_units.iter().any(|u| u.pts != u.dts),
        "the source has B-frames"
    );
    let source_pictures = source_units.len();
    let server = Server::start(CONFIG, &[]);
    let mut ffmpeg = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-i",
        ])
        .arg(&source.path)
        .args(["-c", "copy", "-f", "flv"])
        .arg(server.rtmp_url("cam"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg");
    let names: Vec<&str> = RENDITIONS
        .iter()
        .map(|(name, _, _)| *name)
        .chain(["audio"])
        .collect();
    let playlists = server.wait_until_ended("cam", &names, Duration::from_secs(90));
    wait_success(&mut ffmpeg, Duration::from_secs(5), "ffmpeg");

    // Every video rendition lists the source's segments, numbers and durations.
    let source_playlist = &playlists[0];
    assert!(
        (5..=7).contains(&source_playlist.segments.len()),
        "{}",
        source_playlist.text
    );
    for (playlist, name) in playlists.iter().zip(&names).take(RENDITIONS.len()) {
        assert_eq!(playlist.segments, source_playlist.segments, "{name}");
        assert_eq!(playlist.media_sequence, source_playlist.media_sequence);
    }
    let uris: Vec<String> = source_playlist
        .segments
        .iter()
        .map(|(uri, _, _)| uri.clone())
        .collect();

    // Each rendition at its size, decoding cleanly, with key frames exactly where the
    // source's segments start (and the passthrough's own key frames, every 2 s, are those).
    let boundaries: Vec<i64> = {
        let path = download(&server, "source", &uris, &dir);
        packets(&path)
            .into_iter()
            .filter(|(_, key)| *key)
            .map(|(pts, _)| pts)
            .collect()
    };
    assert_eq!(
        boundaries.len(),
        uris.len(),
        "one key frame per source segment"
    );
    let mut video_span = (0.0, 0.0);
    for (name, width, height) in RENDITIONS {
        let path = download(&server, name, &uris, &dir);
        let probe = ffprobe_json(&["-show_streams"], &path);
        let stream = &probe["streams"][0];
        assert_eq!(stream["codec_name"], "h264", "{name}");
        assert_eq!(
            (stream["width"].as_u64(), stream["height"].as_u64()),
            (Some(width), Some(height)),
            "{name}"
        );
        let all = packets(&path);
        eprintln!("{name}: {} pictures", all.len());
        // A ladder behind real time drops pictures by policy (never a segment's first); on a
        // box this size it keeps up, so a large shortfall is a fault.
        assert!(
            all.len() * 10 >= source_pictures * 9,
            "{name}: {} of {source_pictures} pictures",
            all.len()
        );
        let keys: Vec<i64> = all
            .into_iter()
            .filter(|(_, key)| *key)
            .map(|(pts, _)| pts)
            .collect();
        assert_eq!(keys, boundaries, "{name}: key frames at the segment starts");
        let errors = ffmpeg_decode_errors(&path);
        assert!(
            errors.trim().is_empty(),
            "{name} decodes with errors: {errors}"
        );
        if name == "source" {
            video_span = start_and_duration(&path);
        }
    }

    // The audio rendition: as long as the video and starting with it.
    let audio_uris: Vec<String> = playlists[RENDITIONS.len()]
        .segments
        .iter()
        .map(|(uri, _, _)| uri.clone())
        .collect();
    let audio = download(&server, "audio", &audio_uris, &dir);
    let (audio_start, audio_duration) = start_and_duration(&audio);
    let (video_start, video_duration) = video_span;
    assert!(
        (audio_start - video_start).abs() < 0.1,
        "audio starts at {audio_start}, video at {video_start}"
    );
    assert!(
        (audio_duration - video_duration).abs() < 0.2,
        "audio lasts {audio_duration} s, video {video_duration} s"
    );
    let errors = ffmpeg_decode_errors(&audio);
    assert!(
        errors.trim().is_empty(),
        "audio decodes with errors: {errors}"
    );

    // The multivariant playlist and the MPD list every rendition; ffprobe reads the MPD.
    let multivariant = server.get("/live/cam/index.m3u8").text();
    for (_, width, height) in RENDITIONS {
        assert!(
            multivariant.contains(&format!("RESOLUTION={width}x{height}")),
            "{multivariant}"
        );
    }
    let url = server.url("/live/cam/index.mpd");
    let sizes = video_sizes(&url);
    let probe = ffprobe_json(&["-show_streams"], &url);
    let streams = probe["streams"].as_array().expect("streams");
    assert_eq!(
        sizes,
        [
            (640, 360),
            (854, 480),
            (1280, 720),
            (1920, 1080),
            (1920, 1080)
        ],
        "ffprobe of the MPD"
    );
    assert_eq!(
        streams
            .iter()
            .filter(|s| s["codec_type"] == "audio")
            .count(),
        1,
        "one audio stream in the MPD"
    );
}
