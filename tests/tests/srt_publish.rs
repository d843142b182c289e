//! SRT publishing from real peers (ffmpeg's libsrt, Haivision's srt-live-transmit) into
//! corecast's SRT listener, served as HLS and checked with ffprobe; a wrong passphrase is
//! refused and logged with the caller's address while another stream carries on; HEVC from
//! libx265 comes out as `hvc1` CMAF.

mod srt_common;

use std::process::{Command, Stdio};
use std::time::Duration;

use corecast_e2e::{Server, TempDir, ffmpeg_decode_errors, require_tool, wait_child, wait_success};
use srt_common::*;
use testmedia::TestSource;

#[test]
fn ffmpeg_publishes_with_a_stream_id() {
    let server = Server::start(&base_config(), &[]);
    let mut ffmpeg = ffmpeg_srt_publish(&format!(
        "srt://{}?streamid=publish:live/cam&pkt_size=1316&linger=3",
        server.srt
    ));
    let origin = wait_live(&server, "cam", Duration::from_secs(10));
    assert!(origin.starts_with("srt 127.0.0.1:"), "origin {origin:?}");
    wait_success(&mut ffmpeg, Duration::from_secs(20), "ffmpeg");
    // Loopback loses nothing: every frame but a B-frame or two at the cut.
    check_hls(&server, "cam", FRAMES - 4);
    let log = plain_log(&server);
    assert!(log.contains("SRT connection open"), "{log}");
    assert!(
        log.contains("SRT stats"),
        "final stats line missing:\n{log}"
    );
}

#[test]
fn srt_live_transmit_publishes_with_access_control_id_and_passphrase() {
    let passphrase = "studio-secret-42";
    let server = Server::start(
        &format!(
            "{}[[srt_stream]]\nname = \"studio\"\npassphrase = \"{passphrase}\"\n",
            base_config()
        ),
        &[],
    );
    let (mut ffmpeg, transmit) = srt_live_transmit_publish(&format!(
        "srt://{}?streamid=#!::u=alice,r=live/studio,m=publish&passphrase={passphrase}&pbkeylen=32",
        server.srt
    ));
    wait_live(&server, "studio", Duration::from_secs(10));
    wait_success(&mut ffmpeg, Duration::from_secs(20), "ffmpeg");
    // srt-live-transmit idles after EOF; stop it so the connection (and the stream) ends.
    drop(transmit);
    check_hls(&server, "studio", FRAMES - 10);
    let log = plain_log(&server);
    assert!(
        log.contains("encrypted=true") && log.contains("alice"),
        "{log}"
    );
}

