//! `corecast-bench compare-nginx`: corecast and nginx side by side in one run (issue 4, goal 2).
//!
//! Both servers run at once on their own ports with the same number of workers on the same
//! CPUs: corecast places its delivery workers by its core plan, we read where they run and pin
//! nginx's workers (`worker_cpu_affinity`) there; the load (wrk, the viewer simulator) runs on
//! the other CPUs. Both serve the same bytes: corecast's are published into it over RTMP by
//! ffmpeg, then fetched from it and written as files for nginx. Runs alternate corecast, nginx,
//! corecast, nginx… per case, and the report gives medians over rounds, because this machine is
//! shared and noisy; each run records the CPU that neither server nor load used ("foreign").
//!
//! Process plumbing (spawning, pinning, /proc sampling) is in [`crate::compare_run`]; the nginx
//! configuration and the wrk parser are in [`crate::nginx`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::BenchError;
use crate::closed::{LoadConfig, run_load};
use crate::compare_run::{
    CpuMeter, CpuUsage, Proc, free_ports, nginx_worker_pids, pin_self, run_wrk, thread_cpus,
    wait_for_http, wait_quiet,
};
use crate::nginx::{self, LiveMirror, NginxConf, WrkResult};
use crate::player::PlayerConfig;
use crate::viewers::{self, ViewersConfig};

/// One load case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    /// Closed loop on the segment nearest 1 MB.
    Seg1m,
    /// Closed loop on the segment nearest 100 KB.
    Seg100k,
    /// Closed loop on a media playlist (~600 B).
    Playlist,
    /// The live viewer simulation (`corecast-bench viewers`) at a fixed N.
    Viewers,
}

impl Case {
    pub fn name(self) -> &'static str {
        match self {
            Case::Seg1m => "seg1m",
            Case::Seg100k => "seg100k",
            Case::Playlist => "playlist",
            Case::Viewers => "viewers",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CompareConfig {
    pub corecast: PathBuf,
    pub nginx: PathBuf,
    /// The closed-loop load of cases (a)-(c).
    pub client: Client,
    pub wrk: PathBuf,
    pub ffmpeg: PathBuf,
    /// corecast `[delivery] workers`, and nginx `worker_processes`.
    pub workers: usize,
    /// CPUs for the load; empty: every CPU the servers' workers do not use.
    pub client_cpus: Vec<usize>,
    pub connections: u32,
    pub run_seconds: f64,
    pub rounds: u32,
    pub cases: Vec<Case>,
    pub viewers: u64,
    /// Before the rounds, try nginx alone at each of these viewer counts (ascending) and run
    /// the rounds at the largest it held with no stall and no error (`viewers` if none did).
    pub viewers_search: Vec<u64>,
    pub viewers_seconds: f64,
    /// Video bitrates of the two published streams: 2 s segments of about 1 MB and 100 KB.
    pub big_kbps: u32,
    pub small_kbps: u32,
    /// Where the configs, the document root, the logs and the report go.
    pub out_dir: PathBuf,
    /// Before each run, wait up to this long for the box to be quiet.
    pub quiet_wait: Duration,
    /// Runs with more foreign CPU than this (cores) are flagged, and medians over the clean
    /// runs are given beside the medians over all.
    pub foreign_max: f64,
    /// Also run the copy floor ([`Server::Floor`]) in the closed-loop cases.
    pub floor: bool,
    /// This program, started again as `body-path-server` for the floor.
    pub bench_exe: PathBuf,
}

/// Which program loads the servers in the closed-loop cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    /// `corecast-bench load` in this process: io_uring, bodies discarded with `MSG_TRUNC`
    /// (see [`crate::closed`] for why).
    Uring,
    /// wrk, which reads every body into user space.
    Wrk,
}

/// Which server a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Server {
    Corecast,
    Nginx,
    /// The ceiling of any server that copies its bodies into the socket: a minimal io_uring
    /// server (`body-path-server --path send`) that answers every request with corecast's own
    /// recorded response in one `SENDMSG`, doing nothing else (no parsing beyond the blank
    /// line, no lookup, no bookkeeping). With `--floor`, closed-loop cases only.
    Floor,
}

/// The viewers figures kept per run.
#[derive(Debug, Clone, Serialize)]
pub struct ViewersSummary {
    pub viewers: u64,
    pub connections_min_steady: u64,
    pub requests_per_s: f64,
    pub gbps: f64,
    pub segment_ttfb_p50_ms: f64,
    pub segment_ttfb_p99_ms: f64,
    pub playlist_ttfb_p99_ms: f64,
    pub stalls: u64,
    pub stall_time_s: f64,
    pub errors_total: u64,
    pub generator_timer_lateness_p99_ms: f64,
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub case: Case,
    pub server: Server,
    pub round: u32,
    /// Requests/s, from wrk or the viewers' steady window.
    pub requests_per_s: f64,
    pub p99_ms: f64,
    pub p50_ms: f64,
    pub gbps: f64,
    pub errors: u64,
    pub wrk: Option<WrkResult>,
    pub viewers: Option<ViewersSummary>,
    pub cpu: CpuUsage,
    /// Requests/s divided by the busy fraction of the server's CPUs (irq and softirq included):
    /// research/uring.md's per-core figure; meaningful only when foreign CPU was near 0, since
    /// other load on the server's CPU counts as busy.
    pub requests_per_busy_server_core: f64,
    /// Requests/s divided by the server processes' own CPU (cores): robust to other load.
    pub requests_per_server_process_core: f64,
    /// IP packets the box sent per request during the run (both sides on loopback), e.g. 4 for
    /// a 100 KB response: the request, two data packets of up to 64 KiB, one ACK.
    pub packets_per_request: f64,
    /// Seconds spent waiting for a quiet box before the run.
    pub quiet_wait_s: f64,
    /// Foreign CPU above `foreign_max`.
    pub noisy: bool,
}

