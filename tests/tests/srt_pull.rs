//! `[[source]] url = "srt://..."`: corecast calls a remote SRT listener (srt-live-transmit,
//! fed by ffmpeg, with a passphrase) and publishes what it receives; the pull is retried until
//! the listener is there.

mod srt_common;

use std::process::{Command, Stdio};
use std::time::Duration;

use corecast_e2e::{Server, free_udp_port, wait_success};
use srt_common::*;

#[test]
fn a_remote_srt_listener_is_pulled() {
    corecast_e2e::require_tool("srt-live-transmit");
    let port = free_udp_port();
    let passphrase = "pull-passphrase-7";
    // Started first: the pull's first attempts fail until the listener is up (retried).
    let server = Server::start(
        &format!(
            "{}[[source]]\nname = \"pulled\"\nurl = \"srt://127.0.0.1:{port}?passphrase={passphrase}&pbkeylen=24&latency=200\"\ntimeout_seconds = 3\n",
            base_config()
        ),
        &[],
    );
    std::thread::sleep(Duration::from_millis(4000));
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(
            testmedia::TestSource::new(640, 360, SECONDS)
                .with_audio()
                .ffmpeg_args(),
        )
        .args(["-f", "mpegts", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg");
    let stdout = ffmpeg.stdout.take().expect("ffmpeg stdout");
    let listener = Command::new("srt-live-transmit")
        .args(["-q", "file://con"])
        .arg(format!(
            "srt://127.0.0.1:{port}?mode=listener&passphrase={passphrase}&pbkeylen=24"
        ))
        .stdin(stdout)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start srt-live-transmit");
    let listener = Reaped(listener);

    let origin = wait_live(&server, "pulled", Duration::from_secs(15));
    assert!(
        origin.starts_with("srt pull 127.0.0.1:"),
        "origin {origin:?}"
    );
    wait_success(&mut ffmpeg, Duration::from_secs(20), "ffmpeg");
    drop(listener);
    // The first frames go by while the pull connects (its retry is up to ~1.25 s away).
    check_hls(&server, "pulled", FRAMES - 75);
    let log = plain_log(&server);
    assert!(
        log.contains("SRT pull failed"),
        "the early attempts were not retried:\n{log}"
    );
    let source = server.api_get("/api/v1/sources/pulled");
    if source.status == 200 {
        let text = source.text();
        assert!(!text.contains(passphrase), "passphrase leaked: {text}");
    }
}
