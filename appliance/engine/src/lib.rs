//! corecast engine: the core plan, the stream hub, the segment store, io_uring HTTP delivery,
//! the RTMP listener, the demo publisher and the control API — everything that owns a thread
//! or a socket. Protocols and containers live in `ingest` and `package`; this crate wires them.

#[cfg(feature = "count-allocations")]
pub mod alloc_count;
pub mod api;
pub mod audio_transcode;
pub mod delivery;
pub mod demo;
pub mod hub;
pub mod ladder;
pub mod plan;
pub mod rtmp;
pub mod rtsp;
pub mod sources;
pub mod srt;
pub mod store;
pub mod ts_feed;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use delivery::{DeliveryConfig, DeliveryWorker};
pub use hub::{HubConfig, HubHandle};
pub use ladder::TranscodeConfig;
pub use plan::{CorePlan, Role};
pub use rtmp::RtmpConfig;
pub use rtsp::RtspSourceConfig;
pub use sources::{SourceBoard, SourceHandle};
pub use srt::{SrtConfig, SrtSourceConfig, SrtStreamConfig};
pub use store::SegmentStore;
pub use transcode::DemoConfig;
pub use udp::UdpSourceConfig;

/// Everything the engine needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Playback HTTP (HLS, DASH) address and delivery settings.
    pub delivery: DeliveryConfig,
    /// Delivery workers; `None` = one per delivery core of the plan.
    pub delivery_workers: Option<usize>,
    pub rtmp: RtmpConfig,
    /// Control API address.
    pub api: SocketAddr,
    pub hub: HubConfig,
    /// The built-in demo stream, or `None` for `--no-demo`.
    pub demo: Option<DemoConfig>,
    /// Inputs the engine opens by itself (`[[source]]` in the config file).
    pub sources: Vec<SourceConfig>,
    /// The SRT listener and its per-stream settings (docs/srt.md).
    pub srt: SrtConfig,
}