#[test]
fn wrong_passphrase_is_refused_while_another_stream_goes_on() {
    let server = Server::start(
        &format!(
            "{}[[srt_stream]]\nname = \"secure\"\npassphrase = \"the-right-one\"\n",
            base_config()
        ),
        &[],
    );
    let mut open = ffmpeg_srt_publish(&format!(
        "srt://{}?streamid=publish:live/open&linger=3",
        server.srt
    ));
    wait_live(&server, "open", Duration::from_secs(10));

    let mut wrong = ffmpeg_srt_publish(&format!(
        "srt://{}?streamid=publish:live/secure&passphrase=the-wrong-one&pbkeylen=16",
        server.srt
    ));
    let refused = wait_child(&mut wrong, Duration::from_secs(10));
    assert!(!refused.status.success(), "a wrong passphrase connected");
    // Without a passphrase at all: refused too.
    let mut none = ffmpeg_srt_publish(&format!(
        "srt://{}?streamid=publish:live/secure",
        server.srt
    ));
    let refused = wait_child(&mut none, Duration::from_secs(10));
    assert!(!refused.status.success(), "no passphrase connected");
    std::thread::sleep(Duration::from_millis(500));

    let log = plain_log(&server);
    let line = log
        .lines()
        .find(|l| l.contains("SRT caller refused: wrong passphrase"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    assert!(
        line.contains("peer=127.0.0.1:") && line.contains("secure"),
        "{line}"
    );
    assert!(
        log.contains("SRT caller refused: encryption mismatch"),
        "{log}"
    );
    let api = server.api_get("/api/v1/streams/secure");
    assert_ne!(api.status, 200, "the refused stream exists: {}", api.text());

    // The other stream never noticed: still live, and (check_hls) no discontinuity.
    wait_live(&server, "open", Duration::from_secs(1));
    wait_success(&mut open, Duration::from_secs(20), "ffmpeg");
    check_hls(&server, "open", FRAMES - 4);
}

#[test]
fn a_caller_without_stream_id_publishes_the_stream_of_its_port() {
    let port = corecast_e2e::free_udp_port();
    let server = Server::start(
        &format!(
            "{}[[srt_stream]]\nname = \"lobby\"\nport = {port}\nlatency_ms = 200\n",
            base_config()
        ),
        &[],
    );
    // On the main listener, no stream id means nothing: refused.
    let mut lost = ffmpeg_srt_publish(&format!("srt://{}", server.srt));
    let refused = wait_child(&mut lost, Duration::from_secs(10));
    assert!(
        !refused.status.success(),
        "no stream id accepted on the main port"
    );

    let mut ffmpeg = ffmpeg_srt_publish(&format!("srt://127.0.0.1:{port}?linger=3"));
    wait_live(&server, "lobby", Duration::from_secs(10));
    wait_success(&mut ffmpeg, Duration::from_secs(20), "ffmpeg");
    check_hls(&server, "lobby", FRAMES - 4);
    let log = plain_log(&server);
    assert!(
        log.contains("SRT caller refused: no stream id"),
        "no refusal logged:\n{log}"
    );
    assert!(log.contains("latency_ms=200"), "{log}");
}

#[test]
fn ffmpeg_publishes_hevc_served_as_hvc1() {
    require_tool("ffmpeg");
    let server = Server::start(&base_config(), &[]);
    // libx265 (2 B-frames, an IRAP every 2 s) and the AAC tone, as MPEG-TS over SRT.
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(
            TestSource::new(640, 360, SECONDS)
                .hevc()
                .preset("ultrafast")
                .with_audio()
                .ffmpeg_args(),
        )
        .args([
            "-f",
            "mpegts",
            &format!(
                "srt://{}?streamid=publish:live/hevc&pkt_size=1316&linger=3",
                server.srt
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg");
    let origin = wait_live(&server, "hevc", Duration::from_secs(15));
    assert!(origin.starts_with("srt 127.0.0.1:"), "origin {origin:?}");
    wait_success(&mut ffmpeg, Duration::from_secs(30), "ffmpeg");

    // CMAF: HEVC in an hvc1 sample entry at the source size, every frame but a B-frame or two
    // at the cut.
    let tmp = TempDir::new("srt-hevc");
    let video_file = tmp.path().join("video.mp4");
    concatenate(&server, "hevc", "source", &video_file, true);
    let v = first_stream(&video_file, "v:0");
    assert_eq!(v["codec_name"], "hevc", "{v}");
    assert_eq!(v["codec_tag_string"], "hvc1", "{v}");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(640), Some(360))
    );
    let frames = frame_count(&v);
    assert!(
        (FRAMES - 4..=FRAMES).contains(&frames),
        "{frames} video frames of {FRAMES}\n--- server log ---\n{}",
        server.log_text()
    );
    let errors = ffmpeg_decode_errors(video_file.to_str().expect("utf-8 path"));
    assert!(
        errors.trim().is_empty(),
        "CMAF decodes with errors: {errors}"
    );

    let audio_file = tmp.path().join("audio.mp4");
    concatenate(&server, "hevc", "audio", &audio_file, true);
    assert_eq!(first_stream(&audio_file, "a:0")["codec_name"], "aac");

    // HLS-TS: HEVC (stream_type 0x24), decoding cleanly.
    let ts_file = tmp.path().join("all.ts");
    concatenate(&server, "hevc", "ts", &ts_file, false);
    assert_eq!(first_stream(&ts_file, "v:0")["codec_name"], "hevc");
    let errors = ffmpeg_decode_errors(ts_file.to_str().expect("utf-8 path"));
    assert!(
        errors.trim().is_empty(),
        "TS segments decode with errors: {errors}"
    );

    // The multivariant playlist names the codec: hvc1 first, then AAC.
    let master = server.get("/live/hevc/index.m3u8").text();
    let variant = master
        .lines()
        .find(|line| line.starts_with("#EXT-X-STREAM-INF:"))
        .unwrap_or_else(|| panic!("no variant in {master}"));
    let codecs = variant
        .split("CODECS=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CODECS in {variant}"));
    assert!(codecs.starts_with("hvc1."), "{codecs}");
    assert!(codecs.contains("mp4a.40.2"), "{codecs}");
    let log = plain_log(&server);
    assert!(
        log.lines()
            .any(|l| l.contains("SRT publisher live") && l.contains("hvc1.")),
        "{log}"
    );
}
