//! Helpers for corecast's end-to-end tests: start the real `corecast` binary on free ports,
//! publish with real ffmpeg, fetch over HTTP, probe with ffprobe. No mocks: every peer is the
//! real tool (installed by scripts/install-deps.sh --test). The tool helpers and the test
//! source come from corecast-testmedia, shared with the per-crate tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use testmedia::TestSource;

pub mod codec_rungs;
pub mod enhanced_rtmp;
pub mod lossy_relay;
pub use testmedia::{TempDir, ffmpeg_decode_errors, ffprobe_json, require_tool};

/// The `corecast` binary next to this test binary (`target/<profile>/corecast`).
pub fn corecast_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/corecast
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("corecast");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p corecast`; `make test` does)",
        bin.display()
    );
    bin
}

/// A port nobody listens on right now (bound and released: good enough on a test box).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A UDP port nobody uses right now (bound and released).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP port")
        .port()
}

/// A running corecast process; killed when dropped. Its log goes to a file under the temp dir,
/// printed when the test fails.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub http: SocketAddr,
    pub rtmp: SocketAddr,
    pub api: SocketAddr,
    /// The SRT listener (UDP), on a free port so servers of parallel tests never collide.
    pub srt: SocketAddr,
    pub log: PathBuf,
    _dir: TempDir,
}

impl Server {
    /// Starts `corecast run` with `config` (TOML, without the address keys: they are chosen
    /// here) and waits until the playback and API ports answer.
    pub fn start(config: &str, extra_args: &[&str]) -> Server {
        // The ports are found free and released, so something else (most often another test's
        // outgoing connection, whose ephemeral port comes from the same range) can take one
        // before corecast binds it; corecast then exits saying so, and it is started again on
        // new ports.
        const ATTEMPTS: u32 = 5;
        for attempt in 1..=ATTEMPTS {
            let mut server = Self::spawn(config, extra_args);
            match server.wait_ready() {
                Ok(()) => return server,
                Err(log) if attempt < ATTEMPTS && log.contains("Address already in use") => {}
                Err(log) => panic!("corecast did not start listening:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(config: &str, extra_args: &[&str]) -> Server {
        let dir = TempDir::new("server");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let rtmp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let srt: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
        let config_path = dir.path().join("corecast.toml");
        std::fs::write(
            &config_path,
            format!(
                "http = \"{http}\"\nrtmp = \"{rtmp}\"\napi = \"{api}\"\nsrt = \"{srt}\"\n{config}"
            ),
        )
        .expect("write config");
        let log = dir.path().join("corecast.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(corecast_binary())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file)
            .spawn()
            .expect("start corecast");
        Server {
            child,
            http,
            rtmp,
            api,
            srt,
            log,
            _dir: dir,
        }
    }

    /// Waits until the playback and API ports answer; on failure (corecast exited, or 20 s
    /// passed) returns its log.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(self.http).is_ok() && TcpStream::connect(self.api).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("(exited: {status})\n{}", self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(self.log_text())
    }

    /// Sends SIGTERM and waits up to `limit` for corecast to exit; its exit status, or `None`
    /// if it was still running then.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The corecast process id (for /proc readings).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `rtmp://127.0.0.1:PORT/live/<stream>`
    pub fn rtmp_url(&self, stream: &str) -> String {
        format!("rtmp://{}/live/{stream}", self.rtmp)
    }

    /// `http://127.0.0.1:PORT<path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http_get(self.http, path)
    }

    pub fn api_get(&self, path: &str) -> HttpResponse {
        http_get(self.api, path)
    }

    /// Polls `path` until it answers 200 and `accept` likes the body, or panics after `timeout`.
    pub fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> HttpResponse {
        let deadline = Instant::now() + timeout;
        loop {
            let response = self.get(path);
            if response.status == 200 && accept(&response.text()) {
                return response;
            }
            if Instant::now() > deadline {
                panic!(
                    "{path} not ready after {timeout:?}: last status {} body {:?}\n--- server log ---\n{}",
                    response.status,
                    response.text(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls the media playlists of `stream`'s `renditions` until every one has ended
    /// (`#EXT-X-ENDLIST`), or panics with the server log after `limit`; returns them in order.
    pub fn wait_until_ended(
        &self,
        stream: &str,
        renditions: &[&str],
        limit: Duration,
    ) -> Vec<MediaPlaylist> {
        let deadline = Instant::now() + limit;
        loop {
            let playlists: Vec<MediaPlaylist> = renditions
                .iter()
                .map(|name| {
                    let path = format!("/live/{stream}/{name}/index.m3u8");
                    MediaPlaylist::parse(&self.get(&path).text())
                })
                .collect();
            if playlists.iter().all(|p| p.ended) {
                return playlists;
            }
            assert!(
                Instant::now() < deadline,
                "playlists never ended:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- corecast log ---\n{}", self.log_text());
        }
    }
}

/// A response read with `Connection: close`.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One GET over a fresh connection. A test client only: it reads to EOF.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut stream = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(_) => {
            return HttpResponse {
                status: 0,
                headers: Vec::new(),
                body: Vec::new(),
            };
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return HttpResponse {
            status: 0,
            headers: Vec::new(),
            body: raw,
        };
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// ffmpeg publishing a test pattern (H.264 with B-frames, 2 s GOP) and a tone (AAC) in real
/// time for `seconds` to `url`.
pub fn ffmpeg_publish(url: &str, seconds: u32) -> Child {
    ffmpeg_publish_with(url, seconds, &[])
}

/// As [`ffmpeg_publish`], with extra output options (e.g. `["-an"]` for video only).
pub fn ffmpeg_publish_with(url: &str, seconds: u32, extra: &[&str]) -> Child {
    require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(
            TestSource::new(640, 360, seconds)
                .with_audio()
                .ffmpeg_args(),
        )
        .args(extra)
        .args(["-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg")
}

/// Waits for a child with a deadline; kills it if the deadline passes.
/// The (width, height) of every video stream ffprobe found in `url` (an MPD opens every
/// Representation), sorted.
pub fn video_sizes(url: &str) -> Vec<(u64, u64)> {
    let probe = ffprobe_json(&["-show_streams"], url);
    let mut sizes: Vec<(u64, u64)> = probe["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .map(|s| {
            (
                s["width"].as_u64().unwrap_or(0),
                s["height"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    sizes.sort_unstable();
    sizes
}

/// As [`wait_child`], and panics with the child's stderr unless it exited with status 0.
pub fn wait_success(child: &mut Child, timeout: Duration, what: &str) {
    let out = wait_child(child, timeout);
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn wait_child(child: &mut Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().expect("wait");
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_end(&mut stderr);
    }
    Output {
        status,
        stdout: Vec::new(),
        stderr,
    }
}

/// A media playlist's segment URIs and tags, enough for the tests' checks.
#[derive(Debug, Clone, Default)]
pub struct MediaPlaylist {
    pub media_sequence: u64,
    pub target_duration: f64,
    /// (uri, EXTINF duration, preceded by EXT-X-DISCONTINUITY)
    pub segments: Vec<(String, f64, bool)>,
    pub program_date_times: usize,
    pub ended: bool,
    pub text: String,
}

impl MediaPlaylist {
    pub fn parse(text: &str) -> MediaPlaylist {
        let mut p = MediaPlaylist {
            text: text.to_owned(),
            ..Default::default()
        };
        let mut duration = None;
        let mut discontinuity = false;
        for line in text.lines() {
            let line = line.trim();
            if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v.parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target_duration = v.parse().unwrap_or(0.0);
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                duration = v.split(',').next().and_then(|d| d.parse().ok());
            } else if line == "#EXT-X-DISCONTINUITY" {
                discontinuity = true;
            } else if line.starts_with("#EXT-X-PROGRAM-DATE-TIME:") {
                p.program_date_times += 1;
            } else if line == "#EXT-X-ENDLIST" {
                p.ended = true;
            } else if !line.is_empty() && !line.starts_with('#') {
                p.segments.push((
                    line.to_owned(),
                    duration.take().unwrap_or(-1.0),
                    discontinuity,
                ));
                discontinuity = false;
            }
        }
        p
    }

    /// Media sequence number of each listed segment.
    pub fn numbered(&self) -> Vec<(u64, &(String, f64, bool))> {
        self.segments
            .iter()
            .enumerate()
            .map(|(i, s)| (self.media_sequence + i as u64, s))
            .collect()
    }
}
