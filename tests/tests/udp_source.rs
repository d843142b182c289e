//! MPEG-TS over UDP in (real ffmpeg, `-f mpegts udp://...`), unicast and multicast on
//! loopback, H.264 and HEVC (libx265), served as HLS; the segments are checked with ffprobe.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corecast_e2e::{
    MediaPlaylist, Server, TempDir, ffmpeg_decode_errors, ffprobe_json, require_tool, wait_success,
};

/// A UDP port nobody uses right now.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP port")
        .port()
}

/// The video codec a test feed carries.
#[derive(Clone, Copy, Debug)]
enum Video {
    /// libx264, 2 B-frames.
    H264,
    /// libx265, 2 B-frames.
    Hevc,
}

impl Video {
    /// ffmpeg's encoder arguments: a keyframe exactly every 2 s, no scene cuts.
    fn ffmpeg_args(self) -> &'static [&'static str] {
        match self {
            Video::H264 => &[
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-bf",
                "2",
                "-g",
                "60",
                "-keyint_min",
                "60",
                "-sc_threshold",
                "0",
            ],
            Video::Hevc => &[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "pools=2:log-level=error:bframes=2:keyint=60:min-keyint=60:scenecut=0",
            ],
        }
    }

    /// ffprobe's codec_name.
    fn codec_name(self) -> &'static str {
        match self {
            Video::H264 => "h264",
            Video::Hevc => "hevc",
        }
    }

    /// The CMAF sample entry (ffprobe's codec_tag_string).
    fn sample_entry(self) -> &'static str {
        match self {
            Video::H264 => "avc1",
            Video::Hevc => "hvc1",
        }
    }

    /// How the multivariant playlist's CODECS attribute starts (video first).
    fn codecs_prefix(self) -> &'static str {
        match self {
            Video::H264 => "CODECS=\"avc1.64",
            Video::Hevc => "CODECS=\"hvc1.",
        }
    }
}

