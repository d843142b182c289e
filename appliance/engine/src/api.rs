//! The control API on its own port: JSON over HTTP with axum on the control core's
//! current-thread runtime. `GET /api/v1/streams` and `GET /api/v1/streams/{name}` for now;
//! the shape of each stream object is the one later versions extend.

use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::hub::{HubHandle, StreamStatus};
use crate::store::SegmentStore;

#[derive(Clone)]
struct ApiState {
    hub: HubHandle,
    store: Arc<SegmentStore>,
}

/// A stream as the API lists it: the hub's status plus delivery's viewer count.
#[derive(Debug, Serialize)]
struct StreamView {
    #[serde(flatten)]
    status: StreamStatus,
    viewers: u64,
    playback: Playback,
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

fn view(status: &StreamStatus, store: &SegmentStore) -> StreamView {
    let base = format!("/live/{}", status.name);
    StreamView {
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
        .map(|s| view(s, &state.store))
        .collect();
    Json(StreamList { streams })
}

async fn one_stream(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    match state.hub.status().iter().find(|s| s.name == name) {
        Some(s) => Json(view(s, &state.store)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(ApiError {
                error: format!("no stream named {name:?}"),
            }),
        )
            .into_response(),
    }
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

fn router(hub: HubHandle, store: Arc<SegmentStore>) -> Router {
    Router::new()
        .route("/api/v1/streams", get(list_streams))
        .route("/api/v1/streams/{name}", get(one_stream))
        .fallback(not_found)
        .with_state(ApiState { hub, store })
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
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, router(hub, store)).await
    })
}
