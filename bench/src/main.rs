//! `corecast-bench`: the command line. See the crate docs of `corecast_bench` and
//! docs/capacity.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use corecast_bench::closed::{LoadConfig, run_load};
use corecast_bench::compare::{Case, Client, CompareConfig};
use corecast_bench::player::PlayerConfig;
use corecast_bench::viewers::{ViewersConfig, run};

#[derive(Parser, Debug)]
#[command(name = "corecast-bench", about = "Load generators for corecast")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate N live HLS viewers of one rendition, each a keep-alive connection with a
    /// playout clock; report TTFB, download time, stalls, errors, server CPU and RSS.
    Viewers(ViewersArgs),
    /// corecast vs nginx side by side: same bytes, same worker CPUs, same load, alternating
    /// rounds; medians and ratios (docs/capacity.md).
    CompareNginx(CompareArgs),
    /// Closed loop on one URL, like `wrk -c N`: each keep-alive connection asks again as soon
    /// as a response is in; bodies are discarded in the kernel (`MSG_TRUNC`).
    Load(LoadArgs),
    /// The default ladder through corecast's transcode graph vs the `ffmpeg` command line with
    /// the same x264 settings and thread budget, alternating rounds (docs/capacity.md).
    Transcode(TranscodeArgs),
    /// What a response body costs the server's CPU when copied into the socket (corecast's
    /// way) versus handed over as page references (`sendfile`, io_uring `splice`), on three
    /// minimal servers under the same closed loop (docs/capacity.md).
    BodyPaths(BodyPathsArgs),
    /// One server of `body-paths` (started by it).
    #[command(hide = true)]
    BodyPathServer(BodyPathServerArgs),
}

#[derive(clap::Args, Debug)]
struct BodyPathsArgs {
    /// Body sizes in bytes, comma-separated (compare-nginx's 100 KB and 1 MB segments).
    #[arg(long, value_delimiter = ',', default_value = "97161,1000640")]
    sizes: Vec<usize>,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "send,sendfile,sendfile-memfd,splice"
    )]
    paths: Vec<corecast_bench::body_paths::BodyPath>,
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 6)]
    seconds: u64,
    #[arg(short = 'c', long, default_value_t = 256)]
    connections: u32,
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    #[arg(long, default_value_t = 1)]
    load_cpu: usize,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct BodyPathServerArgs {
    #[arg(long)]
    path: corecast_bench::body_paths::BodyPath,
    /// Body bytes of a synthetic response.
    #[arg(long, required_unless_present = "response")]
    size: Option<usize>,
    /// A file holding the whole response to send (head, blank line, body) instead.
    #[arg(long, conflicts_with = "size")]
    response: Option<PathBuf>,
    #[arg(long)]
    port: u16,
    #[arg(long)]
    seconds: u64,
}

