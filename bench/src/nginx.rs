//! The nginx side of `corecast-bench compare-nginx`: its configuration file, the parser for
//! wrk's report, a blocking HTTP/1.1 fetch used to copy corecast's bytes into nginx's document
//! root, and the mirror that keeps a live stream's files current for nginx.
//!
//! nginx is configured the way a tuned static origin is (nginx docs, ngx_http_core_module:
//! `sendfile`, `tcp_nopush`, `tcp_nodelay`, `open_file_cache`, `keepalive_requests`; `listen …
//! reuseport`; ngx_core_module: `worker_cpu_affinity`). wrk's output format is wrk 4.1.0's
//! (src/wrk.c `print_stats_latency`, `print_units`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::playlist::MediaPlaylist;

/// What the nginx configuration needs.
#[derive(Debug, Clone)]
pub struct NginxConf {
    pub listen: SocketAddr,
    /// Document root: request paths map to files below it.
    pub root: PathBuf,
    /// Holds the pid file, the error log and nginx's temp directories.
    pub state_dir: PathBuf,
    /// One worker per entry, pinned to that CPU (the same CPUs corecast's delivery workers run on).
    pub worker_cpus: Vec<usize>,
    /// Run workers as root (when we are root), so files in any private directory are readable.
    pub user_root: bool,
    /// A path prefix whose playlists change while nginx runs (the live mirror): served without
    /// the open file cache, whose cached descriptor would keep the replaced file's old bytes.
    pub live_prefix: Option<String>,
}

/// `worker_cpu_affinity` mask of one CPU: a string of 0/1, CPU 0 rightmost.
pub fn cpu_mask(cpu: usize) -> String {
    let mut mask = "0".repeat(cpu + 1);
    mask.replace_range(0..1, "1");
    mask
}

/// The nginx.conf text.
pub fn render_conf(conf: &NginxConf) -> String {
    let state = conf.state_dir.display();
    let masks: Vec<String> = conf.worker_cpus.iter().map(|&c| cpu_mask(c)).collect();
    let user = if conf.user_root { "user root;\n" } else { "" };
    let live = conf.live_prefix.as_deref().map_or(String::new(), |prefix| {
        format!(
            "        # Live playlists are replaced (rename) while we run: no cached descriptor.\n        \
             location ~ ^{prefix}.*\\.m3u8$ {{ open_file_cache off; }}\n"
        )
    });
    // worker_connections: all the fd limit (20,000 per process here) allows, less room for the
    // listener, logs and open_file_cache; nginx holds one fd per connection.
    format!(
        "# Written by corecast-bench compare-nginx: a tuned static origin.\n\
         {user}daemon off;\n\
         master_process on;\n\
         worker_processes {workers};\n\
         worker_cpu_affinity {masks};\n\
         worker_rlimit_nofile 20000;\n\
         pid {state}/nginx.pid;\n\
         error_log {state}/error.log warn;\n\
         events {{\n    worker_connections 19900;\n}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   sendfile on;\n\
         \x20   tcp_nopush on;\n\
         \x20   tcp_nodelay on;\n\
         \x20   open_file_cache max=1000 inactive=120s;\n\
         \x20   open_file_cache_valid 120s;\n\
         \x20   keepalive_requests 100000000;\n\
         \x20   keepalive_timeout 65s;\n\
         \x20   types {{ application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; video/mp4 mp4; video/mp2t ts; }}\n\
         \x20   default_type application/octet-stream;\n\
         \x20   client_body_temp_path {state}/body;\n\
         \x20   proxy_temp_path {state}/proxy;\n\
         \x20   fastcgi_temp_path {state}/fastcgi;\n\
         \x20   uwsgi_temp_path {state}/uwsgi;\n\
         \x20   scgi_temp_path {state}/scgi;\n\
         \x20   server {{\n\
         \x20       listen {listen} reuseport backlog=4096;\n\
         \x20       root {root};\n\
         {live}\
         \x20   }}\n\
         }}\n",
        workers = conf.worker_cpus.len(),
        masks = masks.join(" "),
        listen = conf.listen,
        root = conf.root.display(),
    )
}

