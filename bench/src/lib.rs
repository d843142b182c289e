//! corecast-bench: load generators for corecast. Today: `viewers`, N simulated live HLS
//! players of one rendition, each one keep-alive HTTP/1.1 connection with a playout clock that
//! counts stalls (see [`player`]). Built to be cheap per viewer so that one small box can
//! simulate tens of thousands: worker threads each run one io_uring loop over direct
//! descriptors (the client side of corecast's own driver, `corecast-uring`), bodies are
//! counted with `MSG_TRUNC` rather than copied, and one response in `--sample-every` is read
//! whole and checked.
//!
//! Specs followed: RFC 8216 (HLS playlists, §4.4 and the client rules of §6.3), RFC 9112
//! (HTTP/1.1 message framing). Not done: LL-HLS parts and blocking reloads, byte ranges,
//! multivariant playlists (point `--url` at a stream or media playlist).
//!
//! `compare-nginx` ([`compare`]) runs corecast and nginx side by side on the same bytes, the
//! same worker CPUs and the same load (wrk closed loop, then the viewer simulation).

pub mod body_paths;
pub mod closed;
pub mod compare;
pub mod compare_run;
pub mod nginx;
pub mod player;
pub mod playlist;
pub mod procstat;
pub mod response;
pub mod stats;
pub mod transcode;
pub mod viewers;
pub mod worker;

/// The kernel's ceiling on a ring's completion queue (`IORING_MAX_CQ_ENTRIES`, 2 × 32,768);
/// asking for more fails `io_uring_setup` with `EINVAL` (seen at 19,000 viewers on one thread).
pub const MAX_CQ_ENTRIES: u32 = 1 << 16;

/// Errors of the load generator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error("--url {url}: {why}")]
    Url { url: String, why: &'static str },
    #[error(transparent)]
    Uring(#[from] uring::UringError),
    #[error("{0}")]
    Plan(String),
    #[error("worker thread {0} panicked")]
    WorkerPanicked(usize),
    #[error("compare-nginx: {0}")]
    Compare(String),
    #[error("writing {path}: {source}")]
    Output {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
