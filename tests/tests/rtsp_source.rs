//! RTSP camera pull from a real RTSP server (GStreamer's gst-rtsp-server, driven by
//! tests/rtsp_server.py), served as HLS; the server is stopped and started again on the same
//! port in the middle, and the source must come back by itself. Also: Basic and Digest auth
//! (a wrong password is never live and the API says why) and H.264 with B-frames (valid,
//! increasing dts), H.265 (packaged as `hvc1`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corecast_e2e::{
    MediaPlaylist, Server, TempDir, ffmpeg_decode_errors, ffprobe_json, free_port, require_tool,
};

/// The RTSP server script beside this test directory.
fn server_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rtsp_server.py")
}

/// Starts the GStreamer RTSP server on `port` for `seconds` with `args` (user and password,
/// `--digest`, `--codec h265`, `--bframes 2`: see tests/rtsp_server.py), and waits until it
/// accepts connections.
fn start_rtsp_server(port: u16, seconds: u32, args: &[&str]) -> Child {
    // GObject introspection lives with Debian's python, not with a python3 earlier on PATH.
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "/usr/bin/python3 missing: run scripts/install-deps.sh --test"
    );
    let child = Command::new(python)
        .arg(server_script())
        .args([port.to_string(), seconds.to_string()])
        .args(args)
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

fn api_json(server: &Server, path: &str) -> (u16, serde_json::Value) {
    let response = server.api_get(path);
    let json = serde_json::from_slice(&response.body).unwrap_or_default();
    (response.status, json)
}

/// The server's answer to a DESCRIBE without credentials: its status line and challenge.
fn unauthenticated_describe(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "DESCRIBE rtsp://127.0.0.1:{port}/test RTSP/1.0\r\nCSeq: 1\r\n\r\n"
    )
    .expect("send DESCRIBE");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn rtsp_camera_with_digest_auth_is_live_and_reported_by_the_api() {
    require_tool("ffprobe");
    let port = free_port();
    let mut rtsp = start_rtsp_server(port, 30, &["cam", "d1gest!", "--digest"]);
    // The server offers Digest only: a client that could only do Basic would fail here.
    let challenge = unauthenticated_describe(port);
    assert!(challenge.starts_with("RTSP/1.0 401"), "{challenge}");
    assert!(
        challenge.contains("WWW-Authenticate: Digest"),
        "{challenge}"
    );
    assert!(!challenge.contains("Basic"), "{challenge}");
    let server = Server::start(
        &format!(
            "[demo]\nenabled = false\n[packaging]\nsegment_seconds = 2\n\
             [[source]]\nname = \"cam\"\nurl = \"rtsp://cam:d1gest%21@127.0.0.1:{port}/test\"\n"
        ),
        &[],
    );
    let tmp = TempDir::new("rtsp-digest");
    let p = wait_playlist(&server, "two segments", Duration::from_secs(15), |p| {
        p.segments.len() >= 2
    });
    let (uri, _, _) = &p.segments[1];
    check_video(&probe_segment(&server, &tmp, uri), uri);

    let (status, source) = api_json(&server, "/api/v1/sources/cam");
    assert_eq!(status, 200);
    assert_eq!(source["state"], "live", "{source}");
    assert_eq!(source["kind"], "rtsp", "{source}");
    assert_eq!(
        source["url"],
        format!("rtsp://cam:***@127.0.0.1:{port}/test"),
        "{source}"
    );
    let counters = &source["counters"];
    assert!(counters["packets"].as_u64() >= Some(60), "{source}");
    assert!(counters["access_units"].as_u64() >= Some(60), "{source}");
    assert!(
        counters["bytes"].as_u64() > counters["packets"].as_u64(),
        "{source}"
    );
    assert_eq!(counters["reconnects"], 0, "{source}");
    let (_, stream) = api_json(&server, "/api/v1/streams/cam");
    assert_eq!(stream["source"]["name"], "cam", "{stream}");
    assert_eq!(stream["source"]["state"], "live", "{stream}");
    let metrics = server.api_get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "corecast_source_up{source=\"cam\",kind=\"rtsp\"} 1"),
        "{metrics}"
    );
    assert!(
        !server.log_text().contains("d1gest"),
        "the password reached the log"
    );
    assert!(!metrics.contains("d1gest") && !source.to_string().contains("d1gest"));
    let _ = rtsp.kill();
    let _ = rtsp.wait();
}