/// What one wrk run reported.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WrkResult {
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_s: f64,
    /// Response bytes per second (head and body), from "Transfer/sec".
    pub bytes_per_s: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// connect + read + write + timeout socket errors.
    pub socket_errors: u64,
    pub non_2xx_3xx: u64,
}

/// A wrk latency ("1.23ms", "850.00us", "1.02s", "2.00m") in milliseconds.
fn wrk_time_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(value * scale)
}

/// A wrk byte count ("19.06GB", "512.00KB", "123B") in bytes (wrk's units are powers of 1024).
fn wrk_bytes(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(value * scale)
}

/// Parses the report `wrk --latency` prints. `None` when a required line is missing.
pub fn parse_wrk(output: &str) -> Option<WrkResult> {
    let mut percentiles = [None; 4];
    let mut requests = None;
    let mut seconds = None;
    let mut requests_per_s = None;
    let mut bytes_per_s = None;
    let mut socket_errors = 0;
    let mut non_2xx_3xx = 0;
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [p, value] if p.ends_with('%') => {
                let slot = match *p {
                    "50%" => 0,
                    "75%" => 1,
                    "90%" => 2,
                    "99%" => 3,
                    _ => continue,
                };
                percentiles[slot] = wrk_time_ms(value);
            }
            [n, "requests", "in", time, ..] => {
                requests = n.parse().ok();
                seconds = time
                    .trim_end_matches(',')
                    .strip_suffix('s')
                    .and_then(|s| s.parse().ok());
            }
            ["Requests/sec:", v] => requests_per_s = v.parse().ok(),
            ["Transfer/sec:", v] => bytes_per_s = wrk_bytes(v),
            ["Socket", "errors:", rest @ ..] => {
                socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => non_2xx_3xx = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    let [p50, p75, p90, p99] = percentiles;
    Some(WrkResult {
        requests: requests?,
        seconds: seconds?,
        requests_per_s: requests_per_s?,
        bytes_per_s: bytes_per_s?,
        p50_ms: p50?,
        p75_ms: p75?,
        p90_ms: p90?,
        p99_ms: p99?,
        socket_errors,
        non_2xx_3xx,
    })
}

/// One response fetched whole.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    /// Bytes of the status line and headers, blank line included.
    pub head_len: usize,
    /// The status line and headers as they came, blank line included.
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

/// Splits a whole `Connection: close` response into status, head length and body.
pub fn parse_response(raw: &[u8]) -> Result<Fetched, String> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("response head cut short".into()),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = raw.get(head_len..).unwrap_or_default();
    if let Some(length) = length
        && body.len() != length
    {
        return Err(format!(
            "body is {} bytes, Content-Length says {length}",
            body.len()
        ));
    }
    Ok(Fetched {
        status,
        head_len,
        head: raw[..head_len].to_vec(),
        body: body.to_vec(),
    })
}

/// GET `path` from `addr` on a fresh connection (`Connection: close`), whole.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<Fetched, String> {
    let fail = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(fail)?;
    parse_response(&raw).map_err(|e| format!("GET http://{addr}{path}: {e}"))
}

/// GET that must answer 200.
pub fn http_get_ok(addr: SocketAddr, path: &str) -> Result<Fetched, String> {
    let fetched = http_get(addr, path)?;
    if fetched.status != 200 {
        return Err(format!(
            "GET http://{addr}{path}: status {}",
            fetched.status
        ));
    }
    Ok(fetched)
}

/// A URI from a playlist, as an absolute path on the same server.
pub fn resolve(playlist_path: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        return uri.to_string();
    }
    let dir = playlist_path
        .rfind('/')
        .map_or("", |i| &playlist_path[..=i]);
    format!("{dir}{uri}")
}

