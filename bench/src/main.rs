//! `corecast-bench`: the command line. See the crate docs of `corecast_bench` and
//! docs/capacity.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Viewers(args) => viewers(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corecast-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