/// ffmpeg sending 8 s of test pattern (`video`, 640x360 at 30 fps) and a tone (AAC) as
/// MPEG-TS in real time to `url`, 7 packets per datagram.
fn ffmpeg_send(url: &str, video: Video) -> Child {
    require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "8"])
        .args(video.ffmpeg_args())
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-ac", "2",
        ])
        .args(["-f", "mpegts", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg")
}

/// Downloads init + every segment of a media playlist into one file.
fn concatenate(server: &Server, dir: &str, playlist: &MediaPlaylist, path: &Path, init: bool) {
    let mut bytes = Vec::new();
    if init {
        let response = server.get(&format!("/live/feed/{dir}/init.mp4"));
        assert_eq!(response.status, 200, "{dir}/init.mp4");
        bytes.extend_from_slice(&response.body);
    }
    for (uri, _, _) in &playlist.segments {
        let response = server.get(&format!("/live/feed/{dir}/{uri}"));
        assert_eq!(response.status, 200, "{dir}/{uri} listed but not served");
        bytes.extend_from_slice(&response.body);
    }
    std::fs::write(path, bytes).expect("write segments");
}

fn first_stream(path: &Path, select: &str) -> serde_json::Value {
    let probe = ffprobe_json(
        &["-select_streams", select, "-count_frames", "-show_streams"],
        path.to_str().expect("utf-8 path"),
    );
    probe["streams"][0].clone()
}

/// Runs one feed through corecast: `source_url` in the config, ffmpeg sending `video` to
/// `send_url`.
fn feed_is_served(source_url: &str, send_url: &str, video: Video) {
    // Segments of 2 s and a window that holds the whole 8 s feed, so every segment can be
    // fetched at the end; the source times out 1.5 s after ffmpeg stops and the stream ends
    // 1 s later.
    let server = Server::start(
        &format!(
            "[demo]\nenabled = false\n[packaging]\nwindow = 10\ngrace_period_seconds = 1\n\
             [[source]]\nname = \"feed\"\nurl = \"{source_url}\"\ntimeout_seconds = 1.5\n"
        ),
        &[],
    );
    let mut ffmpeg = ffmpeg_send(send_url, video);

    // Live: the API shows the source as the stream's origin while ffmpeg sends.
    let deadline = Instant::now() + Duration::from_secs(12);
    let origin = loop {
        let api = server.api_get("/api/v1/streams/feed");
        if api.status == 200 {
            let stream: serde_json::Value = serde_json::from_slice(&api.body).expect("JSON");
            if stream["state"] == "live" {
                break stream["origin"].as_str().unwrap_or_default().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the feed never went live from {send_url} (if this is the multicast test: \
             loopback multicast needs `lo` to deliver to group members, see docs/protocols.md)\n\
             --- server log ---\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(origin.starts_with("udp 127.0.0.1:"), "origin {origin:?}");

    wait_success(&mut ffmpeg, Duration::from_secs(20), "ffmpeg");
    let ended = |dir: &str| {
        let text = server
            .wait_for(
                &format!("/live/feed/{dir}/index.m3u8"),
                Duration::from_secs(10),
                |t| t.contains("#EXT-X-ENDLIST"),
            )
            .text();
        MediaPlaylist::parse(&text)
    };
    let (source, audio, ts) = (ended("source"), ended("audio"), ended("ts"));

    let tmp = TempDir::new("udp");
    let video_file = tmp.path().join("video.mp4");
    concatenate(&server, "source", &source, &video_file, true);
    let v = first_stream(&video_file, "v:0");
    assert_eq!(v["codec_name"], video.codec_name());
    assert_eq!(v["codec_tag_string"], video.sample_entry());
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(640), Some(360))
    );
    let frames: u64 = v["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("frame count");
    // 8 s at 30 fps; loopback loses nothing, so only a datagram lost to a full socket buffer
    // could cost a frame or two.
    assert!(
        (236..=240).contains(&frames),
        "{frames} video frames of 240"
    );

    let audio_file = tmp.path().join("audio.mp4");
    concatenate(&server, "audio", &audio, &audio_file, true);
    let a = first_stream(&audio_file, "a:0");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["sample_rate"], "48000");
    assert_eq!(a["channels"], 2);

    let ts_file = tmp.path().join("all.ts");
    concatenate(&server, "ts", &ts, &ts_file, false);
    assert_eq!(
        first_stream(&ts_file, "v:0")["codec_name"],
        video.codec_name()
    );
    assert_eq!(first_stream(&ts_file, "a:0")["codec_name"], "aac");
    let errors = ffmpeg_decode_errors(ts_file.to_str().expect("utf-8 path"));
    assert!(
        errors.trim().is_empty(),
        "TS segments decode with errors: {errors}"
    );

    let master = server.get("/live/feed/index.m3u8").text();
    for needle in ["RESOLUTION=640x360", "mp4a.40.2", video.codecs_prefix()] {
        assert!(master.contains(needle), "{needle} missing in:\n{master}");
    }
    let log = server.log_text();
    assert_eq!(log.matches("UDP source live").count(), 1, "{log}");
    assert_eq!(log.matches("UDP source silent").count(), 1, "{log}");
}

#[test]
fn unicast_udp_feed_is_served_as_hls() {
    let port = free_udp_port();
    feed_is_served(
        &format!("udp://127.0.0.1:{port}"),
        &format!("udp://127.0.0.1:{port}?pkt_size=1316"),
        Video::H264,
    );
}

#[test]
fn multicast_udp_feed_is_served_as_hls() {
    let port = free_udp_port();
    feed_is_served(
        &format!("udp://239.255.0.1:{port}?interface=lo"),
        &format!("udp://239.255.0.1:{port}?pkt_size=1316&localaddr=127.0.0.1&ttl=1"),
        Video::H264,
    );
}

#[test]
fn hevc_udp_feed_is_served_as_hvc1() {
    let port = free_udp_port();
    feed_is_served(
        &format!("udp://127.0.0.1:{port}"),
        &format!("udp://127.0.0.1:{port}?pkt_size=1316"),
        Video::Hevc,
    );
}