/// Medians of one server over the rounds of one case.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ServerSummary {
    pub runs: usize,
    pub clean_runs: usize,
    pub requests_per_s: f64,
    pub p99_ms: f64,
    pub p50_ms: f64,
    pub gbps: f64,
    pub server_cores: f64,
    pub requests_per_busy_server_core: f64,
    pub requests_per_server_process_core: f64,
    pub foreign_cores: f64,
    /// The same medians over the clean runs only (none when no run was clean).
    pub clean_requests_per_s: Option<f64>,
    pub clean_p99_ms: Option<f64>,
    pub errors: u64,
    pub stalls: Option<u64>,
}

/// corecast against nginx on one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseSummary {
    pub case: Case,
    /// The URL path both servers were asked for (closed-loop cases).
    pub path: Option<String>,
    pub body_bytes: Option<usize>,
    pub corecast: ServerSummary,
    pub nginx: ServerSummary,
    /// corecast / nginx: above 1 means corecast served more.
    pub requests_per_s_ratio: f64,
    /// corecast / nginx: below 1 means corecast's p99 was lower.
    pub p99_ratio: f64,
    pub requests_per_busy_server_core_ratio: f64,
    pub requests_per_server_process_core_ratio: f64,
    /// The copy floor's runs, when it ran.
    pub floor: Option<ServerSummary>,
    /// floor / nginx requests/s: the most any copying server could have shown here.
    pub floor_over_nginx: Option<f64>,
    /// corecast / floor requests/s: how close corecast came to that ceiling.
    pub corecast_over_floor: Option<f64>,
}

/// An object both servers serve, with each server's response head size.
#[derive(Debug, Clone, Serialize)]
pub struct ServedObject {
    pub path: String,
    pub body_bytes: usize,
    pub corecast_head_bytes: usize,
    pub nginx_head_bytes: usize,
}

/// Everything the run produced.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub started_unix_s: u64,
    pub box_cpus: usize,
    pub server_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
    pub workers: usize,
    pub connections: u32,
    pub run_seconds: f64,
    pub rounds: u32,
    pub foreign_max: f64,
    pub corecast_version: String,
    pub nginx_version: String,
    pub wrk_command: String,
    pub objects: BTreeMap<String, ServedObject>,
    /// Candidate segment sizes that were published (bytes), to show how near the targets were.
    pub published_segment_bytes: BTreeMap<String, Vec<usize>>,
    pub cases: Vec<CaseSummary>,
    pub runs: Vec<RunRecord>,
    /// Bytes verified equal on both servers after the runs.
    pub bytes_identical_after: bool,
    pub notes: Vec<String>,
    pub total_s: f64,
}

