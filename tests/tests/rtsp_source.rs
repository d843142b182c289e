//! RTSP camera pull from a real RTSP server (GStreamer's gst-rtsp-server, driven by
//! tests/rtsp_server.py), served as HLS; the server is stopped and started again on the same
//! port in the middle, and the source must come back by itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corecast_e2e::{MediaPlaylist, Server, TempDir, ffprobe_json, free_port, require_tool};

/// The RTSP server script beside this test directory.
fn server_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rtsp_server.py")
}

/// Starts the GStreamer RTSP server on `port` for `seconds` (asking for Basic auth with
/// `credentials`), and waits until it accepts connections.
fn start_rtsp_server(port: u16, seconds: u32, credentials: &[&str]) -> Child {
    // GObject introspection lives with Debian's python, not with a python3 earlier on PATH.
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "/usr/bin/python3 missing: run scripts/install-deps.sh --test"
    );
    let child = Command::new(python)
        .arg(server_script())
        .args([port.to_string(), seconds.to_string()])
        .args(credentials)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tests/rtsp_server.py");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the RTSP server did not listen on {port} (is gir1.2-gst-rtsp-server-1.0 installed?)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn playlist(server: &Server) -> Option<MediaPlaylist> {
    let response = server.get("/live/cam/source/index.m3u8");
    (response.status == 200).then(|| MediaPlaylist::parse(&response.text()))
}

