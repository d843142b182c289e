//! `corecast`: the streaming appliance's command line.

mod config;
#[cfg(feature = "count-allocations")]
mod count_alloc;
mod probe;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::ConfigFile;

/// The bench build counts delivery-thread allocations (docs/capacity.md).
#[cfg(feature = "count-allocations")]
#[global_allocator]
static ALLOCATOR: count_alloc::CountingAllocator = count_alloc::CountingAllocator;

#[derive(Debug, Parser)]
#[command(
    name = "corecast",
    version,
    about = "Self-hosted live-streaming appliance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve: RTMP and SRT in, HLS / DASH out (and the built-in `demo` stream unless --no-demo).
    Run(RunArgs),
    /// List the encoders this box really has (and why each missing one is missing), the CPU
    /// count and io_uring support.
    Probe(ProbeArgs),
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// TOML config file (every key: docs/configuration.md). Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Playback HTTP address (HLS, DASH). Default 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// RTMP ingest address. Default 0.0.0.0:1935.
    #[arg(long, value_name = "ADDR")]
    rtmp: Option<SocketAddr>,
    /// SRT listener address (UDP). Default 0.0.0.0:9000.
    #[arg(long, value_name = "ADDR")]
    srt: Option<SocketAddr>,
    /// Control API address. Default 127.0.0.1:8081.
    #[arg(long, value_name = "ADDR")]
    api: Option<SocketAddr>,
    /// Do not serve the built-in demo stream.
    #[arg(long)]
    no_demo: bool,
}

fn main() -> ExitCode {
    // SAFETY: the first thing `main` does, before any thread exists (the only requirement of
    // changing the environment).
    unsafe { libav::quiet_svt_av1_logging() };
    #[cfg(feature = "count-allocations")]
    count_alloc::configure_from_env();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Probe(args) => probe(args),
    }
}

fn probe(args: ProbeArgs) -> ExitCode {
    let report = probe::run_probe();
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                tracing::error!("probe report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.table());
    }
    ExitCode::SUCCESS
}

fn run(args: RunArgs) -> ExitCode {
    let (mut file, name) = match &args.config {
        Some(path) => match ConfigFile::load(path) {
            Ok(file) => (file, path.display().to_string()),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => (ConfigFile::default(), "(defaults)".to_owned()),
    };
    file.http = args.http.or(file.http);
    file.rtmp = args.rtmp.or(file.rtmp);
    file.srt = args.srt.or(file.srt);
    file.api = args.api.or(file.api);
    if args.no_demo {
        file.demo.enabled = false;
    }
    let config = match file.into_engine_config(&name) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let stop_signals = block_stop_signals();
    match engine::Engine::start(config) {
        Ok(engine) => {
            let signal = wait_for_stop_signal(&stop_signals);
            tracing::info!(signal, "stop signal received");
            engine.stop();
            exit_now()
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Ends the process with status 0 at once, once the viewers are served (`Engine::stop`).
///
/// Why not return from `main`: the ingest, hub and transcode threads are still running, and
/// libc's exit handlers then tear down the native libraries under them. The NVIDIA driver
/// registers such a handler: a ladder still decoding on NVDEC then fails every call and the
/// process crashes with SIGSEGV (seen on an H100). `_exit` skips the handlers; nothing is lost,
/// because streams are deliberately not ended on a stop and every log line is already written
/// (the log goes to stderr unbuffered).
fn exit_now() -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process without running exit handlers; nothing after it runs.
    unsafe { libc::_exit(0) }
}

/// SIGTERM (systemd, docker stop) and SIGINT (Ctrl-C), blocked in this thread before the
/// engine starts its threads: they inherit the mask, so the signals stay pending for
/// [`wait_for_stop_signal`] instead of killing the process mid-response.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise and fill the set we own
    // with valid signal numbers, and pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Blocks until SIGTERM or SIGINT arrives; returns its name.
fn wait_for_stop_signal(set: &libc::sigset_t) -> &'static str {
    let mut signal: libc::c_int = 0;
    loop {
        // SAFETY: `set` was filled by `block_stop_signals`; sigwait writes one int we own.
        let rc = unsafe { libc::sigwait(set, &mut signal) };
        if rc == 0 {
            return if signal == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
        }
    }
}
