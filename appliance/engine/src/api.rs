//! The control API on its own port: JSON over HTTP with axum on the control core's
//! current-thread runtime. `GET /api/v1/streams`, `GET /api/v1/streams/{name}`,
//! `GET /api/v1/sources`, `GET /api/v1/sources/{name}` (state and counters of every pulled or
//! accepted input, from the [`SourceBoard`]), `GET /api/v1/delivery` (per-worker counters) and
//! `GET /metrics` (Prometheus text format);
//! the shape of each object is the one later versions extend. docs/api.md lists every field.

use std::fmt::Write as _;
use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::delivery::{DeliveryStats, DeliveryStatsSnapshot};
use crate::hub::{HubHandle, StreamStatus};
use crate::sources::{SourceBoard, SourceStatus};
use crate::store::SegmentStore;

/// One delivery worker as the API sees it: its counters, shared with the worker thread.
#[derive(Clone, Debug)]
pub struct WorkerStats {
    pub index: usize,
    pub core: Option<usize>,
    pub stats: Arc<DeliveryStats>,
}

#[derive(Clone)]
struct ApiState {
    hub: HubHandle,
    store: Arc<SegmentStore>,
    workers: Arc<Vec<WorkerStats>>,
    sources: SourceBoard,
}

/// A stream as the API lists it: the hub's status plus delivery's viewer count.
#[derive(Debug, Serialize)]
struct StreamView {
    #[serde(flatten)]
    status: StreamStatus,
    viewers: u64,
    playback: Playback,
    /// The configured source or SRT connection feeding the stream, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<SourceStatus>,
}

#[derive(Debug, Serialize)]
struct Playback {
    hls: String,
    dash: String,
    hls_ts: String,
}

#[derive(Debug, Serialize)]
struct StreamList {
    streams: Vec<StreamView>,
}

#[derive(Debug, Serialize)]
struct ApiError {
    error: String,
}

fn view(status: &StreamStatus, store: &SegmentStore, sources: &SourceBoard) -> StreamView {
    let base = format!("/live/{}", status.name);
    StreamView {
        source: sources.feeding(&status.name),
        viewers: store.viewers(&status.name),
        playback: Playback {
            hls: format!("{base}/index.m3u8"),
            dash: format!("{base}/index.mpd"),
            hls_ts: format!("{base}/ts/index.m3u8"),
        },
        status: status.clone(),
    }
}

async fn list_streams(State(state): State<ApiState>) -> Json<StreamList> {
    let streams = state
        .hub
        .status()
        .iter()
        .map(|s| view(s, &state.store, &state.sources))
        .collect();
    Json(StreamList { streams })
}

async fn one_stream(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    match state.hub.status().iter().find(|s| s.name == name) {
        Some(s) => Json(view(s, &state.store, &state.sources)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(ApiError {
                error: format!("no stream named {name:?}"),
            }),
        )
            .into_response(),
    }
}

#[derive(Debug, Serialize)]
struct SourceList {
    sources: Vec<SourceStatus>,
}

async fn list_sources(State(state): State<ApiState>) -> Json<SourceList> {
    Json(SourceList {
        sources: state.sources.list(),
    })
}

async fn one_source(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    match state.sources.find(&name) {
        Some(source) => Json(source).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(ApiError {
                error: format!("no source named {name:?}"),
            }),
        )
            .into_response(),
    }
}

#[derive(Debug, Serialize)]
struct WorkerView {
    index: usize,
    core: Option<usize>,
    #[serde(flatten)]
    counters: DeliveryStatsSnapshot,
}

#[derive(Debug, Serialize)]
struct DeliveryView {
    workers: Vec<WorkerView>,
    total: DeliveryStatsSnapshot,
}

async fn delivery(State(state): State<ApiState>) -> Json<DeliveryView> {
    let workers: Vec<WorkerView> = state
        .workers
        .iter()
        .map(|w| WorkerView {
            index: w.index,
            core: w.core,
            counters: w.stats.snapshot(),
        })
        .collect();
    let total = workers
        .iter()
        .fold(DeliveryStatsSnapshot::default(), |sum, w| sum + w.counters);
    Json(DeliveryView { workers, total })
}