/// Waits until `check` holds for the camera's video playlist.
fn wait_playlist(
    server: &Server,
    what: &str,
    timeout: Duration,
    check: impl Fn(&MediaPlaylist) -> bool,
) -> MediaPlaylist {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(p) = playlist(server)
            && check(&p)
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; playlist:\n{}\n--- server log ---\n{}",
            playlist(server).map(|p| p.text).unwrap_or_default(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Fetches init + one segment and returns ffprobe's view of the video stream.
fn probe_segment(server: &Server, tmp: &TempDir, uri: &str) -> serde_json::Value {
    let init = server.get("/live/cam/source/init.mp4");
    assert_eq!(init.status, 200, "init.mp4");
    let segment = server.get(&format!("/live/cam/source/{uri}"));
    assert_eq!(segment.status, 200, "{uri} listed but not served");
    let path = tmp.path().join(uri.replace('/', "_"));
    std::fs::write(&path, [init.body, segment.body].concat()).expect("write segment");
    let probe = ffprobe_json(
        &["-select_streams", "v:0", "-count_frames", "-show_streams"],
        path.to_str().expect("utf-8 path"),
    );
    probe["streams"][0].clone()
}

fn check_video(stream: &serde_json::Value, uri: &str) {
    assert_eq!(stream["codec_name"], "h264", "{uri}: {stream}");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(640), Some(360)),
        "{uri}"
    );
    let frames: u64 = stream["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("frame count");
    // 2 s segments at 30 fps; an IDR every 60 frames.
    assert!(frames >= 30, "{uri}: {frames} frames");
}

#[test]
fn rtsp_camera_is_pulled_and_comes_back_after_a_server_restart() {
    require_tool("ffprobe");
    let port = free_port();
    let mut rtsp = start_rtsp_server(port, 60, &[]);
    // A grace period longer than the outage plus the backoff, so the playlist continues with
    // a discontinuity instead of ending.
    let server = Server::start(
        &format!(
            "[demo]\nenabled = false\n[packaging]\nsegment_seconds = 2\nwindow = 20\n\
             grace_period_seconds = 20\n\
             [[source]]\nname = \"cam\"\nurl = \"rtsp://127.0.0.1:{port}/test\"\n\
             timeout_seconds = 3\n"
        ),
        &[],
    );
    let tmp = TempDir::new("rtsp");

    let first = wait_playlist(&server, "two segments", Duration::from_secs(15), |p| {
        p.segments.len() >= 2
    });
    let (uri, duration, _) = &first.segments[0];
    assert!((1.5..=2.6).contains(duration), "{uri}: {duration} s");
    check_video(&probe_segment(&server, &tmp, uri), uri);
    let api = server.api_get("/api/v1/streams/cam");
    assert_eq!(api.status, 200);
    let status: serde_json::Value = serde_json::from_slice(&api.body).expect("JSON");
    assert_eq!(status["state"], "live", "{status}");
    assert!(
        status["origin"]
            .as_str()
            .is_some_and(|o| o.starts_with("rtsp rtsp://127.0.0.1:")),
        "{status}"
    );

    // The camera goes away for ~3 s and comes back on the same port.
    rtsp.kill().expect("stop the RTSP server");
    let _ = rtsp.wait();
    let before = playlist(&server).expect("playlist").segments.len();
    std::thread::sleep(Duration::from_secs(3));
    let mut rtsp = start_rtsp_server(port, 60, &[]);
    let after = wait_playlist(
        &server,
        "two segments after the restart",
        Duration::from_secs(20),
        |p| {
            p.segments
                .iter()
                .skip_while(|(_, _, discontinuity)| !discontinuity)
                .count()
                >= 2
        },
    );
    assert!(!after.ended, "{}", after.text);
    assert_eq!(
        after.text.matches("#EXT-X-DISCONTINUITY\n").count(),
        1,
        "{}",
        after.text
    );
    assert!(after.segments.len() > before);
    let (uri, _, _) = after
        .segments
        .iter()
        .skip_while(|(_, _, discontinuity)| !discontinuity)
        .nth(1)
        .expect("a segment after the restart");
    check_video(&probe_segment(&server, &tmp, uri), uri);

    let log = server.log_text();
    assert_eq!(log.matches("RTSP source live").count(), 2, "{log}");
    assert!(log.contains("RTSP source down"), "{log}");
    let _ = rtsp.kill();
    let _ = rtsp.wait();
}

#[test]
fn rtsp_camera_is_pulled_over_udp_transport_with_basic_auth() {
    require_tool("ffprobe");
    let port = free_port();
    let mut rtsp = start_rtsp_server(port, 30, &["cam", "s3cr@t"]);
    let server = Server::start(
        &format!(
            "[demo]\nenabled = false\n[packaging]\nsegment_seconds = 2\n\
             [[source]]\nname = \"cam\"\nurl = \"rtsp://cam:s3cr%40t@127.0.0.1:{port}/test\"\n\
             transport = \"udp\"\n"
        ),
        &[],
    );
    let tmp = TempDir::new("rtsp-udp");
    let p = wait_playlist(&server, "two segments", Duration::from_secs(15), |p| {
        p.segments.len() >= 2
    });
    let (uri, _, _) = &p.segments[1];
    check_video(&probe_segment(&server, &tmp, uri), uri);
    assert!(
        !server.log_text().contains("s3cr"),
        "the password reached the log"
    );
    let _ = rtsp.kill();
    let _ = rtsp.wait();
}

#[test]
fn rtsp_camera_with_a_wrong_password_is_retried_not_live() {
    let port = free_port();
    let mut rtsp = start_rtsp_server(port, 30, &["cam", "right"]);
    let server = Server::start(
        &format!(
            "[demo]\nenabled = false\n\
             [[source]]\nname = \"cam\"\nurl = \"rtsp://cam:wr0ngpw@127.0.0.1:{port}/test\"\n"
        ),
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("401") {
        assert!(
            Instant::now() < deadline,
            "no 401 in the log:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = server.log_text();
    assert!(log.contains("RTSP source down"), "{log}");
    assert!(!log.contains("RTSP source live"), "{log}");
    assert!(!log.contains("wr0ngpw"), "the password reached the log");
    assert_eq!(server.api_get("/api/v1/streams/cam").status, 404);
    let _ = rtsp.kill();
    let _ = rtsp.wait();
}