/// Writes `bytes` at `root` + `path` through a temporary file and a rename, so nginx never
/// serves a half-written file.
pub fn write_served(root: &Path, path: &str, bytes: &[u8]) -> Result<(), String> {
    let relative = path.trim_start_matches('/');
    if relative
        .split('/')
        .any(|part| part == ".." || part.is_empty())
    {
        return Err(format!("refusing path {path}"));
    }
    let file = root.join(relative);
    let fail = |e: std::io::Error| format!("writing {}: {e}", file.display());
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let temporary = file.with_extension("partial");
    std::fs::write(&temporary, bytes).map_err(fail)?;
    std::fs::rename(&temporary, &file).map_err(fail)
}

/// Copies a live media playlist and its segments from corecast into nginx's root as they
/// appear, the way a packager writes files for a static origin: segments (and the init
/// segment) first, then the playlist, each by rename. Runs on its own thread until stopped.
#[derive(Debug)]
pub struct LiveMirror {
    stop: Arc<AtomicBool>,
    copies: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveMirror {
    pub fn start(
        from: SocketAddr,
        playlist_path: String,
        root: PathBuf,
        poll: Duration,
    ) -> LiveMirror {
        let stop = Arc::new(AtomicBool::new(false));
        let copies = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let (stop2, copies2, errors2) = (stop.clone(), copies.clone(), errors.clone());
        let thread = std::thread::Builder::new()
            .name("live-mirror".into())
            .spawn(move || {
                let mut last = Vec::new();
                let mut copied = std::collections::HashSet::new();
                while !stop2.load(Ordering::Relaxed) {
                    match mirror_once(from, &playlist_path, &root, &mut last, &mut copied) {
                        Ok(true) => {
                            copies2.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {}
                        Err(_) => {
                            errors2.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(poll);
                }
            })
            .ok();
        LiveMirror {
            stop,
            copies,
            errors,
            thread,
        }
    }

    /// Playlist versions copied so far.
    pub fn copies(&self) -> u64 {
        self.copies.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

impl Drop for LiveMirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One mirror step: `Ok(true)` when a new playlist version was copied.
fn mirror_once(
    from: SocketAddr,
    playlist_path: &str,
    root: &Path,
    last: &mut Vec<u8>,
    copied: &mut std::collections::HashSet<String>,
) -> Result<bool, String> {
    let playlist = http_get_ok(from, playlist_path)?;
    if playlist.body == *last {
        return Ok(false);
    }
    let parsed = MediaPlaylist::parse(&playlist.body)
        .ok_or_else(|| format!("{playlist_path}: not a media playlist"))?;
    for segment in &parsed.segments {
        let uris = segment.map_uri.iter().chain(std::iter::once(&segment.uri));
        for uri in uris {
            let path = resolve(playlist_path, uri);
            if copied.contains(&path) {
                continue;
            }
            let object = http_get_ok(from, &path)?;
            write_served(root, &path, &object.body)?;
            copied.insert(path);
        }
    }
    write_served(root, playlist_path, &playlist.body)?;
    *last = playlist.body;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from wrk 4.1.0 (Debian 12) against nginx 1.22.1 on the project box (a 3 s
    /// smoke run of compare-nginx on a busy box).
    const WRK_OUTPUT: &str = "Running 3s test @ http://127.0.0.1:42373/live/big/source/2.m4s
  1 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   158.08ms   78.72ms 384.01ms   63.61%
    Req/Sec     1.17k   419.71     2.33k    85.71%
  Latency Distribution
     50%  157.50ms
     75%  219.91ms
     90%  262.55ms
     99%  331.11ms
  3449 requests in 3.06s, 3.21GB read
Requests/sec:   1125.66
Transfer/sec:      1.05GB
";

    /// The two lines wrk adds when requests failed (format of src/wrk.c `main`).
    const WRK_ERRORS: &str = "  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
";

    #[test]
    fn wrk_report() {
        let r = parse_wrk(WRK_OUTPUT).expect("parses");
        assert_eq!(r.requests, 3449);
        assert!((r.seconds - 3.06).abs() < 1e-9);
        assert!((r.requests_per_s - 1125.66).abs() < 1e-9);
        assert!((r.bytes_per_s - 1.05 * 1024.0 * 1024.0 * 1024.0).abs() < 1.0);
        assert!((r.p50_ms - 157.50).abs() < 1e-9);
        assert!((r.p90_ms - 262.55).abs() < 1e-9);
        assert!((r.p99_ms - 331.11).abs() < 1e-9);
        assert_eq!((r.socket_errors, r.non_2xx_3xx), (0, 0));
        let with_errors =
            WRK_OUTPUT.replace("Requests/sec:", &format!("{WRK_ERRORS}Requests/sec:"));
        let r = parse_wrk(&with_errors).expect("parses");
        assert_eq!((r.socket_errors, r.non_2xx_3xx), (5, 7));
        // A run that printed no latency distribution (no --latency) is not a result.
        let cut: String = WRK_OUTPUT
            .lines()
            .filter(|l| !l.contains("99%"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse_wrk(&cut), None);
        assert_eq!(parse_wrk(""), None);
    }

    #[test]
    fn wrk_units() {
        assert_eq!(wrk_time_ms("850.00us"), Some(0.85));
        assert_eq!(wrk_time_ms("1.50s"), Some(1500.0));
        assert_eq!(wrk_time_ms("2.00m"), Some(120_000.0));
        assert_eq!(wrk_time_ms("12"), None);
        assert_eq!(wrk_time_ms("3.0xs"), None);
        assert_eq!(wrk_bytes("512.00KB"), Some(524_288.0));
        assert_eq!(wrk_bytes("123B"), Some(123.0));
    }

    #[test]
    fn masks() {
        assert_eq!(cpu_mask(0), "1");
        assert_eq!(cpu_mask(1), "10");
        assert_eq!(cpu_mask(3), "1000");
    }

    #[test]
    fn conf_has_the_tuning() {
        let conf = render_conf(&NginxConf {
            listen: "127.0.0.1:38180".parse().unwrap(),
            root: "/tmp/x/www".into(),
            state_dir: "/tmp/x/nginx".into(),
            worker_cpus: vec![0, 1],
            user_root: true,
            live_prefix: Some("/live/live/".into()),
        });
        for line in [
            "user root;",
            "worker_processes 2;",
            "worker_cpu_affinity 1 10;",
            "sendfile on;",
            "tcp_nopush on;",
            "tcp_nodelay on;",
            "access_log off;",
            "open_file_cache max=1000 inactive=120s;",
            "keepalive_requests 100000000;",
            "listen 127.0.0.1:38180 reuseport backlog=4096;",
            "root /tmp/x/www;",
            "location ~ ^/live/live/.*\\.m3u8$ { open_file_cache off; }",
            "pid /tmp/x/nginx/nginx.pid;",
        ] {
            assert!(conf.contains(line), "missing {line:?} in\n{conf}");
        }
    }

    #[test]
    fn responses() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nServer: x\r\n\r\nabc";
        let f = parse_response(raw).expect("parses");
        assert_eq!(f.status, 200);
        assert_eq!(f.head_len, raw.len() - 3);
        assert_eq!(f.body, b"abc");
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc";
        assert!(parse_response(short).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn uris_and_paths() {
        assert_eq!(
            resolve("/live/big/source/index.m3u8", "3.m4s"),
            "/live/big/source/3.m4s"
        );
        assert_eq!(resolve("/live/a/index.m3u8", "/x/init.mp4"), "/x/init.mp4");
        let dir = std::env::temp_dir().join(format!("cc-nginx-test-{}", std::process::id()));
        write_served(&dir, "/live/a/0.m4s", b"seg").expect("writes");
        assert_eq!(std::fs::read(dir.join("live/a/0.m4s")).unwrap(), b"seg");
        assert!(write_served(&dir, "/live/../etc/passwd", b"x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
