//! SRT publishing from real peers (ffmpeg's libsrt, Haivision's srt-live-transmit) into
//! corecast's SRT listener, served as HLS and checked with ffprobe; a wrong passphrase is
//! refused and logged with the caller's address while another stream carries on.

mod srt_common;

use std::time::Duration;

use corecast_e2e::{Server, wait_child};
use srt_common::*;

#[test]
fn ffmpeg_publishes_with_a_stream_id() {
    let server = Server::start(&base_config(), &[]);
    let mut ffmpeg = ffmpeg_srt_publish(&format!(
        "srt://{}?streamid=publish:live/cam&pkt_size=1316&linger=3",
        server.srt
    ));
    let origin = wait_live(&server, "cam", Duration::from_secs(10));
    assert!(origin.starts_with("srt 127.0.0.1:"), "origin {origin:?}");
    let out = wait_child(&mut ffmpeg, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let out = wait_child(&mut ffmpeg, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let out = wait_child(&mut open, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let out = wait_child(&mut ffmpeg, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_hls(&server, "lobby", FRAMES - 4);
    let log = plain_log(&server);
    assert!(
        log.contains("SRT caller refused: no stream id"),
        "no refusal logged:\n{log}"
    );
    assert!(log.contains("latency_ms=200"), "{log}");
}
