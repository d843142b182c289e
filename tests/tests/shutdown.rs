//! `corecast run` stops cleanly on SIGTERM (systemd, `docker stop`) and SIGINT (Ctrl-C): it
//! exits with status 0 within a few seconds, says so in its log, and closes an idle viewer's
//! keep-alive connection with a FIN (a clean end of stream for the player), not a reset.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use corecast_e2e::{MediaPlaylist, Server};

#[test]
fn sigterm_closes_viewers_cleanly_and_exits_zero() {
    let mut server = Server::start("", &[]);
    server.wait_for(
        "/live/demo/source/index.m3u8",
        Duration::from_secs(30),
        |t| !MediaPlaylist::parse(t).segments.is_empty(),
    );
    let mut viewer = TcpStream::connect(server.http).expect("connect");
    viewer
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "GET /live/demo/source/index.m3u8 HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.http
    );
    viewer.write_all(request.as_bytes()).expect("request");
    let mut first = [0u8; 12];
    viewer.read_exact(&mut first).expect("response starts");
    assert_eq!(&first, b"HTTP/1.1 200");

    let status = server
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM:\n{}", server.log_text()));
    assert!(status.success(), "exit {status}:\n{}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("stop signal received"), "{log}");
    assert!(log.contains("stopped"), "{log}");

    // The rest of the playlist response, then end of stream: read returns 0, not an error.
    let mut rest = Vec::new();
    let read = viewer.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "the viewer's connection ended with {read:?}, want a clean close"
    );
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("#EXTM3U"), "whole response first: {text}");
}