/// Prometheus text exposition format 0.0.4: a handful of gauges and counters, written
/// directly (a metrics registry crate would add more than it saves at this size).
async fn metrics(State(state): State<ApiState>) -> Response {
    let mut text = render_metrics(
        &state.hub.status(),
        &state.store,
        &state.workers,
        state.hub.dropped_units(),
    );
    state.sources.render_metrics(&mut text);
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// A per-worker delivery metric: name, type, help text and how to read it from a snapshot.
type WorkerMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&DeliveryStatsSnapshot) -> u64,
);

fn render_metrics(
    streams: &[StreamStatus],
    store: &SegmentStore,
    workers: &[WorkerStats],
    dropped_units: u64,
) -> String {
    fn family(out: &mut String, name: &str, kind: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    let mut out = String::new();
    family(
        &mut out,
        "corecast_stream_live",
        "gauge",
        "1 while the stream has a publisher",
    );
    family(
        &mut out,
        "corecast_stream_viewers",
        "gauge",
        "Playback connections whose latest request was for the stream",
    );
    family(
        &mut out,
        "corecast_stream_input_kbps",
        "gauge",
        "Media payload bitrate received",
    );
    for s in streams {
        let live = u8::from(s.state == "live");
        let _ = writeln!(out, "corecast_stream_live{{stream=\"{}\"}} {live}", s.name);
        let _ = writeln!(
            out,
            "corecast_stream_viewers{{stream=\"{}\"}} {}",
            s.name,
            store.viewers(&s.name)
        );
        let _ = writeln!(
            out,
            "corecast_stream_input_kbps{{stream=\"{}\"}} {}",
            s.name, s.input_kbps
        );
    }
    family(
        &mut out,
        "corecast_stream_transcode_dropped_units_total",
        "counter",
        "Source units the stream's transcode worker had no room for (every rung misses them)",
    );
    for s in streams {
        if let Some(dropped) = s.transcode_dropped_units {
            let _ = writeln!(
                out,
                "corecast_stream_transcode_dropped_units_total{{stream=\"{}\"}} {dropped}",
                s.name
            );
        }
    }
    family(
        &mut out,
        "corecast_stream_corrupt_units_total",
        "counter",
        "Source units skipped as corrupt: video by the ladder's decoder, audio by the audio transcoder",
    );
    for s in streams {
        for r in &s.renditions {
            let track = match r.name.as_str() {
                "source" => "video",
                "audio" => "audio",
                _ => continue,
            };
            if let Some(corrupt) = r.corrupt_units {
                let _ = writeln!(
                    out,
                    "corecast_stream_corrupt_units_total{{stream=\"{}\",track=\"{track}\"}} {corrupt}",
                    s.name
                );
            }
        }
    }
    family(
        &mut out,
        "corecast_rung_encode_fps",
        "gauge",
        "Pictures a transcoded rung encoded per second over the last second",
    );
    family(
        &mut out,
        "corecast_rung_dropped_frames_total",
        "counter",
        "Pictures a transcoded rung skipped because its encoder fell behind",
    );
    family(
        &mut out,
        "corecast_rung_lag_ms",
        "gauge",
        "Media time between the newest decoded picture and the oldest one waiting for the rung's encoder",
    );
    for s in streams {
        for r in &s.renditions {
            let (Some(fps), Some(dropped), Some(lag)) = (r.encode_fps, r.dropped_frames, r.lag_ms)
            else {
                continue;
            };
            let labels = format!("stream=\"{}\",rung=\"{}\"", s.name, r.name);
            let _ = writeln!(out, "corecast_rung_encode_fps{{{labels}}} {fps}");
            let _ = writeln!(
                out,
                "corecast_rung_dropped_frames_total{{{labels}}} {dropped}"
            );
            let _ = writeln!(out, "corecast_rung_lag_ms{{{labels}}} {lag}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP corecast_hub_dropped_units_total Access units dropped because the hub's queue was full\n# TYPE corecast_hub_dropped_units_total counter\ncorecast_hub_dropped_units_total {dropped_units}"
    );
    let counters: [WorkerMetric; 14] = [
        (
            "corecast_delivery_connections",
            "gauge",
            "Open playback connections",
            |c| c.connections,
        ),
        (
            "corecast_delivery_accepted_total",
            "counter",
            "Connections accepted",
            |c| c.accepted,
        ),
        (
            "corecast_delivery_requests_total",
            "counter",
            "HTTP requests answered",
            |c| c.requests,
        ),
        (
            "corecast_delivery_bad_requests_total",
            "counter",
            "Requests refused with 400 or 431",
            |c| c.bad_requests,
        ),
        (
            "corecast_delivery_bytes_sent_total",
            "counter",
            "Bytes sent to viewers",
            |c| c.bytes_sent,
        ),
        (
            "corecast_delivery_sends_total",
            "counter",
            "Send operations",
            |c| c.sends,
        ),
        (
            "corecast_delivery_short_sends_total",
            "counter",
            "Sends the kernel took only part of",
            |c| c.short_sends,
        ),
        (
            "corecast_delivery_zc_sends_total",
            "counter",
            "SEND_ZC operations (zero-copy sends)",
            |c| c.zc_sends,
        ),
        (
            "corecast_delivery_zc_copied_total",
            "counter",
            "SEND_ZC completions where the kernel copied anyway (always, on loopback)",
            |c| c.zc_copied,
        ),
        (
            "corecast_delivery_enobufs_total",
            "counter",
            "Receives that found the buffer ring empty",
            |c| c.enobufs,
        ),
        (
            "corecast_delivery_table_full_total",
            "counter",
            "Connections refused because the descriptor table was full",
            |c| c.enfile,
        ),
        (
            "corecast_delivery_accept_errors_total",
            "counter",
            "Other accept failures",
            |c| c.accept_errors,
        ),
        (
            "corecast_delivery_timeouts_total",
            "counter",
            "Connections closed by idle, header or send timeouts",
            |c| c.idle_timeouts + c.header_timeouts + c.send_timeouts,
        ),
        (
            "corecast_delivery_lagging_drops_total",
            "counter",
            "Connections dropped for falling a playlist window behind",
            |c| c.lagging_drops,
        ),
    ];
    let snapshots: Vec<(usize, DeliveryStatsSnapshot)> = workers
        .iter()
        .map(|w| (w.index, w.stats.snapshot()))
        .collect();
    for (name, kind, help, read) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (index, snapshot) in &snapshots {
            let _ = writeln!(out, "{name}{{worker=\"{index}\"}} {}", read(snapshot));
        }
    }
    #[cfg(feature = "count-allocations")]
    {
        let name = "corecast_delivery_allocations_total";
        let _ = writeln!(
            out,
            "# HELP {name} Heap allocations on the worker's thread (count-allocations build)\n# TYPE {name} counter"
        );
        for (index, _) in &snapshots {
            let count = crate::alloc_count::delivery_allocations(*index);
            let _ = writeln!(out, "{name}{{worker=\"{index}\"}} {count}");
        }
    }
    out
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(ApiError {
            error: "no such endpoint; see docs/api.md".to_owned(),
        }),
    )
        .into_response()
}

fn router(
    hub: HubHandle,
    store: Arc<SegmentStore>,
    workers: Vec<WorkerStats>,
    sources: SourceBoard,
) -> Router {
    Router::new()
        .route("/api/v1/streams", get(list_streams))
        .route("/api/v1/streams/{name}", get(one_stream))
        .route("/api/v1/sources", get(list_sources))
        .route("/api/v1/sources/{name}", get(one_source))
        .route("/api/v1/delivery", get(delivery))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(ApiState {
            hub,
            store,
            workers: Arc::new(workers),
            sources,
        })
}

/// Binds the control port (so a bind error surfaces before any thread starts).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<StdTcpListener> {
    let listener = StdTcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves the API until the process ends. Runs on the calling thread.
pub fn run(
    listener: StdTcpListener,
    hub: HubHandle,
    store: Arc<SegmentStore>,
    workers: Vec<WorkerStats>,
    sources: SourceBoard,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, router(hub, store, workers, sources)).await
    })
}