#[test]
fn rtsp_camera_with_a_wrong_digest_password_shows_the_auth_error() {
    let port = free_port();
    let mut rtsp = start_rtsp_server(port, 30, &["cam", "right", "--digest"]);
    let server = Server::start(
        &format!(
            "[demo]\nenabled = false\n\
             [[source]]\nname = \"cam\"\nurl = \"rtsp://cam:wr0ngpw@127.0.0.1:{port}/test\"\n"
        ),
        &[],
    );
    // Two failed attempts (1 s backoff between them), and never live.
    let deadline = Instant::now() + Duration::from_secs(10);
    let source = loop {
        let (status, source) = api_json(&server, "/api/v1/sources/cam");
        assert_eq!(status, 200);
        assert_ne!(source["state"], "live", "{source}");
        if source["counters"]["reconnects"].as_u64() >= Some(1)
            && source["counters"]["errors"]["rtsp_error"].as_u64() >= Some(2)
            && source["state"] == "retrying"
        {
            break source;
        }
        assert!(Instant::now() < deadline, "{source}\n{}", server.log_text());
        std::thread::sleep(Duration::from_millis(100));
    };
    let error = source["last_error"].as_str().expect("last_error");
    assert!(error.contains("401"), "{error}");
    assert!(source["next_attempt_ms"].as_i64().is_some(), "{source}");
    assert_eq!(source["counters"]["access_units"], 0, "{source}");
    assert_eq!(server.api_get("/api/v1/streams/cam").status, 404);
    let log = server.log_text();
    assert!(!log.contains("RTSP source live"), "{log}");
    assert!(!log.contains("wr0ngpw"), "the password reached the log");
    let _ = rtsp.kill();
    let _ = rtsp.wait();
}

/// Every video packet of `path` as (pts, dts) in the stream's time base.
fn packet_times(path: &Path) -> Vec<(i64, i64)> {
    let probe = ffprobe_json(
        &["-select_streams", "v:0", "-show_entries", "packet=pts,dts"],
        path.to_str().expect("utf-8 path"),
    );
    probe["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| {
            (
                p["pts"].as_i64().expect("pts"),
                p["dts"].as_i64().expect("dts"),
            )
        })
        .collect()
}

/// Init + every listed segment of the camera's video, in one file.
fn download_all(server: &Server, playlist: &MediaPlaylist, path: &Path) {
    let init = server.get("/live/cam/source/init.mp4");
    assert_eq!(init.status, 200, "init.mp4");
    let mut bytes = init.body;
    for (uri, _, _) in &playlist.segments {
        let segment = server.get(&format!("/live/cam/source/{uri}"));
        assert_eq!(segment.status, 200, "{uri} listed but not served");
        bytes.extend_from_slice(&segment.body);
    }
    std::fs::write(path, bytes).expect("write segments");
}

/// ffmpeg remuxes `path`: what it warns about (dts order, pts < dts).
fn remux_warnings(path: &Path, tmp: &TempDir) -> String {
    let remux = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "warning", "-i"])
        .arg(path)
        .args(["-c", "copy", "-f", "mp4", "-y"])
        .arg(tmp.path().join("remux.mp4"))
        .output()
        .expect("run ffmpeg");
    let warnings = String::from_utf8_lossy(&remux.stderr).into_owned();
    assert!(remux.status.success(), "{warnings}");
    warnings
}

