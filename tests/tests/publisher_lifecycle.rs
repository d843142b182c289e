//! Publisher life cycle against real ffmpeg publishers: a second publisher is refused, garbage
//! on the RTMP port ends only its own session, a publisher that returns within the grace period
//! continues the same playlists, and the playlists end after it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use corecast_e2e::{MediaPlaylist, Server, ffmpeg_publish, wait_child, wait_success};

fn playlist(server: &Server, path: &str) -> Option<MediaPlaylist> {
    let response = server.get(path);
    (response.status == 200).then(|| MediaPlaylist::parse(&response.text()))
}

fn last_sequence(server: &Server) -> Option<u64> {
    let p = playlist(server, "/live/main/source/index.m3u8")?;
    Some(p.media_sequence + p.segments.len() as u64)
}

/// Sends `bytes` and waits for the server to close the connection; returns how long it took.
fn server_closes_after(server: &Server, bytes: &[u8]) -> Duration {
    let started = Instant::now();
    let mut socket = TcpStream::connect(server.rtmp).expect("connect RTMP");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = socket.write_all(bytes);
    let mut sink = [0u8; 8192];
    loop {
        match socket.read(&mut sink) {
            Ok(0) => return started.elapsed(),
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("server kept a garbage session open for 10 s")
            }
            Err(_) => return started.elapsed(), // reset: closed too
        }
    }
}

#[test]
fn second_publisher_is_refused_and_garbage_is_dropped_while_the_first_keeps_going() {
    let server = Server::start("[demo]\nenabled = false\n[packaging]\nwindow = 4\n", &[]);
    let mut first = ffmpeg_publish(&server.rtmp_url("main"), 16);
    server.wait_for(
        "/live/main/source/index.m3u8",
        Duration::from_secs(20),
        |_| true,
    );

    // A second publisher of the same name: refused with the status ffmpeg shows.
    let mut second = ffmpeg_publish(&server.rtmp_url("main"), 5);
    let out = wait_child(&mut second, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second publisher was not refused");
    assert!(
        stderr.contains("Server error"),
        "ffmpeg did not report the refusal: {stderr}"
    );

    // Garbage: a bad RTMP version byte, and a valid handshake followed by a broken AMF command.
    let mut bad_version = vec![0xFFu8];
    bad_version.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    server_closes_after(&server, &bad_version);
    let mut broken_command = vec![3u8];
    broken_command.extend(std::iter::repeat_n(0u8, 1536 * 2));
    // chunk: fmt 0, csid 3, timestamp 0, length 16, type 20 (AMF0 command), stream 0
    broken_command.extend([0x03, 0, 0, 0, 0, 0, 16, 20, 0, 0, 0, 0]);
    broken_command.extend([0xFFu8; 16]);
    server_closes_after(&server, &broken_command);

    // The first publisher's stream kept going through all of that.
    let before = last_sequence(&server).expect("playlist still served");
    std::thread::sleep(Duration::from_secs(5));
    let after = last_sequence(&server).expect("playlist still served");
    assert!(
        after >= before + 2,
        "stream stalled: {before} -> {after}\n{}",
        server.log_text()
    );
    wait_success(&mut first, Duration::from_secs(30), "first publisher");
    let log = server.log_text();
    assert!(
        log.contains("publish refused"),
        "refusal not logged:\n{log}"
    );
    assert!(
        log.contains("RTMP session dropped"),
        "garbage session not logged:\n{log}"
    );
}

#[test]
fn publisher_returning_within_grace_continues_the_playlists_then_they_end() {
    let server = Server::start(
        "[demo]\nenabled = false\n[packaging]\nwindow = 20\ngrace_period_seconds = 5\n",
        &[],
    );
    let mut first = ffmpeg_publish(&server.rtmp_url("main"), 5);
    wait_success(&mut first, Duration::from_secs(30), "first");
    let gone = playlist(&server, "/live/main/source/index.m3u8").expect("playlist after first run");
    assert!(!gone.ended, "ended before the grace period:\n{}", gone.text);
    let api = server.api_get("/api/v1/streams/main").text();
    assert!(api.contains("\"reconnecting\""), "{api}");

    let mut second = ffmpeg_publish(&server.rtmp_url("main"), 5);
    wait_success(&mut second, Duration::from_secs(30), "second");
    let ended = server
        .wait_for(
            "/live/main/source/index.m3u8",
            Duration::from_secs(20),
            |t| t.contains("#EXT-X-ENDLIST"),
        )
        .text();
    for path in ["source", "audio", "ts"] {
        let p = playlist(&server, &format!("/live/main/{path}/index.m3u8")).expect("playlist");
        assert!(p.ended, "{path}: no ENDLIST:\n{}", p.text);
        assert_eq!(
            p.media_sequence, 0,
            "{path}: sequence numbers reset:\n{}",
            p.text
        );
        let discontinuities = p.segments.iter().filter(|s| s.2).count();
        assert_eq!(
            discontinuities, 1,
            "{path}: one discontinuity expected:\n{}",
            p.text
        );
        // Both runs are there: 5 s + 5 s in 2 s segments.
        assert!(p.segments.len() >= 5, "{path}: {}", p.text);
        for (uri, _, _) in &p.segments {
            let status = server.get(&format!("/live/main/{path}/{uri}")).status;
            assert_eq!(status, 200, "{path}/{uri}");
        }
    }
    assert!(ended.contains("#EXT-X-DISCONTINUITY"));
    let mpd = server.get("/live/main/index.mpd").text();
    assert!(mpd.contains("type=\"static\""), "{mpd}");
    assert_eq!(
        mpd.matches("<Period").count(),
        2,
        "a new Period for the returning publisher:\n{mpd}"
    );
    let api = server.api_get("/api/v1/streams/main").text();
    assert!(api.contains("\"ended\""), "{api}");
}
