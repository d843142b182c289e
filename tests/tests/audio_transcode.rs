//! Audio that is not AAC is transcoded once to AAC (issue 5): real ffmpeg publishes H.264 with
//! MP3 over RTMP, and MPEG-TS over UDP with MP2 or AC-3 audio; GStreamer's RTSP server is a
//! camera sending G.711 µ-law; the HLS output (CMAF audio and
//! HLS-TS) is checked with ffprobe for an AAC track of the right rate and channels, as long as
//! the video, starting with it, and carrying the source's tone.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corecast_e2e::{
    MediaPlaylist, Server, TempDir, ffmpeg_decode_errors, ffprobe_json, free_udp_port,
    require_tool, wait_child, wait_success,
};

/// Seconds each publisher sends.
const SECONDS: u32 = 6;

/// The sources' audio: ffmpeg's `sine` at 440 Hz, amplitude 1/8 (RMS 0.088).
const TONE_RMS: f64 = 0.088;

/// ffmpeg sending `SECONDS` of test pattern (H.264, 640x360 at 30 fps, 2 B-frames so the first
/// video tag comes before the first audio one, a keyframe every 2 s) and a 440 Hz tone at
/// `rate` Hz encoded with `audio_args`, in real time, as `format` to `url`.
fn ffmpeg_send(url: &str, format: &str, rate: u32, audio_args: &[&str]) -> Child {
    require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:sample_rate={rate}"))
        .args(["-t", &SECONDS.to_string()])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-bf", "2"])
        .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-pix_fmt", "yuv420p"])
        .args(audio_args)
        .args(["-f", format, url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg")
}

/// Waits for a stream's playlist in `dir` to end, then writes init (if `init`) and every
/// segment into `path`.
fn download(server: &Server, stream: &str, dir: &str, init: bool, path: &Path) {
    let text = server
        .wait_for(
            &format!("/live/{stream}/{dir}/index.m3u8"),
            Duration::from_secs(15),
            |t| t.contains("#EXT-X-ENDLIST"),
        )
        .text();
    let playlist = MediaPlaylist::parse(&text);
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

/// ffprobe's first stream of a kind (`a:0`, `v:0`), with counted packets.
fn stream(path: &Path, select: &str) -> serde_json::Value {
    let probe = ffprobe_json(
        &["-select_streams", select, "-count_packets", "-show_streams"],
        path.to_str().expect("utf-8 path"),
    );
    probe["streams"][0].clone()
}

fn number(value: &serde_json::Value) -> f64 {
    match value {
        serde_json::Value::String(text) => text.parse().expect("a number"),
        other => other.as_f64().expect("a number"),
    }
}

/// The audio of `path` decoded by ffmpeg to mono f32: its RMS over the middle half.
fn decoded_rms(path: &Path) -> f64 {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:a:0", "-ac", "1", "-f", "f32le", "-"])
        .output()
        .expect("ffmpeg");
    assert!(output.status.success(), "{output:?}");
    let samples: Vec<f64> = output
        .stdout
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    let middle = &samples[samples.len() / 4..samples.len() * 3 / 4];
    (middle.iter().map(|s| s * s).sum::<f64>() / middle.len() as f64).sqrt()
}

/// What the AAC of a stream must be.
struct Expected {
    sample_rate: u32,
    channels: u64,
    /// The source codec as the server log names it.
    source: &'static str,
    /// Seconds of video the stream must have.
    video_seconds: std::ops::RangeInclusive<f64>,
}

/// Checks the ended stream's HLS: an AAC track in CMAF and in HLS-TS with the expected
/// parameters, as long as the video, starting with it, decoding without errors, carrying the
/// tone; and the server's one log line about the transcode.
fn check_hls_has_the_tone_as_aac(server: &Server, name: &str, expected: &Expected) {
    let tmp = TempDir::new("audio-transcode");
    let cmaf = tmp.path().join("audio.mp4");
    download(server, name, "audio", true, &cmaf);
    let audio = stream(&cmaf, "a:0");
    assert_eq!(audio["codec_name"], "aac", "{audio}");
    assert_eq!(audio["profile"], "LC", "{audio}");
    assert_eq!(
        number(&audio["sample_rate"]),
        f64::from(expected.sample_rate)
    );
    assert_eq!(audio["channels"].as_u64(), Some(expected.channels));

    let ts = tmp.path().join("all.ts");
    download(server, name, "ts", false, &ts);
    let (audio, video) = (stream(&ts, "a:0"), stream(&ts, "v:0"));
    assert_eq!(audio["codec_name"], "aac", "{audio}");
    assert_eq!(video["codec_name"], "h264", "{video}");
    let rate = f64::from(expected.sample_rate);
    let audio_seconds = number(&audio["nb_read_packets"]) * 1024.0 / rate;
    let video_seconds = number(&video["nb_read_packets"]) / 30.0;
    assert!(
        expected.video_seconds.contains(&video_seconds),
        "{video_seconds} s of video"
    );
    // The packager cuts both tracks at the same segment boundaries; the ends may differ by
    // the AAC frames the last cut leaves out (two frames: 43 ms at 48 kHz, 256 ms at 8 kHz).
    let tolerance = 0.15 + 2048.0 / rate;
    assert!(
        (audio_seconds - video_seconds).abs() < tolerance,
        "{audio_seconds} s of audio for {video_seconds} s of video"
    );
    let (audio_start, video_start) = (number(&audio["start_time"]), number(&video["start_time"]));
    // Within 100 ms, or one AAC frame where a frame is longer (128 ms at 8 kHz): the packager
    // starts audio at the first whole AAC frame after the first video keyframe.
    let start_tolerance = 0.1_f64.max(1024.0 / rate + 0.02);
    assert!(
        (audio_start - video_start).abs() <= start_tolerance,
        "audio starts at {audio_start} s, video at {video_start} s"
    );
    eprintln!(
        "{name}: {audio_seconds:.3} s of audio from {audio_start} s, {video_seconds:.3} s of video \
         from {video_start} s"
    );
    let errors = ffmpeg_decode_errors(ts.to_str().expect("utf-8 path"));
    assert!(
        errors.trim().is_empty(),
        "TS segments decode with errors: {errors}"
    );
    let rms = decoded_rms(&ts);
    eprintln!("{name}: decoded audio RMS {rms:.4}");
    assert!(
        (rms - TONE_RMS).abs() < 0.02,
        "decoded audio RMS {rms}, the tone's is {TONE_RMS}"
    );

    let master = server.get(&format!("/live/{name}/index.m3u8")).text();
    assert!(master.contains("mp4a.40.2"), "{master}");
    // The stream's status says what the audio was before it became AAC.
    let status: serde_json::Value =
        serde_json::from_slice(&server.api_get(&format!("/api/v1/streams/{name}")).body)
            .expect("stream status JSON");
    let audio_rendition = status["renditions"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "audio"))
        .unwrap_or_else(|| panic!("no audio rendition: {status}"));
    let from = audio_rendition["transcoded_from"]
        .as_str()
        .unwrap_or_default();
    assert!(
        from.starts_with(&format!("{} {} Hz", expected.source, expected.sample_rate)),
        "audio rendition: {audio_rendition}"
    );
    assert_eq!(
        audio_rendition["corrupt_units"].as_u64(),
        Some(0),
        "a clean source has no corrupt audio units: {audio_rendition}"
    );
    let log = server.log_text();
    let line = format!("audio {} {} Hz", expected.source, expected.sample_rate);
    assert_eq!(
        log.lines()
            .filter(|l| l.contains(&line) && l.contains("-> transcoded to AAC-LC"))
            .count(),
        1,
        "one '{line} ... -> transcoded to AAC-LC' line expected:\n{log}"
    );
}

#[test]
fn rtmp_mp3_is_served_as_aac_in_sync() {
    let server = Server::start(
        "[demo]\nenabled = false\n[packaging]\nwindow = 10\ngrace_period_seconds = 1\n",
        &[],
    );
    let mut ffmpeg = ffmpeg_send(
        &server.rtmp_url("mp3"),
        "flv",
        44_100,
        &["-c:a", "libmp3lame", "-b:a", "128k", "-ac", "2"],
    );
    let out = wait_child(&mut ffmpeg, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_hls_has_the_tone_as_aac(
        &server,
        "mp3",
        &Expected {
            sample_rate: 44_100,
            channels: 2,
            source: "mp3",
            video_seconds: f64::from(SECONDS) - 0.5..=f64::from(SECONDS) + 0.1,
        },
    );
}

/// A UDP source fed by ffmpeg as MPEG-TS with `audio_args`; returns the server once the
/// feed has ended (the source times out 1.5 s after ffmpeg stops).
fn udp_feed(rate: u32, audio_args: &[&str]) -> Server {
    let port = free_udp_port();
    let server = Server::start(
        &format!(
            "[demo]\nenabled = false\n[packaging]\nwindow = 10\ngrace_period_seconds = 1\n\
             [[source]]\nname = \"feed\"\nurl = \"udp://127.0.0.1:{port}\"\n\
             timeout_seconds = 1.5\n"
        ),
        &[],
    );
    let started = Instant::now();
    let mut ffmpeg = ffmpeg_send(
        &format!("udp://127.0.0.1:{port}?pkt_size=1316"),
        "mpegts",
        rate,
        audio_args,
    );
    let out = wait_child(&mut ffmpeg, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "ffmpeg failed after {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    server
}

#[test]
fn udp_mpeg_ts_with_mp2_is_served_as_aac() {
    let server = udp_feed(48_000, &["-c:a", "mp2", "-b:a", "192k", "-ac", "2"]);
    check_hls_has_the_tone_as_aac(
        &server,
        "feed",
        &Expected {
            sample_rate: 48_000,
            channels: 2,
            source: "mp2",
            video_seconds: f64::from(SECONDS) - 0.5..=f64::from(SECONDS) + 0.1,
        },
    );
}

#[test]
fn udp_mpeg_ts_with_ac3_in_private_pes_is_served_as_aac() {
    // system_b: AC-3 as DVB carries it, stream_type 0x06 with an AC-3 descriptor.
    let server = udp_feed(
        48_000,
        &[
            "-c:a",
            "ac3",
            "-b:a",
            "192k",
            "-ac",
            "2",
            "-mpegts_flags",
            "system_b",
        ],
    );
    check_hls_has_the_tone_as_aac(
        &server,
        "feed",
        &Expected {
            sample_rate: 48_000,
            channels: 2,
            source: "ac3",
            video_seconds: f64::from(SECONDS) - 0.5..=f64::from(SECONDS) + 0.1,
        },
    );
}

/// A GStreamer RTSP server (gst-rtsp-server through Debian's python3-gi) at
/// rtsp://127.0.0.1:PORT/test for SECONDS: H.264 test pattern (640x360, 30 fps, an IDR every
/// 60 frames) and a 440 Hz tone of amplitude 1/8 as G.711 mu-law at 8 kHz (RTP PCMU), the
/// audio a typical IP camera sends.
const G711_CAMERA: &str = r#"
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
port, seconds = sys.argv[1], int(sys.argv[2])
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true ! video/x-raw,width=640,height=360,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 "
    "! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=1 "
    "audiotestsrc is-live=true freq=440 volume=0.125 samplesperbuffer=160 "
    "! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/test", factory)
if server.attach(None) == 0:
    sys.exit("cannot listen on port %s" % port)
loop = GLib.MainLoop()
GLib.timeout_add_seconds(seconds, loop.quit)
loop.run()
"#;

#[test]
fn rtsp_camera_with_g711_is_served_as_aac() {
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "/usr/bin/python3 missing: run scripts/install-deps.sh --test"
    );
    let tmp = TempDir::new("g711-camera");
    let script = tmp.path().join("camera.py");
    std::fs::write(&script, G711_CAMERA).expect("write the camera script");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port();
    let mut camera = Command::new(python)
        .arg(&script)
        .args([port.to_string(), SECONDS.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the RTSP camera");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the RTSP camera did not listen on {port} (is gir1.2-gst-rtsp-server-1.0 installed?)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let server = Server::start(
        &format!(
            "[demo]\nenabled = false\n[packaging]\nwindow = 10\ngrace_period_seconds = 1\n\
             [[source]]\nname = \"cam\"\nurl = \"rtsp://127.0.0.1:{port}/test\"\n\
             timeout_seconds = 2\n"
        ),
        &[],
    );
    wait_success(&mut camera, Duration::from_secs(30), "the RTSP camera");
    check_hls_has_the_tone_as_aac(
        &server,
        "cam",
        &Expected {
            sample_rate: 8_000,
            channels: 1,
            source: "pcm_mulaw",
            // The camera runs SECONDS by its own clock, from before corecast connects.
            video_seconds: f64::from(SECONDS) - 3.0..=f64::from(SECONDS) + 1.5,
        },
    );
}
