//! `read:live/NAME`: a live stream played back out over SRT as MPEG-TS, read by ffmpeg's
//! libsrt with an AES-128 passphrase and checked with ffprobe; a read of a stream that does not exist is refused.

mod srt_common;

use std::process::{Command, Stdio};
use std::time::Duration;

use corecast_e2e::{Server, TempDir, ffmpeg_decode_errors, wait_child};
use srt_common::*;

#[test]
fn a_live_stream_is_read_back_over_srt() {
    // Encrypted (AES-128, corecast announcing the key as the sender): the stream's passphrase
    // applies to readers too.
    let passphrase = "relay-passphrase-1";
    let server = Server::start(
        &format!(
            "{}[[srt_stream]]\nname = \"relay\"\npassphrase = \"{passphrase}\"\nkey_length = 16\n",
            base_config()
        ),
        &[],
    );
    // Published over RTMP: a reader gets any stream, however it came in.
    let mut publisher = corecast_e2e::ffmpeg_publish(&server.rtmp_url("relay"), SECONDS + 4);
    wait_live(&server, "relay", Duration::from_secs(10));
    // The reader starts at the newest complete segment.
    server.wait_for("/live/relay/ts/index.m3u8", Duration::from_secs(10), |t| {
        t.contains(".ts")
    });

    let tmp = TempDir::new("srt-read");
    let out = tmp.path().join("read.ts");
    let mut reader = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(format!(
            "srt://{}?streamid=read:live/relay&passphrase={passphrase}&pbkeylen=16",
            server.srt
        ))
        .args(["-t", "5", "-c", "copy", "-f", "mpegts"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg");
    let done = wait_child(&mut reader, Duration::from_secs(15));
    assert!(
        done.status.success(),
        "reader failed: {}\n--- server log ---\n{}",
        String::from_utf8_lossy(&done.stderr),
        server.log_text()
    );
    let v = first_stream(&out, "v:0");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["width"], 640);
    // 5 s at 30 fps, give or take the cut of a GOP.
    let frames = frame_count(&v);
    assert!((140..=160).contains(&frames), "{frames} frames read back");
    assert_eq!(first_stream(&out, "a:0")["codec_name"], "aac");
    let errors = ffmpeg_decode_errors(out.to_str().expect("utf-8 path"));
    assert!(
        errors.trim().is_empty(),
        "read-back decodes with errors: {errors}"
    );

    // A stream nobody publishes: refused at the handshake, and logged.
    let mut unknown = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(format!("srt://{}?streamid=read:live/nosuch", server.srt))
        .args(["-t", "1", "-f", "null", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg");
    let refused = wait_child(&mut unknown, Duration::from_secs(10));
    assert!(
        !refused.status.success(),
        "reading a missing stream succeeded"
    );
    let log = plain_log(&server);
    assert!(
        log.contains("read of unknown stream \"nosuch\""),
        "no refusal logged:\n{log}"
    );
    let _ = wait_child(&mut publisher, Duration::from_secs(20));
}