#[test]
fn rtsp_camera_with_b_frames_gets_increasing_dts() {
    require_tool("ffmpeg");
    let port = free_port();
    let mut rtsp = start_rtsp_server(port, 40, &["--bframes", "2"]);
    let server = Server::start(
        &format!(
            "[demo]\nenabled = false\n[packaging]\nsegment_seconds = 2\nwindow = 10\n\
             [[source]]\nname = \"cam\"\nurl = \"rtsp://127.0.0.1:{port}/test\"\n"
        ),
        &[],
    );
    let tmp = TempDir::new("rtsp-bframes");
    let p = wait_playlist(&server, "three segments", Duration::from_secs(20), |p| {
        p.segments.len() >= 3
    });
    let path = tmp.path().join("bframes.mp4");
    download_all(&server, &p, &path);

    let stream = &ffprobe_json(
        &["-select_streams", "v:0", "-show_streams"],
        path.to_str().expect("utf-8 path"),
    )["streams"][0];
    assert_eq!(stream["codec_name"], "h264", "{stream}");
    assert!(
        stream["has_b_frames"].as_u64() >= Some(1),
        "no B-frames: {stream}"
    );
    let times = packet_times(&path);
    assert!(times.len() >= 150, "{} packets", times.len());
    for (i, pair) in times.windows(2).enumerate() {
        assert!(
            pair[0].1 < pair[1].1,
            "dts not increasing at packet {i}: {pair:?}"
        );
    }
    for (i, (pts, dts)) in times.iter().enumerate() {
        assert!(dts <= pts, "packet {i}: dts {dts} > pts {pts}");
    }
    // The B-frames arrive out of order: pts goes back now and then.
    assert!(
        times.windows(2).any(|w| w[1].0 < w[0].0),
        "no reordering: {times:?}"
    );
    let warnings = remux_warnings(&path, &tmp);
    assert!(!warnings.contains("monoton"), "{warnings}");
    assert!(
        !warnings.contains("pts (") && !warnings.contains("pts <"),
        "{warnings}"
    );
    let errors = ffmpeg_decode_errors(&path);
    assert!(errors.is_empty(), "{errors}");
    let (_, source) = api_json(&server, "/api/v1/sources/cam");
    assert!(
        source["counters"]["errors"].get("dts_reorder").is_none(),
        "{source}"
    );
    let _ = rtsp.kill();
    let _ = rtsp.wait();
}

#[test]
fn rtsp_camera_sending_h265_is_served_as_hevc() {
    require_tool("ffmpeg");
    let port = free_port();
    let mut rtsp = start_rtsp_server(port, 40, &["--codec", "h265", "--bframes", "2"]);
    let server = Server::start(
        &format!(
            "[demo]\nenabled = false\n[packaging]\nsegment_seconds = 2\nwindow = 10\n\
             [[source]]\nname = \"cam\"\nurl = \"rtsp://127.0.0.1:{port}/test\"\n"
        ),
        &[],
    );
    let tmp = TempDir::new("rtsp-h265");
    let p = wait_playlist(&server, "three segments", Duration::from_secs(30), |p| {
        p.segments.len() >= 3
    });
    let multivariant = server.get("/live/cam/index.m3u8").text();
    assert!(multivariant.contains("hvc1."), "{multivariant}");
    let path = tmp.path().join("h265.mp4");
    download_all(&server, &p, &path);
    let stream = &ffprobe_json(
        &["-select_streams", "v:0", "-count_frames", "-show_streams"],
        path.to_str().expect("utf-8 path"),
    )["streams"][0];
    assert_eq!(stream["codec_name"], "hevc", "{stream}");
    assert_eq!(stream["codec_tag_string"], "hvc1", "{stream}");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(640), Some(360)),
        "{stream}"
    );
    let frames: u64 = stream["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("frame count");
    assert!(frames >= 150, "{frames} frames");
    let times = packet_times(&path);
    for (i, pair) in times.windows(2).enumerate() {
        assert!(
            pair[0].1 < pair[1].1,
            "dts not increasing at packet {i}: {pair:?}"
        );
    }
    for (i, (pts, dts)) in times.iter().enumerate() {
        assert!(dts <= pts, "packet {i}: dts {dts} > pts {pts}");
    }
    let warnings = remux_warnings(&path, &tmp);
    assert!(!warnings.contains("monoton"), "{warnings}");
    let errors = ffmpeg_decode_errors(&path);
    assert!(errors.is_empty(), "{errors}");
    let (_, source) = api_json(&server, "/api/v1/sources/cam");
    assert_eq!(source["state"], "live", "{source}");
    let _ = rtsp.kill();
    let _ = rtsp.wait();
}
