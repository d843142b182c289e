//! What the SRT end-to-end tests share: real ffmpeg and srt-live-transmit as peers, and the
//! checks of the HLS a stream produced.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corecast_e2e::{
    MediaPlaylist, Server, TempDir, ffmpeg_decode_errors, ffprobe_json, require_tool,
};
use testmedia::TestSource;

/// Seconds of media each publisher sends.
pub const SECONDS: u32 = 8;
/// Frames in that (30 fps).
pub const FRAMES: u64 = SECONDS as u64 * 30;

/// A config with no demo, a short grace period and a window that holds a whole test stream.
pub fn base_config() -> String {
    "[demo]\nenabled = false\n[packaging]\nwindow = 10\ngrace_period_seconds = 1\n".to_owned()
}

/// ffmpeg arguments of the test source (640x360 H.264 with B-frames, 2 s GOP, AAC tone).
fn source_args() -> Vec<String> {
    TestSource::new(640, 360, SECONDS)
        .with_audio()
        .ffmpeg_args()
}

/// ffmpeg publishing the test source in real time as MPEG-TS to an `srt://` URL.
pub fn ffmpeg_srt_publish(url: &str) -> Child {
    require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(source_args())
        .args(["-f", "mpegts", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg")
}

/// A child process killed (and reaped) when this is dropped, so a failing test leaves no
/// srt-live-transmit behind (it does not end at EOF on its own).
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ffmpeg writing the test source in real time as MPEG-TS to stdout, piped into
/// `srt-live-transmit file://con <target>` (which needs a pipe on stdin). Returns both; drop
/// the second to stop srt-live-transmit.
pub fn srt_live_transmit_publish(target: &str) -> (Child, Reaped) {
    require_tool("ffmpeg");
    require_tool("srt-live-transmit");
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(source_args())
        .args(["-f", "mpegts", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg");
    let stdout = ffmpeg.stdout.take().expect("ffmpeg stdout");
    let transmit = Command::new("srt-live-transmit")
        .args(["-q", "file://con", target])
        .stdin(stdout)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start srt-live-transmit");
    (ffmpeg, Reaped(transmit))
}

/// Waits until the API shows `stream` live; returns its origin.
pub fn wait_live(server: &Server, stream: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let api = server.api_get(&format!("/api/v1/streams/{stream}"));
        if api.status == 200 {
            let status: serde_json::Value = serde_json::from_slice(&api.body).expect("JSON");
            if status["state"] == "live" {
                return status["origin"].as_str().unwrap_or_default().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{stream} never went live\n--- server log ---\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The ended media playlist `dir` of `stream`.
pub fn ended_playlist(server: &Server, stream: &str, dir: &str) -> MediaPlaylist {
    let text = server
        .wait_for(
            &format!("/live/{stream}/{dir}/index.m3u8"),
            Duration::from_secs(12),
            |t| t.contains("#EXT-X-ENDLIST"),
        )
        .text();
    MediaPlaylist::parse(&text)
}

/// Downloads (init +) every segment of a media playlist into one file.
pub fn concatenate(server: &Server, stream: &str, dir: &str, path: &Path, init: bool) {
    let playlist = ended_playlist(server, stream, dir);
    let mut bytes = Vec::new();
    if init {
        let response = server.get(&format!("/live/{stream}/{dir}/init.mp4"));
        assert_eq!(response.status, 200, "{dir}/init.mp4");
        bytes.extend_from_slice(&response.body);
    }
    for (uri, _, _) in &playlist.segments {
        let response = server.get(&format!("/live/{stream}/{dir}/{uri}"));
        assert_eq!(response.status, 200, "{dir}/{uri} listed but not served");
        bytes.extend_from_slice(&response.body);
    }
    std::fs::write(path, bytes).expect("write segments");
}

pub fn first_stream(path: &Path, select: &str) -> serde_json::Value {
    let probe = ffprobe_json(
        &["-select_streams", select, "-count_frames", "-show_streams"],
        path.to_str().expect("utf-8 path"),
    );
    probe["streams"][0].clone()
}

pub fn frame_count(stream: &serde_json::Value) -> u64 {
    stream["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("frame count")
}

/// Checks the stream's ended HLS with ffprobe: H.264 640x360 with at least `min_frames`
/// frames in the CMAF rendition, AAC audio, TS segments that decode without errors, and no
/// discontinuity (one publisher from start to end). Returns the video frame count.
pub fn check_hls(server: &Server, stream: &str, min_frames: u64) -> u64 {
    let tmp = TempDir::new("srt-hls");
    let video_file = tmp.path().join("video.mp4");
    concatenate(server, stream, "source", &video_file, true);
    let v = first_stream(&video_file, "v:0");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(640), Some(360))
    );
    let frames = frame_count(&v);
    assert!(
        (min_frames..=FRAMES).contains(&frames),
        "{frames} video frames, expected {min_frames}..={FRAMES}\n--- server log ---\n{}",
        server.log_text()
    );

    let audio_file = tmp.path().join("audio.mp4");
    concatenate(server, stream, "audio", &audio_file, true);
    let a = first_stream(&audio_file, "a:0");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["sample_rate"], "48000");

    let ts_file = tmp.path().join("all.ts");
    concatenate(server, stream, "ts", &ts_file, false);
    assert_eq!(first_stream(&ts_file, "v:0")["codec_name"], "h264");
    let errors = ffmpeg_decode_errors(ts_file.to_str().expect("utf-8 path"));
    assert!(
        errors.trim().is_empty(),
        "TS segments decode with errors: {errors}"
    );
    let playlist = ended_playlist(server, stream, "source");
    assert!(
        playlist
            .segments
            .iter()
            .all(|(_, _, discontinuity)| !discontinuity),
        "one publisher, no discontinuity expected:\n{}",
        playlist.text
    );
    frames
}

/// The server's log without terminal colour codes (tracing colours even a file).
pub fn plain_log(server: &Server) -> String {
    let text = server.log_text();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The value of `name=` in a log line, as a number.
pub fn log_field(line: &str, name: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.trim_matches('"').parse().ok())
}