#[derive(clap::Args, Debug)]
struct TranscodeArgs {
    /// Source height (16:9, 30 fps, made with ffmpeg's testsrc2).
    #[arg(long, default_value_t = 1080)]
    height: u32,
    /// Source length in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// x264 presets to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "veryfast")]
    presets: Vec<String>,
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    #[arg(long, default_value = "ffmpeg")]
    ffmpeg: PathBuf,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// `http://IPv4:PORT/PATH`.
    #[arg(long)]
    url: String,
    #[arg(short = 'c', long, default_value_t = 256)]
    connections: u32,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds; the run stops by itself then.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Write the result as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct CompareArgs {
    /// The corecast binary (default: `corecast` beside this program).
    #[arg(long)]
    corecast: Option<PathBuf>,
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    /// The closed-loop client of the seg1m, seg100k and playlist cases.
    #[arg(long, value_enum, default_value = "uring")]
    client: Client,
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    #[arg(long, default_value = "ffmpeg")]
    ffmpeg: PathBuf,
    /// Worker count of each server (corecast `[delivery] workers`, nginx `worker_processes`).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// CPUs for the load, e.g. `1` or `2,3` (default: the CPUs the servers' workers are not on).
    #[arg(long, value_delimiter = ',')]
    client_cpus: Vec<usize>,
    /// Keep-alive connections of the closed-loop cases.
    #[arg(long, default_value_t = 256)]
    connections: u32,
    /// Seconds per closed-loop run.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Rounds; each round runs every case on corecast, then on nginx.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Cases to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "seg1m,seg100k,playlist,viewers"
    )]
    cases: Vec<Case>,
    /// Viewers of the viewers case.
    #[arg(long, default_value_t = 2000)]
    viewers: u64,
    /// Find the largest N nginx holds first: try these counts on nginx alone (ascending, stop
    /// at the first with a stall, an error or a lost connection), then run the rounds at the
    /// largest held (e.g. `10000,15000,19000,25000`).
    #[arg(long, value_delimiter = ',')]
    viewers_search: Vec<u64>,
    /// Seconds per viewers run (ramp-up and 2 s warm-up included).
    #[arg(long, default_value_t = 10.0)]
    viewers_seconds: f64,
    /// Video bitrate of the stream whose 2 s segments make the ~1 MB case.
    #[arg(long, default_value_t = 4000)]
    big_kbps: u32,
    /// Video bitrate of the stream whose 2 s segments make the ~100 KB case.
    #[arg(long, default_value_t = 400)]
    small_kbps: u32,
    /// Seconds to wait for a quiet box (< 0.1 busy cores) before each run.
    #[arg(long, default_value_t = 2.0)]
    quiet_wait: f64,
    /// Runs with more foreign CPU than this (cores) are flagged; clean-run medians are reported too.
    #[arg(long, default_value_t = 0.1)]
    foreign_max: f64,
    /// Also run the copy floor in the closed-loop cases: a minimal io_uring server that sends
    /// corecast's recorded response and does nothing else, on the same CPUs; the report adds
    /// floor/nginx (the most any copying server could show) and corecast/floor.
    #[arg(long)]
    floor: bool,
    /// Directory for configs, served files, logs and report.json (default
    /// out/bench/compare-nginx-<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the report as JSON here (it is always written to <out>/report.json).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ViewersArgs {
    /// A stream (`http://127.0.0.1:8080/live/demo`, then --rendition picks the playlist) or a
    /// media playlist URL (`…/index.m3u8`).
    #[arg(long)]
    url: String,
    /// Rendition directory under a stream URL: `source`, `audio` or `ts`.
    #[arg(long, default_value = "source")]
    rendition: String,
    /// Number of viewers.
    #[arg(short = 'n', long, default_value_t = 100)]
    viewers: u64,
    /// Whole run, ramp-up included, in seconds; the run stops by itself then.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// New connections per second (0: all at once).
    #[arg(long, default_value_t = 1000.0)]
    ramp: f64,
    /// Seconds after the ramp-up left out of rates and CPU figures (initial catch-up).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Flash crowd: all viewers make their first request at the same instant, in one phase.
    #[arg(long)]
    burst: bool,
    /// Worker threads, one io_uring loop each (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Spread connections over this many source addresses 127.0.0.2, .3, … (0: no bind;
    /// default: one per 16,000 viewers for a loopback target).
    #[arg(long)]
    source_addresses: Option<u32>,
    /// corecast's pid: its CPU and RSS are sampled from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Read one segment body in this many whole and check it (0: never).
    #[arg(long, default_value_t = 100)]
    sample_every: u64,
    /// Segments behind the live edge to start at (hls.js: 3).
    #[arg(long, default_value_t = 3)]
    start_behind: u32,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5.0)]
    progress: f64,
}

fn seconds(s: f64, name: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{name} {s}: not a duration in seconds"))
}