fn fail(why: impl Into<String>) -> BenchError {
    BenchError::Compare(why.into())
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Medians of the runs of one server in one case.
pub fn summarize(runs: &[&RunRecord]) -> ServerSummary {
    let pick = |f: &dyn Fn(&RunRecord) -> f64| -> f64 {
        median(&mut runs.iter().map(|r| f(r)).collect::<Vec<_>>())
    };
    let clean: Vec<&&RunRecord> = runs.iter().filter(|r| !r.noisy).collect();
    let clean_median = |f: &dyn Fn(&RunRecord) -> f64| -> Option<f64> {
        (!clean.is_empty()).then(|| median(&mut clean.iter().map(|r| f(r)).collect::<Vec<_>>()))
    };
    let stalls: Vec<u64> = runs
        .iter()
        .filter_map(|r| r.viewers.as_ref().map(|v| v.stalls))
        .collect();
    ServerSummary {
        runs: runs.len(),
        clean_runs: clean.len(),
        requests_per_s: pick(&|r| r.requests_per_s),
        p99_ms: pick(&|r| r.p99_ms),
        p50_ms: pick(&|r| r.p50_ms),
        gbps: pick(&|r| r.gbps),
        server_cores: pick(&|r| r.cpu.server_cores),
        requests_per_busy_server_core: pick(&|r| r.requests_per_busy_server_core),
        requests_per_server_process_core: pick(&|r| r.requests_per_server_process_core),
        foreign_cores: pick(&|r| r.cpu.foreign_cores),
        clean_requests_per_s: clean_median(&|r| r.requests_per_s),
        clean_p99_ms: clean_median(&|r| r.p99_ms),
        errors: runs.iter().map(|r| r.errors).sum(),
        stalls: (!stalls.is_empty()).then(|| stalls.iter().sum()),
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// Pairs the runs of each case into a summary.
pub fn summarize_cases(
    runs: &[RunRecord],
    objects: &BTreeMap<String, ServedObject>,
) -> Vec<CaseSummary> {
    let mut cases: Vec<Case> = runs.iter().map(|r| r.case).collect();
    cases.sort();
    cases.dedup();
    cases
        .into_iter()
        .map(|case| {
            let of = |server| {
                let picked: Vec<&RunRecord> = runs
                    .iter()
                    .filter(|r| r.case == case && r.server == server)
                    .collect();
                summarize(&picked)
            };
            let corecast = of(Server::Corecast);
            let nginx = of(Server::Nginx);
            let floor = runs
                .iter()
                .any(|r| r.case == case && r.server == Server::Floor)
                .then(|| of(Server::Floor));
            let object = objects.get(case.name());
            CaseSummary {
                case,
                path: object.map(|o| o.path.clone()),
                body_bytes: object.map(|o| o.body_bytes),
                requests_per_s_ratio: ratio(corecast.requests_per_s, nginx.requests_per_s),
                p99_ratio: ratio(corecast.p99_ms, nginx.p99_ms),
                requests_per_busy_server_core_ratio: ratio(
                    corecast.requests_per_busy_server_core,
                    nginx.requests_per_busy_server_core,
                ),
                requests_per_server_process_core_ratio: ratio(
                    corecast.requests_per_server_process_core,
                    nginx.requests_per_server_process_core,
                ),
                floor_over_nginx: floor
                    .as_ref()
                    .map(|f| ratio(f.requests_per_s, nginx.requests_per_s)),
                corecast_over_floor: floor
                    .as_ref()
                    .map(|f| ratio(corecast.requests_per_s, f.requests_per_s)),
                floor,
                corecast,
                nginx,
            }
        })
        .collect()
}

impl CompareReport {
    /// The human table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "corecast-bench compare-nginx: {} worker(s) each on cpu {:?}, load on cpu {:?}, \
             {} connections, {} s runs, {} rounds, {:.0} s in all",
            self.workers,
            self.server_cpus,
            self.client_cpus,
            self.connections,
            self.run_seconds,
            self.rounds,
            self.total_s
        );
        let _ = writeln!(t, "{} vs {}", self.corecast_version, self.nginx_version);
        for (name, o) in &self.objects {
            let _ = writeln!(
                t,
                "  {name}: {} ({} B body; head {} B corecast, {} B nginx)",
                o.path, o.body_bytes, o.corecast_head_bytes, o.nginx_head_bytes
            );
        }
        let _ = writeln!(
            t,
            "{:<9} {:<8} {:>4} | {:>10} {:>9} {:>9} {:>7} | {:>7} {:>10} {:>7} {:>7} {:>7} {:>6}",
            "case",
            "server",
            "rnd",
            "req/s",
            "p50 ms",
            "p99 ms",
            "Gbps",
            "srv cpu",
            "req/s/core",
            "client",
            "foreign",
            "pkt/req",
            "errors"
        );
        for r in &self.runs {
            let _ = writeln!(
                t,
                "{:<9} {:<8} {:>4} | {:>10.0} {:>9.2} {:>9.2} {:>7.2} | {:>7.2} {:>10.0} {:>7.2} {:>6.2}{} {:>7.2} {:>6}",
                r.case.name(),
                format!("{:?}", r.server).to_lowercase(),
                r.round,
                r.requests_per_s,
                r.p50_ms,
                r.p99_ms,
                r.gbps,
                r.cpu.server_cores,
                r.requests_per_busy_server_core,
                r.cpu.client_cores,
                r.cpu.foreign_cores,
                if r.noisy { "!" } else { " " },
                r.packets_per_request,
                r.errors,
            );
        }
        let _ = writeln!(
            t,
            "medians ('!' above: foreign > {} cores)  corecast | nginx | ratio corecast/nginx",
            self.foreign_max
        );
        let _ = writeln!(
            t,
            "{:<9} | {:>10} {:>9} {:>9} | {:>10} {:>9} {:>9} | {:>7} {:>7} {:>9} {:>9} | {:>13}",
            "case",
            "req/s",
            "p99 ms",
            "req/cpu-s",
            "req/s",
            "p99 ms",
            "req/cpu-s",
            "req/s",
            "p99",
            "busy-core",
            "proc-core",
            "foreign c / n"
        );
        for c in &self.cases {
            let _ = writeln!(
                t,
                "{:<9} | {:>10.0} {:>9.2} {:>9.0} | {:>10.0} {:>9.2} {:>9.0} | {:>6.2}x {:>6.2}x {:>8.2}x {:>8.2}x | {:>6.2} {:>6.2}",
                c.case.name(),
                c.corecast.requests_per_s,
                c.corecast.p99_ms,
                c.corecast.requests_per_server_process_core,
                c.nginx.requests_per_s,
                c.nginx.p99_ms,
                c.nginx.requests_per_server_process_core,
                c.requests_per_s_ratio,
                c.p99_ratio,
                c.requests_per_busy_server_core_ratio,
                c.requests_per_server_process_core_ratio,
                c.corecast.foreign_cores,
                c.nginx.foreign_cores,
            );
            if let (Some(f), Some(over_nginx), Some(corecast_share)) =
                (&c.floor, c.floor_over_nginx, c.corecast_over_floor)
            {
                let _ = writeln!(
                    t,
                    "{:<9} | copy floor {:.0} req/s, p99 {:.2} ms: floor/nginx {:.2}x, \
                     corecast/floor {:.2}x",
                    "", f.requests_per_s, f.p99_ms, over_nginx, corecast_share
                );
            }
            if let (Some(a), Some(b)) = (c.corecast.stalls, c.nginx.stalls) {
                let _ = writeln!(t, "{:<9} | stalls: corecast {a}, nginx {b}", "");
            }
        }
        if !self.bytes_identical_after {
            let _ = writeln!(t, "WARNING: the servers' bytes differed after the runs");
        }
        for note in &self.notes {
            let _ = writeln!(t, "note: {note}");
        }
        t
    }
}

/// Paths of the published streams.
const BIG: &str = "/live/big/source/index.m3u8";
const SMALL: &str = "/live/small/source/index.m3u8";
const LIVE_STREAM: &str = "live";
const LIVE_PLAYLIST: &str = "/live/live/source/index.m3u8";

fn version_of(binary: &PathBuf, flag: &str) -> String {
    std::process::Command::new(binary)
        .arg(flag)
        .output()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// ffmpeg publishing a synthetic H.264 stream (no audio: segment sizes follow the video
/// bitrate alone) over RTMP. `realtime`: paced at 1× (a live stream); otherwise as fast as it
/// encodes, for a fixed set of segments.
fn publish(
    config: &CompareConfig,
    rtmp: SocketAddr,
    stream: &str,
    kbps: u32,
    seconds: f64,
    realtime: bool,
    log: PathBuf,
) -> Result<Proc, BenchError> {
    let size = if kbps >= 1000 { "1280x720" } else { "640x360" };
    let mut args: Vec<String> = vec!["-hide_banner".into(), "-loglevel".into(), "error".into()];
    if realtime {
        args.push("-re".into());
    }
    let rate = format!("{kbps}k");
    args.extend(
        [
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30"),
            "-t",
            &format!("{seconds}"),
            // Temporal noise keeps the encoder from undershooting the bitrate on a test pattern.
            "-vf",
            "noise=alls=16:allf=t",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            &rate,
            "-minrate",
            &rate,
            "-maxrate",
            &rate,
            "-bufsize",
            &rate,
            "-x264-params",
            "nal-hrd=cbr",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-an",
            "-f",
            "flv",
            &format!("rtmp://{rtmp}/live/{stream}"),
        ]
        .map(String::from),
    );
    Proc::spawn(
        &format!("ffmpeg {stream}"),
        &config.ffmpeg,
        &args,
        None,
        &log,
    )
}

/// Fetches a playlist's segments and returns (path, body) of each.
fn segments_of(http: SocketAddr, playlist: &str) -> Result<Vec<(String, Vec<u8>)>, BenchError> {
    let body = nginx::http_get_ok(http, playlist).map_err(fail)?.body;
    let parsed = crate::playlist::MediaPlaylist::parse(&body)
        .ok_or_else(|| fail(format!("{playlist}: not a media playlist")))?;
    parsed
        .segments
        .iter()
        .map(|s| {
            let path = nginx::resolve(playlist, &s.uri);
            let object = nginx::http_get_ok(http, &path).map_err(fail)?;
            Ok((path, object.body))
        })
        .collect()
}

fn nearest(segments: &[(String, Vec<u8>)], target: usize) -> Option<&(String, Vec<u8>)> {
    segments
        .iter()
        .min_by_key(|(_, body)| body.len().abs_diff(target))
}

/// Waits until a published stream's playlist says it has ended (or `limit` passes).
fn wait_ended(http: SocketAddr, playlist: &str, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Ok(f) = nginx::http_get_ok(http, playlist)
            && crate::playlist::MediaPlaylist::parse(&f.body).is_some_and(|p| p.ended)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn wait_listed(http: SocketAddr, playlist: &str, segments: usize, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Ok(f) = nginx::http_get_ok(http, playlist)
            && crate::playlist::MediaPlaylist::parse(&f.body)
                .is_some_and(|p| p.segments.len() >= segments)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Runs the whole comparison. Bounded: every child has a deadline and is stopped on return.
pub fn run(config: &CompareConfig) -> Result<CompareReport, BenchError> {
    let began = Instant::now();
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::fs::create_dir_all(&config.out_dir)
        .map_err(|e| fail(format!("creating {}: {e}", config.out_dir.display())))?;
    // Absolute: nginx resolves relative paths against its prefix, not our directory.
    let out = &std::fs::canonicalize(&config.out_dir)
        .map_err(|e| fail(format!("{}: {e}", config.out_dir.display())))?;
    let www = out.join("www");
    let state = out.join("nginx");
    for dir in [&www, &state] {
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    }
    let box_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut notes = vec![load_note("at the start")];

    let ports = free_ports(4)?;
    let ip = [127, 0, 0, 1];
    let http = SocketAddr::from((ip, ports[0]));
    let rtmp = SocketAddr::from((ip, ports[1]));
    let api = SocketAddr::from((ip, ports[2]));
    let nginx_addr = SocketAddr::from((ip, ports[3]));
    // SRT too, or corecast would bind UDP 9000, which a running corecast may hold.
    let srt = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map_err(|e| fail(format!("picking a free UDP port: {e}")))?;

    // corecast: no demo (its encoder would share the delivery core); published streams stay
    // fetchable after their publisher leaves (ended_retention_seconds).
    let corecast_conf = out.join("corecast.toml");
    let toml = format!(
        "http = \"{http}\"\nrtmp = \"{rtmp}\"\napi = \"{api}\"\nsrt = \"{srt}\"\n\
         [packaging]\nsegment_seconds = 2.0\nwindow = 6\ngrace_period_seconds = 1\n\
         ended_retention_seconds = 3600\n\
         [delivery]\nworkers = {}\nmax_connections_per_worker = 20000\n",
        config.workers
    );
    std::fs::write(&corecast_conf, toml).map_err(|e| fail(format!("corecast.toml: {e}")))?;
    let corecast = Proc::spawn(
        "corecast",
        &config.corecast,
        &[
            "run".into(),
            "--config".into(),
            corecast_conf.display().to_string(),
            "--no-demo".into(),
        ],
        None,
        &out.join("corecast.log"),
    )?;
    wait_for_http(http, &corecast, Duration::from_secs(15))?;
    let server_cpus = thread_cpus(corecast.pid(), "delivery-", config.workers)?;
    let client_cpus: Vec<usize> = if config.client_cpus.is_empty() {
        (0..box_cpus).filter(|c| !server_cpus.contains(c)).collect()
    } else {
        config.client_cpus.clone()
    };
    if client_cpus.is_empty() {
        notes.push("no CPU left for the load: it ran unpinned, sharing the servers' CPUs".into());
    }

    // The fixed objects: two streams published as fast as ffmpeg encodes them.
    let fixed_cases = config.cases.iter().any(|c| *c != Case::Viewers);
    let mut objects = BTreeMap::new();
    let mut published = BTreeMap::new();
    let mut contents: Vec<(String, String, Vec<u8>)> = Vec::new();
    if fixed_cases {
        let mut publishers = Vec::new();
        for (stream, kbps) in [("big", config.big_kbps), ("small", config.small_kbps)] {
            publishers.push(publish(
                config,
                rtmp,
                stream,
                kbps,
                13.0,
                false,
                out.join(format!("ffmpeg-{stream}.log")),
            )?);
        }
        for p in &mut publishers {
            p.wait_exit(Duration::from_secs(90))?;
        }
        for playlist in [BIG, SMALL] {
            if !wait_ended(http, playlist, Duration::from_secs(10)) {
                notes.push(format!("{playlist} did not show EXT-X-ENDLIST within 10 s"));
            }
        }
        let big = segments_of(http, BIG)?;
        let small = segments_of(http, SMALL)?;
        published.insert(
            "big".to_string(),
            big.iter().map(|(_, b)| b.len()).collect(),
        );
        published.insert(
            "small".to_string(),
            small.iter().map(|(_, b)| b.len()).collect(),
        );
        let playlist = nginx::http_get_ok(http, BIG).map_err(fail)?.body;
        let seg1m = nearest(&big, 1_000_000).ok_or_else(|| fail("no big segments"))?;
        let seg100k = nearest(&small, 100_000).ok_or_else(|| fail("no small segments"))?;
        contents.push(("seg1m".into(), seg1m.0.clone(), seg1m.1.clone()));
        contents.push(("seg100k".into(), seg100k.0.clone(), seg100k.1.clone()));
        contents.push(("playlist".into(), BIG.into(), playlist));
        for (_, path, body) in &contents {
            nginx::write_served(&www, path, body).map_err(fail)?;
        }
    }

    // nginx: the same number of workers, on the CPUs corecast's workers run on.
    let conf = NginxConf {
        listen: nginx_addr,
        root: www.clone(),
        state_dir: state.clone(),
        worker_cpus: server_cpus.clone(),
        // SAFETY: geteuid has no preconditions and cannot fail.
        user_root: unsafe { libc::geteuid() } == 0,
        live_prefix: Some(format!("/live/{LIVE_STREAM}/")),
    };
    let conf_path = state.join("nginx.conf");
    std::fs::write(&conf_path, nginx::render_conf(&conf))
        .map_err(|e| fail(format!("{}: {e}", conf_path.display())))?;
    let nginx_proc = Proc::spawn(
        "nginx",
        &config.nginx,
        &[
            "-p".into(),
            state.display().to_string(),
            "-c".into(),
            conf_path.display().to_string(),
        ],
        None,
        &out.join("nginx.log"),
    )?;
    wait_for_http(nginx_addr, &nginx_proc, Duration::from_secs(10))?;
    let nginx_workers = nginx_worker_pids(nginx_proc.pid(), config.workers)?;

    let floor_dir = out.join("floor");
    for (name, path, body) in &contents {
        let a = nginx::http_get_ok(http, path).map_err(fail)?;
        let b = nginx::http_get_ok(nginx_addr, path).map_err(fail)?;
        if a.body != *body || b.body != *body {
            return Err(fail(format!("{path}: the two servers' bytes differ")));
        }
        if config.floor {
            std::fs::create_dir_all(&floor_dir).map_err(|e| fail(format!("floor dir: {e}")))?;
            let recorded = [keep_alive_head(&a.head), a.body.clone()].concat();
            std::fs::write(floor_dir.join(format!("{name}.http")), recorded)
                .map_err(|e| fail(format!("floor response: {e}")))?;
        }
        objects.insert(
            name.clone(),
            ServedObject {
                path: path.clone(),
                body_bytes: body.len(),
                corecast_head_bytes: a.head_len,
                nginx_head_bytes: b.head_len,
            },
        );
    }

    // From here on this process (and the load it starts) stays off the servers' CPUs.
    if !client_cpus.is_empty() {
        pin_self(&client_cpus)?;
    }
    let mut meter = CpuMeter::new(
        corecast.pid(),
        nginx_proc.pid(),
        nginx_workers.clone(),
        server_cpus.clone(),
    );
    let wrk_threads = client_cpus.len().max(1);
    let cpus = client_cpus
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let wrk_command = match config.client {
        Client::Wrk => format!(
            "taskset -c {cpus} {} -t{wrk_threads} -c{} -d{}s --latency --timeout 10s http://127.0.0.1:PORT/PATH",
            config.wrk.display(),
            config.connections,
            config.run_seconds,
        ),
        Client::Uring => format!(
            "(in process, pinned to cpus {cpus}) corecast-bench load --url http://127.0.0.1:PORT/PATH -c {} --threads {wrk_threads} --duration {}",
            config.connections, config.run_seconds,
        ),
    };
    let mut runs = Vec::new();
    let closed: Vec<Case> = config
        .cases
        .iter()
        .copied()
        .filter(|c| *c != Case::Viewers)
        .collect();
    for round in 1..=config.rounds {
        for &case in &closed {
            let path = &objects
                .get(case.name())
                .ok_or_else(|| fail("object missing"))?
                .path;
            let floor_servers = config.floor.then_some(Server::Floor);
            for server in [Server::Corecast, Server::Nginx]
                .into_iter()
                .chain(floor_servers)
            {
                // The floor lives for one run, on the servers' CPUs.
                let (addr, floor) = match server {
                    Server::Corecast => (http, None),
                    Server::Nginx => (nginx_addr, None),
                    Server::Floor => {
                        let (proc, addr) = start_floor(
                            config,
                            &floor_dir.join(format!("{}.http", case.name())),
                            &server_cpus,
                            &out.join(format!("floor-{}-{round}.log", case.name())),
                        )?;
                        (addr, Some(proc))
                    }
                };
                meter.set_floor(floor.as_ref().map(Proc::pid));
                let waited = wait_quiet(config.quiet_wait);
                let url = format!("http://{addr}{path}");
                meter.start();
                let (wrk, text) = match config.client {
                    Client::Wrk => run_wrk(
                        &config.wrk,
                        &client_cpus,
                        wrk_threads,
                        config.connections,
                        config.run_seconds,
                        &url,
                    )?,
                    Client::Uring => {
                        let load = LoadConfig {
                            target: match addr {
                                SocketAddr::V4(a) => a,
                                SocketAddr::V6(_) => return Err(fail("IPv6 server address")),
                            },
                            host: addr.to_string(),
                            path: path.clone(),
                            connections: config.connections,
                            duration: Duration::from_secs_f64(config.run_seconds.max(0.5)),
                            threads: wrk_threads,
                            sources: Vec::new(),
                        };
                        let result = run_load(&load)?;
                        (Some(result.as_wrk()), result.text(&load))
                    }
                };
                let cpu = meter.stop(server);
                drop(floor);
                meter.set_floor(None);
                std::fs::write(
                    out.join(format!("load-{}-{:?}-{round}.txt", case.name(), server)),
                    &text,
                )
                .map_err(|e| fail(format!("load log: {e}")))?;
                let wrk =
                    wrk.ok_or_else(|| fail(format!("load output not understood:\n{text}")))?;
                runs.push(RunRecord {
                    case,
                    server,
                    round,
                    requests_per_s: wrk.requests_per_s,
                    p99_ms: wrk.p99_ms,
                    p50_ms: wrk.p50_ms,
                    gbps: wrk.bytes_per_s * 8.0 / 1e9,
                    errors: wrk.socket_errors + wrk.non_2xx_3xx,
                    requests_per_busy_server_core: ratio(
                        wrk.requests_per_s,
                        cpu.server_cpus_busy_cores,
                    ),
                    requests_per_server_process_core: ratio(wrk.requests_per_s, cpu.server_cores),
                    packets_per_request: packets_per_request(&cpu, wrk.requests_per_s),
                    noisy: cpu.foreign_cores > config.foreign_max,
                    wrk: Some(wrk),
                    viewers: None,
                    cpu,
                    quiet_wait_s: waited.as_secs_f64(),
                });
                eprintln!("{}", short_line(runs.last().expect("just pushed")));
            }
        }
    }

    if config.cases.contains(&Case::Viewers) {
        run_viewers_case(
            config,
            http,
            rtmp,
            nginx_addr,
            &www,
            &mut meter,
            &client_cpus,
            &mut runs,
            &mut notes,
        )?;
    }

    // The bytes must still be the same at the end (corecast's playlist must not have moved).
    let mut identical = true;
    for object in objects.values() {
        let a = nginx::http_get_ok(http, &object.path).map(|f| f.body);
        let b = nginx::http_get_ok(nginx_addr, &object.path).map(|f| f.body);
        identical &= matches!((&a, &b), (Ok(a), Ok(b)) if a == b);
    }
    drop(nginx_proc);
    drop(corecast);
    notes.push(load_note("at the end"));

    let cases = summarize_cases(&runs, &objects);
    Ok(CompareReport {
        started_unix_s,
        box_cpus,
        server_cpus,
        client_cpus,
        workers: config.workers,
        connections: config.connections,
        run_seconds: config.run_seconds,
        rounds: config.rounds,
        foreign_max: config.foreign_max,
        corecast_version: version_of(&config.corecast, "--version"),
        nginx_version: version_of(&config.nginx, "-v"),
        wrk_command,
        objects,
        published_segment_bytes: published,
        cases,
        runs,
        bytes_identical_after: identical,
        notes,
        total_s: began.elapsed().as_secs_f64(),
    })
}

/// /proc/loadavg, so a reader sees how busy the shared box was.
fn load_note(when: &str) -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "load average {when}: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// A Connection: close response's head as a keep-alive answer (what the closed loop gets).
fn keep_alive_head(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    text.split_inclusive("\r\n")
        .filter(|line| !line.trim_end().eq_ignore_ascii_case("connection: close"))
        .collect::<String>()
        .into_bytes()
}

/// Starts the copy floor on `cpus`, answering with the response recorded in `response`.
fn start_floor(
    config: &CompareConfig,
    response: &std::path::Path,
    cpus: &[usize],
    log: &std::path::Path,
) -> Result<(Proc, SocketAddr), BenchError> {
    let port = free_ports(1)?[0];
    let args: Vec<String> = vec![
        "body-path-server".into(),
        "--path".into(),
        "send".into(),
        "--response".into(),
        response.display().to_string(),
        "--port".into(),
        port.to_string(),
        "--seconds".into(),
        format!("{}", config.run_seconds.ceil() as u64 + 60),
    ];
    let proc = Proc::spawn("copy floor", &config.bench_exe, &args, Some(cpus), log)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_http(addr, &proc, Duration::from_secs(10))?;
    Ok((proc, addr))
}

/// IP packets sent per request over a run measured by `cpu` (NaN when none was served).
fn packets_per_request(cpu: &CpuUsage, requests_per_s: f64) -> f64 {
    ratio(cpu.net.ip_out_packets as f64, requests_per_s * cpu.seconds)
}

fn short_line(r: &RunRecord) -> String {
    format!(
        "compare-nginx: {} {:?} round {}: {:.0} req/s, p99 {:.2} ms, server {:.2} cores, \
         foreign {:.2}, loss probes {}{}",
        r.case.name(),
        r.server,
        r.round,
        r.requests_per_s,
        r.p99_ms,
        r.cpu.server_cores,
        r.cpu.foreign_cores,
        r.cpu.net.tcp_loss_probes,
        if r.noisy { " (noisy)" } else { "" }
    )
}

/// (d): a live stream published at 1× into corecast, mirrored into nginx's root as files,
/// and the viewer simulation against each in turn.
#[allow(clippy::too_many_arguments)]
fn run_viewers_case(
    config: &CompareConfig,
    http: SocketAddr,
    rtmp: SocketAddr,
    nginx_addr: SocketAddr,
    www: &std::path::Path,
    meter: &mut CpuMeter,
    client_cpus: &[usize],
    runs: &mut Vec<RunRecord>,
    notes: &mut Vec<String>,
) -> Result<(), BenchError> {
    let per_run = config.viewers_seconds + 3.0;
    let live_seconds =
        16.0 + (f64::from(config.rounds) * 2.0 + config.viewers_search.len() as f64) * per_run;
    let _publisher = publish(
        config,
        rtmp,
        LIVE_STREAM,
        300,
        live_seconds,
        true,
        www.with_file_name("ffmpeg-live.log"),
    )?;
    if !wait_listed(http, LIVE_PLAYLIST, 4, Duration::from_secs(20)) {
        return Err(fail("the live stream did not list 4 segments within 20 s"));
    }
    let mirror = LiveMirror::start(
        http,
        LIVE_PLAYLIST.into(),
        www.to_path_buf(),
        Duration::from_millis(100),
    );
    if !wait_listed(nginx_addr, LIVE_PLAYLIST, 4, Duration::from_secs(5)) {
        return Err(fail("the mirror did not bring the live playlist to nginx"));
    }
    let one_run = |meter: &mut CpuMeter,
                   server: Server,
                   addr: SocketAddr,
                   pid: u32,
                   n: u64,
                   round: u32|
     -> Result<RunRecord, BenchError> {
        let waited = wait_quiet(config.quiet_wait);
        let viewers = ViewersConfig {
            url: format!("http://{addr}/live/{LIVE_STREAM}"),
            rendition: "source".into(),
            viewers: n,
            duration: Duration::from_secs_f64(config.viewers_seconds),
            ramp_per_s: (n as f64).max(1000.0),
            warmup: Duration::from_secs(2),
            burst: false,
            // A ring holds at most RLIMIT_NOFILE connections: more threads past 16,000 viewers.
            threads: client_cpus.len().max(n.div_ceil(16_000) as usize).max(1),
            source_addresses: None,
            server_pid: Some(pid),
            sample_every: 100,
            player: PlayerConfig::default(),
            progress_every: Duration::ZERO,
        };
        meter.start();
        let report = viewers::run(&viewers)?;
        let cpu = meter.stop(server);
        let segment = report.kinds.get("segment");
        let playlist = report.kinds.get("playlist");
        let summary = ViewersSummary {
            viewers: n,
            connections_min_steady: report.connections_min_steady,
            requests_per_s: report.requests_per_s,
            gbps: report.gbps,
            segment_ttfb_p50_ms: segment.map_or(0.0, |k| k.ttfb.p50_ms),
            segment_ttfb_p99_ms: segment.map_or(0.0, |k| k.ttfb.p99_ms),
            playlist_ttfb_p99_ms: playlist.map_or(0.0, |k| k.ttfb.p99_ms),
            stalls: report.stalls,
            stall_time_s: report.stall_time_s,
            errors_total: report.errors_total,
            generator_timer_lateness_p99_ms: report.generator_timer_lateness.p99_ms,
        };
        Ok(RunRecord {
            case: Case::Viewers,
            server,
            round,
            requests_per_s: summary.requests_per_s,
            p99_ms: summary.segment_ttfb_p99_ms,
            p50_ms: summary.segment_ttfb_p50_ms,
            gbps: summary.gbps,
            errors: summary.errors_total,
            requests_per_busy_server_core: ratio(
                summary.requests_per_s,
                cpu.server_cpus_busy_cores,
            ),
            requests_per_server_process_core: ratio(summary.requests_per_s, cpu.server_cores),
            packets_per_request: packets_per_request(&cpu, summary.requests_per_s),
            noisy: cpu.foreign_cores > config.foreign_max,
            wrk: None,
            viewers: Some(summary),
            cpu,
            quiet_wait_s: waited.as_secs_f64(),
        })
    };
    let mut n = config.viewers;
    let mut search = config.viewers_search.clone();
    search.sort_unstable();
    let mut held = None;
    for &tried in &search {
        let pid = meter.nginx_worker_pid();
        let run = one_run(meter, Server::Nginx, nginx_addr, pid, tried, 0)?;
        let v = run.viewers.as_ref().expect("a viewers run has its summary");
        let clean = v.stalls == 0 && v.errors_total == 0 && v.connections_min_steady >= tried;
        notes.push(format!(
            "viewers search: nginx at {tried} viewers: {} held at least, {} stalls, {} errors: {}",
            v.connections_min_steady,
            v.stalls,
            v.errors_total,
            if clean { "held" } else { "not held" }
        ));
        eprintln!("search {}", short_line(&run));
        if !clean {
            break;
        }
        held = Some(tried);
    }
    if let Some(largest) = held {
        n = largest;
    } else if !search.is_empty() {
        notes.push(format!(
            "viewers search: nginx held none of {search:?}; rounds run at --viewers {n}"
        ));
    }
    for round in 1..=config.rounds {
        for (server, addr, pid) in [
            (Server::Corecast, http, meter.corecast_pid()),
            (Server::Nginx, nginx_addr, meter.nginx_worker_pid()),
        ] {
            let run = one_run(meter, server, addr, pid, n, round)?;
            runs.push(run);
            eprintln!("{}", short_line(runs.last().expect("just pushed")));
        }
    }
    notes.push(format!(
        "viewers: live stream at 300 kbps published by ffmpeg (on the load CPUs) into corecast; \
         nginx served files mirrored from corecast every 100 ms ({} playlist versions copied, \
         {} mirror errors); p99 is segment TTFB",
        mirror.copies(),
        mirror.errors()
    ));
    Ok(())
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