/// One configured input (`[[source]]`), by the scheme of its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceConfig {
    /// `udp://`: MPEG-TS over UDP, unicast or multicast.
    Udp(UdpSourceConfig),
    /// `rtsp://`: an RTSP camera, pulled.
    Rtsp(RtspSourceConfig),
    /// `srt://`: a remote SRT listener, called.
    Srt(SrtSourceConfig),
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            delivery: DeliveryConfig::default(),
            delivery_workers: None,
            rtmp: RtmpConfig::default(),
            api: SocketAddr::from(([127, 0, 0, 1], 8081)),
            hub: HubConfig::default(),
            demo: Some(DemoConfig::default()),
            sources: Vec::new(),
            srt: SrtConfig::default(),
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open source {name:?} ({url}): {source}")]
    Source {
        name: String,
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, #[source] std::io::Error),
    #[error(transparent)]
    Delivery(#[from] delivery::DeliveryError),
}

/// A running engine.
#[derive(Debug)]
pub struct Engine {
    pub plan: CorePlan,
    pub store: Arc<SegmentStore>,
    pub hub: HubHandle,
    pub http_addr: SocketAddr,
    pub rtmp_addr: SocketAddr,
    /// The SRT listener (UDP).
    pub srt_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// Status and counters of every source (configured ones, SRT connections).
    pub sources: SourceBoard,
    workers: Vec<DeliveryWorker>,
    threads: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Binds every port, then starts every thread on the core plan.
    pub fn start(mut config: EngineConfig) -> Result<Engine, EngineError> {
        let transcode = &config.hub.transcode;
        let plan = CorePlan::automatic(
            config.delivery_workers,
            transcode.enabled.then_some(transcode.workers),
        );
        config.hub.transcode.workers = plan.transcode.len();
        tracing::info!(%plan, "core plan");

        let rtmp_listener = rtmp::bind(&config.rtmp).map_err(|source| EngineError::Bind {
            what: "RTMP",
            addr: config.rtmp.listen,
            source,
        })?;
        let rtmp_addr = rtmp_listener
            .local_addr()
            .map_err(|source| EngineError::Bind {
                what: "RTMP",
                addr: config.rtmp.listen,
                source,
            })?;
        let api_listener = api::bind(config.api).map_err(|source| EngineError::Bind {
            what: "the control API",
            addr: config.api,
            source,
        })?;
        let api_addr = api_listener
            .local_addr()
            .map_err(|source| EngineError::Bind {
                what: "the control API",
                addr: config.api,
                source,
            })?;
        let sources = SourceBoard::new();
        let mut udp_sources = Vec::new();
        let mut rtsp_sources = Vec::new();
        let mut srt_sources = Vec::new();
        for source in &config.sources {
            match source {
                SourceConfig::Udp(udp_config) => {
                    let socket = udp::bind(udp_config).map_err(|source| EngineError::Source {
                        name: udp_config.name.clone(),
                        url: udp_config.url.clone(),
                        source,
                    })?;
                    let handle = sources.register(
                        "udp",
                        &udp_config.name,
                        &udp_config.name,
                        &udp_config.url,
                    );
                    udp_sources.push((udp_config.clone(), socket, handle));
                }
                // Nothing to bind: cameras are connected to (and retried) once running.
                SourceConfig::Rtsp(rtsp_config) => {
                    let handle = sources.register(
                        "rtsp",
                        &rtsp_config.name,
                        &rtsp_config.name,
                        &rtsp_config.redacted_url(),
                    );
                    rtsp_sources.push((rtsp_config.clone(), handle));
                }
                // Called out to (and retried) by the SRT thread.
                SourceConfig::Srt(srt_config) => {
                    let handle = sources.register(
                        "srt",
                        &srt_config.name,
                        &srt_config.name,
                        &srt_config.url,
                    );
                    srt_sources.push((srt_config.clone(), handle));
                }
            }
        }

        let store = Arc::new(SegmentStore::new());
        let mut workers = Vec::with_capacity(plan.delivery.len());
        let mut delivery_config = config.delivery.clone();
        if delivery_config.lagging_after.is_none() {
            let packaging = &config.hub.packaging;
            delivery_config.lagging_after =
                Some(packaging.target_duration * packaging.window.max(1) as u32);
        }
        for (index, core) in plan.delivery.iter().enumerate() {
            let worker =
                DeliveryWorker::spawn(index, *core, delivery_config.clone(), store.clone())?;
            // Later workers join the port the first one resolved (it may have been port 0).
            delivery_config.listen = worker.local_addr();
            workers.push(worker);
        }
        let http_addr = delivery_config.listen;

        let (hub, mut stream_hub) = hub::hub(config.hub.clone(), store.clone());
        stream_hub.set_ladder_cores(plan.transcode.clone());
        let mut threads = Vec::new();
        for (index, (worker, core)) in stream_hub
            .take_ladder_workers()
            .into_iter()
            .zip(&plan.transcode)
            .enumerate()
        {
            threads.push(
                plan::spawn_pinned(&format!("cc-transcode-{index}"), *core, move || {
                    worker.run()
                })
                .map_err(|e| EngineError::Thread("transcode", e))?,
            );
        }
        threads.push(
            plan.spawn(Role::Package, "cc-hub", move || stream_hub.run())
                .map_err(|e| EngineError::Thread("hub", e))?,
        );
        let ingest_hub = hub.clone();
        let rtmp_config = config.rtmp.clone();
        threads.push(
            plan.spawn(Role::Ingest, "cc-ingest", move || {
                if let Err(e) = rtmp::run(rtmp_listener, rtmp_config, ingest_hub) {
                    tracing::error!(error = %e, "RTMP listener stopped");
                }
            })
            .map_err(|e| EngineError::Thread("ingest", e))?,
        );
        if !udp_sources.is_empty() {
            let udp_hub = hub.clone();
            threads.push(
                plan.spawn(Role::Ingest, "cc-udp", move || {
                    if let Err(e) = udp::run(udp_sources, udp_hub) {
                        tracing::error!(error = %e, "UDP sources stopped");
                    }
                })
                .map_err(|e| EngineError::Thread("UDP sources", e))?,
            );
        }
        if !rtsp_sources.is_empty() {
            let rtsp_hub = hub.clone();
            threads.push(
                plan.spawn(Role::Ingest, "cc-rtsp", move || {
                    if let Err(e) = rtsp::run(rtsp_sources, rtsp_hub) {
                        tracing::error!(error = %e, "RTSP sources stopped");
                    }
                })
                .map_err(|e| EngineError::Thread("RTSP sources", e))?,
            );
        }
        let srt = srt::start(
            &plan,
            config.srt.clone(),
            srt_sources,
            hub.clone(),
            store.clone(),
            sources.clone(),
        )
        .map_err(|(addr, source)| EngineError::Bind {
            what: "SRT",
            addr,
            source,
        })?;
        threads.push(srt.thread);
        let srt_addr = srt.listen;
        let api_hub = hub.clone();
        let api_store = store.clone();
        let api_sources = sources.clone();
        let worker_stats: Vec<api::WorkerStats> = workers
            .iter()
            .zip(&plan.delivery)
            .map(|(w, core)| api::WorkerStats {
                index: w.index(),
                core: core.map(|c| c.id),
                stats: w.stats(),
            })
            .collect();
        threads.push(
            plan.spawn(Role::Control, "cc-control", move || {
                if let Err(e) =
                    api::run(api_listener, api_hub, api_store, worker_stats, api_sources)
                {
                    tracing::error!(error = %e, "control API stopped");
                }
            })
            .map_err(|e| EngineError::Thread("control", e))?,
        );
        if let Some(demo_config) = config.demo.clone() {
            let demo_hub = hub.clone();
            threads.push(
                plan.spawn(Role::Transcode, "cc-demo", move || {
                    demo::run(demo_config, demo_hub)
                })
                .map_err(|e| EngineError::Thread("demo", e))?,
            );
        }
        tracing::info!(
            http = %http_addr,
            rtmp = %rtmp_addr,
            srt = %srt_addr,
            api = %api_addr,
            "corecast is serving: play http://{http_addr}/live/<stream>/index.m3u8, publish rtmp://{rtmp_addr}/{}/<stream>",
            config.rtmp.app
        );
        Ok(Engine {
            plan,
            store,
            hub,
            http_addr,
            rtmp_addr,
            srt_addr,
            api_addr,
            sources,
            workers,
            threads,
        })
    }

    /// Stops serving, for a process that is about to exit: each delivery worker stops
    /// accepting, lets responses already being sent finish (about two seconds at most) and
    /// closes its connections, so viewers see whole segments and a clean close rather than a
    /// reset. Streams are not ended (no `EXT-X-ENDLIST`): a restarted appliance carries on
    /// with the same streams, and players should retry rather than stop.
    pub fn stop(self) {
        let viewers: u64 = self
            .workers
            .iter()
            .map(|w| {
                w.stats()
                    .connections
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum();
        tracing::info!(viewers, "stopping: closing viewer connections");
        for worker in self.workers {
            worker.stop();
        }
        tracing::info!("stopped");
    }

    /// Blocks until the engine's threads end (in practice: until the process is stopped).
    pub fn wait(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
        for worker in self.workers {
            worker.stop();
        }
    }
}