fn viewers(args: ViewersArgs) -> Result<(), String> {
    let config = ViewersConfig {
        url: args.url,
        rendition: args.rendition,
        viewers: args.viewers,
        duration: seconds(args.duration, "duration")?,
        ramp_per_s: args.ramp.max(0.0),
        warmup: seconds(args.warmup, "warmup")?,
        burst: args.burst,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        source_addresses: args.source_addresses,
        server_pid: args.server_pid,
        sample_every: args.sample_every,
        player: PlayerConfig {
            start_behind: args.start_behind,
            ..PlayerConfig::default()
        },
        progress_every: seconds(args.progress, "progress")?,
    };
    let report = run(&config).map_err(|e| e.to_string())?;
    print!("{}", report.table());
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn compare_nginx(args: CompareArgs) -> Result<(), String> {
    let corecast = match args.corecast {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| format!("locating corecast: {e}"))?
            .with_file_name("corecast"),
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out_dir = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("out/bench/compare-nginx-{stamp}")));
    let config = CompareConfig {
        corecast,
        nginx: args.nginx,
        client: args.client,
        wrk: args.wrk,
        ffmpeg: args.ffmpeg,
        workers: args.workers.max(1),
        client_cpus: args.client_cpus,
        connections: args.connections,
        run_seconds: args.seconds,
        rounds: args.rounds.max(1),
        cases: args.cases,
        viewers: args.viewers,
        viewers_search: args.viewers_search,
        viewers_seconds: args.viewers_seconds,
        big_kbps: args.big_kbps,
        small_kbps: args.small_kbps,
        out_dir: out_dir.clone(),
        quiet_wait: seconds(args.quiet_wait, "quiet-wait")?,
        foreign_max: args.foreign_max,
        floor: args.floor,
        bench_exe: std::env::current_exe()
            .map_err(|e| format!("finding this program for the copy floor: {e}"))?,
    };
    let report = corecast_bench::compare::run(&config).map_err(|e| e.to_string())?;
    print!("{}", report.table());
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    for path in std::iter::once(out_dir.join("report.json")).chain(args.json) {
        std::fs::write(&path, &json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    std::fs::write(out_dir.join("report.txt"), report.table())
        .map_err(|e| format!("writing report.txt: {e}"))?;
    Ok(())
}

fn load(args: LoadArgs) -> Result<(), String> {
    let rest = args
        .url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url {}: only http:// URLs", args.url))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let target: std::net::SocketAddrV4 = authority
        .parse()
        .map_err(|_| format!("--url {}: the host must be IPv4:PORT", args.url))?;
    let config = LoadConfig {
        target,
        host: authority.to_owned(),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
        connections: args.connections,
        duration: seconds(args.duration, "duration")?,
        threads: args.threads.max(1),
        sources: Vec::new(),
    };
    let result = run_load(&config).map_err(|e| e.to_string())?;
    print!("{}", result.text(&config));
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn transcode(args: TranscodeArgs) -> Result<(), String> {
    let config = corecast_bench::transcode::TranscodeConfig {
        height: args.height,
        seconds: args.seconds.max(1),
        presets: args.presets,
        rounds: args.rounds.max(1),
        ffmpeg: args.ffmpeg,
    };
    let report = corecast_bench::transcode::run_transcode(&config).map_err(|e| e.to_string())?;
    println!("{}", report.table());
    println!("ffmpeg side: {}", report.ffmpeg_command);
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn body_paths(args: BodyPathsArgs) -> Result<(), String> {
    use corecast_bench::body_paths::{BodyPathsConfig, run_body_paths};
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let config = BodyPathsConfig {
        exe,
        sizes: args.sizes,
        paths: args.paths,
        rounds: args.rounds.max(1),
        seconds: args.seconds.max(1),
        connections: args.connections.max(1),
        server_cpu: args.server_cpu,
        load_cpu: args.load_cpu,
    };
    let report = run_body_paths(&config).map_err(|e| e.to_string())?;
    print!("{}", report.table());
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn body_path_server(args: BodyPathServerArgs) -> Result<(), String> {
    use corecast_bench::body_paths::{Response, serve};
    let response = match (args.response, args.size) {
        (Some(file), _) => Response::Recorded(
            std::fs::read(&file).map_err(|e| format!("reading {}: {e}", file.display()))?,
        ),
        (None, Some(size)) => Response::Synthetic { size },
        (None, None) => return Err("--size or --response is needed".into()),
    };
    serve(args.path, response, args.port, args.seconds).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Viewers(args) => viewers(args),
        Command::CompareNginx(args) => compare_nginx(args),
        Command::Load(args) => load(args),
        Command::Transcode(args) => transcode(args),
        Command::BodyPaths(args) => body_paths(args),
        Command::BodyPathServer(args) => body_path_server(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corecast-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
