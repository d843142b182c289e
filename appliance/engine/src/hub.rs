//! The stream hub: one thread that owns every stream's packager, takes access units from
//! ingest sessions and the demo source, and publishes what the packagers produce into the
//! [`SegmentStore`].
//!
//! Publisher life cycle: a source claims a stream name in the [`StreamRegistry`] (a second
//! claim of a live name is refused), sends `Start`, units, and `Gone` when it ends. A stream
//! whose publisher is gone waits `grace_period` for a new one, which continues the same
//! playlists after a discontinuity; after that its playlists end and, `ended_retention` later,
//! its objects are removed.
//!
//! Transcoding (docs/transcode.md): when a stream gets a ladder, the hub builds it at `Start`,
//! starts the packager with the rungs as renditions, forwards the source's video units to the
//! [`crate::ladder`] worker and feeds the rung units it sends back to the packager. When the
//! publisher goes, the packager's last segment waits (at most [`LADDER_FINISH_WAIT`]) for the
//! worker to flush the ladder.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use core_affinity::CoreId;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use media::{AacConfig, AccessUnit, AvcConfig, TrackConfig, TrackKind};
use package::{LivePackager, ObjectKind, PackagerConfig, PackagerOutput, Rendition};
use transcode::{DecodeDevice, Ladder, LadderStats, RungStats};

use crate::audio_transcode::AudioSource;
use crate::ladder::{LadderEvent, LadderJob, LadderWorker, TranscodeConfig};

mod status;
use crate::store::{CachePolicy, SegmentStore, StoreChange, StoredObject, content_type};
pub use status::{RenditionStatus, StreamStatus};

/// How long a gone publisher's last segment waits for its ladder to flush.
pub const LADDER_FINISH_WAIT: Duration = Duration::from_secs(3);

/// Identifies one publisher session, so late messages of a replaced publisher are ignored.
pub type PublisherId = u64;

/// Settings of the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    pub packaging: PackagerConfig,
    /// How long a stream waits for its publisher to come back before its playlists end.
    pub grace_period: Duration,
    /// How long an ended stream stays fetchable before its objects are removed.
    pub ended_retention: Duration,
    /// Access units that may wait between ingest and the hub before new ones are dropped.
    pub queue_depth: usize,
    /// The transcode ladder (off by default).
    pub transcode: TranscodeConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            packaging: PackagerConfig::default(),
            grace_period: Duration::from_secs(10),
            ended_retention: Duration::from_secs(300),
            queue_depth: 8192,
            transcode: TranscodeConfig::default(),
        }
    }
}

/// What a source sends the hub.
#[derive(Debug)]
enum HubCommand {
    Start {
        stream: Arc<str>,
        publisher: PublisherId,
        origin: String,
        video: Option<TrackConfig>,
        audio: Option<AacConfig>,
        audio_source: Option<AudioSource>,
    },
    Unit {
        stream: Arc<str>,
        publisher: PublisherId,
        unit: AccessUnit,
    },
    Gone {
        stream: Arc<str>,
        publisher: PublisherId,
        reason: String,
    },
}

/// Why a stream name could not be claimed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimError {
    #[error("stream {0:?} already has a publisher")]
    NameInUse(String),
    #[error("stream name {0:?} is not allowed (use letters, digits, '-', '_' and '.')")]
    BadName(String),
}

/// The names that have a publisher right now. Claims are rare (once per publish), so a mutex
/// is fine here; the media path never touches it.
#[derive(Debug, Default)]
pub struct StreamRegistry {
    live: Mutex<HashMap<String, PublisherId>>,
    next_id: AtomicU64,
}

impl StreamRegistry {
    fn claim(&self, name: &str) -> Result<PublisherId, ClaimError> {
        if !valid_stream_name(name) {
            return Err(ClaimError::BadName(name.to_owned()));
        }
        // A poisoned lock only means another thread panicked mid-claim; the map is still sound.
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.contains_key(name) {
            return Err(ClaimError::NameInUse(name.to_owned()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        live.insert(name.to_owned(), id);
        Ok(id)
    }

    fn release(&self, name: &str, id: PublisherId) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.get(name) == Some(&id) {
            live.remove(name);
        }
    }
}

/// Stream names become URL path segments: keep them to a safe alphabet.
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The sending side of the hub, cloned into every source.
#[derive(Clone, Debug)]
pub struct HubHandle {
    commands: Sender<HubCommand>,
    registry: Arc<StreamRegistry>,
    status: Arc<ArcSwap<Vec<StreamStatus>>>,
    dropped_units: Arc<AtomicU64>,
}

impl HubHandle {
    /// Claims `stream` for a new publisher described by `origin` (e.g. `rtmp 10.0.0.5:50312`).
    pub fn claim(&self, stream: &str, origin: &str) -> Result<PublisherClaim, ClaimError> {
        let id = self.registry.claim(stream)?;
        Ok(PublisherClaim {
            stream: Arc::from(stream),
            id,
            origin: origin.to_owned(),
            hub: self.clone(),
            started: false,
            audio_source: None,
            end_reason: None,
        })
    }

    /// Streams as the hub last saw them (refreshed about once a second and on every change).
    pub fn status(&self) -> Arc<Vec<StreamStatus>> {
        self.status.load_full()
    }

    /// Units dropped because the hub's queue was full.
    pub fn dropped_units(&self) -> u64 {
        self.dropped_units.load(Ordering::Relaxed)
    }
}

/// A publisher's hold on a stream name. Dropping it tells the hub the publisher is gone and
/// frees the name.
#[derive(Debug)]
pub struct PublisherClaim {
    stream: Arc<str>,
    id: PublisherId,
    origin: String,
    hub: HubHandle,
    started: bool,
    end_reason: Option<String>,
    audio_source: Option<AudioSource>,
}

impl PublisherClaim {
    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Starts (or, with new parameters, restarts) the stream with these tracks.
    pub fn start(&mut self, video: Option<AvcConfig>, audio: Option<AacConfig>) {
        self.start_tracks(video.map(TrackConfig::Avc), audio);
    }

    /// As [`Self::start`] with video of any codec the packager takes (H.264, HEVC, AV1). The
    /// source is packaged as it comes (passthrough); a transcode ladder is built only for what
    /// the ladder decodes, otherwise the stream stays passthrough with a warning.
    pub fn start_tracks(&mut self, video: Option<TrackConfig>, audio: Option<AacConfig>) {
        self.started = true;
        // Start is rare and must not be lost: block if the queue is full.
        let _ = self.hub.commands.send(HubCommand::Start {
            stream: self.stream.clone(),
            publisher: self.id,
            origin: self.origin.clone(),
            video,
            audio,
            audio_source: self.audio_source.clone(),
        });
    }

    /// What the source's audio was before it was transcoded to the AAC this stream carries
    /// (`mp3 44100 Hz 2 ch`), shown in the stream's status from the next start on; `None`: the
    /// source sent AAC.
    pub fn set_audio_source(&mut self, source: Option<AudioSource>) {
        self.audio_source = source;
    }

    /// Hands one access unit to the hub. Never blocks: when the hub is overloaded the unit is
    /// dropped and counted, so one slow stream cannot stall an ingest core.
    pub fn send_unit(&self, unit: AccessUnit) {
        let command = HubCommand::Unit {
            stream: self.stream.clone(),
            publisher: self.id,
            unit,
        };
        if let Err(TrySendError::Full(_)) = self.hub.commands.try_send(command) {
            let dropped = self.hub.dropped_units.fetch_add(1, Ordering::Relaxed);
            if dropped.is_power_of_two() {
                tracing::warn!(stream = %self.stream, dropped = dropped + 1, "hub queue full: dropping access units");
            }
        }
    }

    /// Records why the publisher ends (logged by the hub when the claim is dropped).
    pub fn set_end_reason(&mut self, reason: impl Into<String>) {
        self.end_reason = Some(reason.into());
    }
}

impl Drop for PublisherClaim {
    fn drop(&mut self) {
        self.hub.registry.release(&self.stream, self.id);
        let reason = self
            .end_reason
            .take()
            .unwrap_or_else(|| "publisher ended".to_owned());
        let _ = self.hub.commands.send(HubCommand::Gone {
            stream: self.stream.clone(),
            publisher: self.id,
            reason,
        });
    }
}

/// Starts the hub on the current thread's behalf: returns the handle sources use and the loop
/// to run (on the package core).
pub fn hub(config: HubConfig, store: Arc<SegmentStore>) -> (HubHandle, StreamHub) {
    let (tx, rx) = crossbeam_channel::bounded(config.queue_depth);
    let status = Arc::new(ArcSwap::from_pointee(Vec::new()));
    let handle = HubHandle {
        commands: tx,
        registry: Arc::new(StreamRegistry::default()),
        status: status.clone(),
        dropped_units: Arc::new(AtomicU64::new(0)),
    };
    let (ladder_jobs, ladder_events, ladder_workers) = if config.transcode.enabled {
        crate::ladder::channels(
            config.transcode.inbox_depth,
            config.transcode.workers.max(1),
        )
    } else {
        (Vec::new(), crossbeam_channel::never(), Vec::new())
    };
    let hub = StreamHub {
        config,
        store,
        commands: rx,
        streams: HashMap::new(),
        status,
        ladder_jobs,
        ladder_events,
        ladder_workers,
        ladder_cores: Vec::new(),
        next_generation: 0,
    };
    (handle, hub)
}

#[derive(Debug)]
enum Phase {
    Live,
    Grace { until: Instant },
    Ended { remove_at: Instant },
}

#[derive(Debug)]
struct Stream {
    packager: LivePackager,
    publisher: PublisherId,
    origin: String,
    phase: Phase,
    started_at_ms: i64,
    video: Option<TrackConfig>,
    audio: Option<AacConfig>,
    /// What the source's audio was before it was transcoded to `audio` (`None`: AAC).
    audio_source: Option<AudioSource>,
    /// Payload bytes per second over a short window, for the input bitrate.
    meter: RateMeter,
    pending: Vec<StoreChange>,
    /// The current publisher's ladder, while the worker runs it.
    ladder: Option<StreamLadder>,
}

/// A stream's ladder as the hub sees it.
#[derive(Debug)]
struct StreamLadder {
    generation: u64,
    /// Index of the transcode worker running it.
    worker: usize,
    rungs: Vec<Rendition>,
    /// Per rung: the encoder that runs it, and why an NVENC rung fell back to x264.
    encoders: Vec<(&'static str, Option<String>)>,
    /// Where the source is decoded (`cpu`, `nvdec`) and scaled (`cpu`, `gpu`), and why not on
    /// the GPU when it was asked.
    decoder: (&'static str, &'static str, Option<String>),
    /// Latest figures from the worker, by rung index.
    stats: Vec<RungStats>,
    /// Latest figures of the ladder's decoder.
    ladder_stats: LadderStats,
    /// The publisher is gone; its last segment waits for the ladder until then.
    finishing_until: Option<Instant>,
    /// Source units the worker's inbox had no room for.
    dropped_units: u64,
}

/// The hub loop; see the module docs.
#[derive(Debug)]
pub struct StreamHub {
    config: HubConfig,
    store: Arc<SegmentStore>,
    commands: Receiver<HubCommand>,
    streams: HashMap<Arc<str>, Stream>,
    status: Arc<ArcSwap<Vec<StreamStatus>>>,
    /// Each transcode worker's inbox (none with transcoding off).
    ladder_jobs: Vec<Sender<LadderJob>>,
    ladder_events: Receiver<LadderEvent>,
    /// The workers, until the engine takes them to run on the transcode cores.
    ladder_workers: Vec<LadderWorker>,
    /// The core each worker runs on, where its ladders' encoders are opened (their threads
    /// inherit it); empty: not pinned.
    ladder_cores: Vec<Option<CoreId>>,
    next_generation: u64,
}

const STATUS_INTERVAL: Duration = Duration::from_secs(1);

impl StreamHub {
    /// The transcode workers, one per transcode core of the plan (none with transcoding off,
    /// or once taken). Without them running, streams that should get a ladder stay
    /// passthrough.
    pub fn take_ladder_workers(&mut self) -> Vec<LadderWorker> {
        std::mem::take(&mut self.ladder_workers)
    }

    /// The cores the taken workers run on, in their order.
    pub fn set_ladder_cores(&mut self, cores: Vec<Option<CoreId>>) {
        self.ladder_cores = cores;
    }

    /// Runs until every [`HubHandle`] is dropped.
    pub fn run(mut self) {
        if !std::mem::take(&mut self.ladder_workers).is_empty() {
            tracing::warn!("transcoding is on but no worker runs the ladders: passthrough only");
            self.ladder_jobs.clear();
        }
        let mut next_status = Instant::now();
        let commands = self.commands.clone();
        let events = self.ladder_events.clone();
        loop {
            let now = Instant::now();
            let deadline = self
                .next_deadline()
                .map_or(next_status, |d| d.min(next_status));
            crossbeam_channel::select! {
                recv(commands) -> command => {
                    let Ok(command) = command else {
                        return;
                    };
                    self.handle(command);
                }
                recv(events) -> event => {
                    if let Ok(event) = event {
                        self.handle_ladder_event(event);
                    }
                }
                default(deadline.saturating_duration_since(now)) => {}
            }
            // Drain what else is queued before the bookkeeping below: one turn per unit
            // would rebuild the status list far more often than anyone reads it.
            for _ in 0..4096 {
                let Ok(command) = commands.try_recv() else {
                    break;
                };
                self.handle(command);
            }
            for _ in 0..4096 {
                let Ok(event) = events.try_recv() else {
                    break;
                };
                self.handle_ladder_event(event);
            }
            let now = Instant::now();
            self.handle_timers(now);
            if now >= next_status {
                self.publish_status();
                next_status = now + STATUS_INTERVAL;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.streams
            .values()
            .flat_map(|s| {
                let phase = match s.phase {
                    Phase::Live => None,
                    Phase::Grace { until } => Some(until),
                    Phase::Ended { remove_at } => Some(remove_at),
                };
                let ladder = s.ladder.as_ref().and_then(|l| l.finishing_until);
                [phase, ladder]
            })
            .flatten()
            .min()
    }

    fn handle(&mut self, command: HubCommand) {
        match command {
            HubCommand::Start {
                stream,
                publisher,
                origin,
                video,
                audio,
                audio_source,
            } => self.handle_start(stream, publisher, origin, video, (audio, audio_source)),
            HubCommand::Unit {
                stream,
                publisher,
                unit,
            } => {
                let Some(s) = self.streams.get_mut(&stream) else {
                    return;
                };
                if s.publisher != publisher || !matches!(s.phase, Phase::Live) {
                    return;
                }
                s.meter.add(Instant::now(), unit.payload.len());
                if let Some(ladder) = s.ladder.as_mut()
                    && let Some(jobs) = self.ladder_jobs.get(ladder.worker)
                    && unit.kind() == TrackKind::Video
                {
                    let job = LadderJob::Unit {
                        stream: stream.clone(),
                        generation: ladder.generation,
                        unit: unit.clone(),
                    };
                    if jobs.try_send(job).is_err() {
                        ladder.dropped_units += 1;
                        if ladder.dropped_units.is_power_of_two() {
                            tracing::warn!(stream = %stream, dropped = ladder.dropped_units, "transcode worker queue full: the ladder misses source units");
                        }
                    }
                }
                s.packager.handle_unit(unix_ms(), unit);
                self.flush(&stream);
            }
            HubCommand::Gone {
                stream,
                publisher,
                reason,
            } => {
                let grace = self.config.grace_period;
                let Some(s) = self.streams.get_mut(&stream) else {
                    tracing::info!(stream = %stream, publisher, %reason, "publisher ended before sending media");
                    return;
                };
                if s.publisher != publisher || !matches!(s.phase, Phase::Live) {
                    return;
                }
                tracing::info!(stream = %stream, origin = %s.origin, %reason, grace_secs = grace.as_secs_f32(), "unpublished; waiting for the publisher to return");
                // The last segment waits for the ladder's last units when it can.
                let ladder_jobs = &self.ladder_jobs;
                let with_jobs = s
                    .ladder
                    .as_mut()
                    .and_then(|l| ladder_jobs.get(l.worker).map(|jobs| (l, jobs)));
                let finishing = match with_jobs {
                    Some((ladder, jobs)) => {
                        let job = LadderJob::Finish {
                            stream: stream.clone(),
                            generation: ladder.generation,
                        };
                        let sent = jobs.send_timeout(job, Duration::from_millis(100)).is_ok();
                        ladder.finishing_until = sent.then(|| Instant::now() + LADDER_FINISH_WAIT);
                        sent
                    }
                    _ => false,
                };
                if !finishing {
                    s.ladder = None;
                    s.packager.handle_publisher_gone(unix_ms());
                }
                s.phase = Phase::Grace {
                    until: Instant::now() + grace,
                };
                self.flush(&stream);
                self.publish_status();
            }
        }
    }

    fn handle_start(
        &mut self,
        stream: Arc<str>,
        publisher: PublisherId,
        origin: String,
        video: Option<TrackConfig>,
        (audio, audio_source): (Option<AacConfig>, Option<AudioSource>),
    ) {
        let now_ms = unix_ms();
        if let Some(old) = self.streams.get_mut(&stream).and_then(|s| s.ladder.take()) {
            self.stop_ladder(&stream, &old);
        }
        let ladder = video
            .as_ref()
            .and_then(|video| self.start_ladder(&stream, video));
        let continuing = match self.streams.get(&stream) {
            Some(s) => match s.phase {
                // A different publisher while live: the old one's `Gone` is still queued
                // behind this `Start` (the name is released before it is sent).
                Phase::Live | Phase::Grace { .. } => true,
                Phase::Ended { .. } => false,
            },
            None => false,
        };
        if !continuing {
            if self.streams.remove(&stream).is_some() {
                // A new publisher of an ended stream starts it afresh.
                self.store.remove_stream(&stream);
            }
            let packager = LivePackager::new(self.config.packaging.clone());
            self.streams.insert(
                stream.clone(),
                Stream {
                    packager,
                    publisher,
                    origin: origin.clone(),
                    phase: Phase::Live,
                    started_at_ms: now_ms,
                    video: None,
                    audio: None,
                    audio_source: None,
                    meter: RateMeter::default(),
                    pending: Vec::new(),
                    ladder: None,
                },
            );
        }
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let restart = s.publisher == publisher && matches!(s.phase, Phase::Live) && continuing;
        tracing::info!(
            stream = %stream,
            %origin,
            video = video.as_ref().map(|v| {
                let (width, height) = v.video_size().unwrap_or_default();
                format!("{} {width}x{height}", v.codec_string())
            }),
            audio = audio.as_ref().map(|a| format!("{} {} Hz {} ch", a.codec_string(), a.sample_rate, a.channels)),
            "{}",
            if restart { "track parameters changed; continuing after a discontinuity" } else if continuing { "publisher returned within the grace period; continuing" } else { "published" }
        );
        s.publisher = publisher;
        s.origin = origin;
        s.phase = Phase::Live;
        s.started_at_ms = now_ms;
        s.video = video.clone();
        s.audio = audio.clone();
        s.audio_source = audio_source;
        let renditions = ladder.as_ref().map_or_else(Vec::new, |l| l.rungs.clone());
        s.ladder = ladder;
        s.packager
            .handle_start_tracks(now_ms, video, audio, renditions);
        self.flush(&stream);
        self.publish_status();
    }

    /// Builds the stream's ladder here (so the rungs' parameter sets are known before the
    /// packager starts; a few ms of encoder set-up once per publish) and hands it to the
    /// worker. `None`: no ladder for this stream, which then stays passthrough.
    fn start_ladder(&mut self, stream: &Arc<str>, source: &TrackConfig) -> Option<StreamLadder> {
        if self.ladder_jobs.is_empty() || !self.config.transcode.transcodes(stream) {
            return None;
        }
        // The worker with the fewest ladders takes the new one.
        let mut load = vec![0usize; self.ladder_jobs.len()];
        for l in self.streams.values().filter_map(|s| s.ladder.as_ref()) {
            if let Some(count) = load.get_mut(l.worker) {
                *count += 1;
            }
        }
        let worker = (0..load.len()).min_by_key(|&i| load[i]).unwrap_or(0);
        let jobs = self.ladder_jobs.get(worker)?;
        let config = self
            .config
            .transcode
            .ladder_config(self.config.packaging.target_duration);
        let core = self.ladder_cores.get(worker).copied().flatten();
        let ladder = match crate::plan::with_threads_on(core, || Ladder::new(config, source)) {
            Ok(ladder) => ladder,
            Err(e) => {
                // E.g. AV1 (or HEVC before the ladder decodes it): the source still publishes.
                tracing::warn!(stream = %stream, codec = %source.codec_string(), error = %e, "transcode ladder not started: passthrough only");
                return None;
            }
        };
        // Every rung, H.264 and AV1, in id order: the worker's units name their rung by id.
        let rungs: Vec<Rendition> = ladder
            .rung_tracks()
            .map(|rung| Rendition {
                name: rung.config.name.clone(),
                track: rung.track.clone(),
            })
            .collect();
        let encoders: Vec<(&'static str, Option<String>)> = ladder
            .rung_tracks()
            .map(|rung| (rung.encoder.name(), rung.fallback_reason.map(str::to_owned)))
            .collect();
        let decoder = (
            match ladder.decoder_device() {
                DecodeDevice::Cpu => "cpu",
                DecodeDevice::Nvdec { .. } => "nvdec",
            },
            if ladder.scales_on_gpu() { "gpu" } else { "cpu" },
            ladder
                .decoder_fallback_reason()
                .or(ladder.gpu_scale_fallback_reason())
                .map(str::to_owned),
        );
        if rungs.is_empty() {
            tracing::info!(stream = %stream, height = source.video_size().map_or(0, |(_, height)| height), "no rung fits under the source: passthrough only");
            return None;
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        let job = LadderJob::Start {
            stream: stream.clone(),
            generation,
            ladder: Box::new(ladder),
        };
        if jobs.send_timeout(job, Duration::from_secs(1)).is_err() {
            tracing::warn!(stream = %stream, "transcode worker not taking new ladders: passthrough only");
            return None;
        }
        tracing::info!(
            stream = %stream,
            rungs = %rungs.iter().map(|r| { let (w, h) = r.track.video_size().unwrap_or_default(); format!("{} {} {w}x{h}", r.name, r.track.codec_string()) }).collect::<Vec<_>>().join(", "),
            "transcoding"
        );
        let count = rungs.len();
        Some(StreamLadder {
            generation,
            worker,
            rungs,
            encoders,
            decoder,
            stats: vec![RungStats::default(); count],
            ladder_stats: LadderStats::default(),
            finishing_until: None,
            dropped_units: 0,
        })
    }

    fn stop_ladder(&self, stream: &Arc<str>, ladder: &StreamLadder) {
        if let Some(jobs) = self.ladder_jobs.get(ladder.worker) {
            // Best effort: a worker too busy to hear it drops the ladder's units by generation.
            let _ = jobs.try_send(LadderJob::Stop {
                stream: stream.clone(),
                generation: ladder.generation,
            });
        }
    }

    fn handle_ladder_event(&mut self, event: LadderEvent) {
        let (stream, generation) = match &event {
            LadderEvent::Unit {
                stream, generation, ..
            }
            | LadderEvent::Stats {
                stream, generation, ..
            }
            | LadderEvent::Finished { stream, generation }
            | LadderEvent::Failed { stream, generation } => (stream.clone(), *generation),
        };
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(ladder) = s.ladder.as_mut().filter(|l| l.generation == generation) else {
            return;
        };
        match event {
            LadderEvent::Unit { rung, unit, .. } => {
                s.packager.handle_rendition_unit(unix_ms(), rung, unit);
            }
            LadderEvent::Stats {
                rungs,
                ladder: ladder_stats,
                ..
            } => {
                ladder.stats = rungs;
                ladder.ladder_stats = ladder_stats;
                return;
            }
            LadderEvent::Finished { .. } | LadderEvent::Failed { .. } => {
                let finishing = ladder.finishing_until.is_some();
                s.ladder = None;
                s.packager.handle_renditions_end(unix_ms());
                if finishing {
                    s.packager.handle_publisher_gone(unix_ms());
                }
            }
        }
        self.flush(&stream);
    }

    fn handle_timers(&mut self, now: Instant) {
        let mut changed = false;
        let names: Vec<Arc<str>> = self.streams.keys().cloned().collect();
        for name in names {
            let Some(s) = self.streams.get_mut(&name) else {
                continue;
            };
            let late_ladder = s.ladder.as_ref().filter(|l| {
                l.finishing_until.is_some_and(|t| now >= t)
                    || matches!(s.phase, Phase::Grace { until } if now >= until)
            });
            if late_ladder.is_some()
                && let Some(ladder) = s.ladder.take()
            {
                tracing::warn!(stream = %name, "transcode ladder did not finish in time; its last units are lost");
                s.packager.handle_publisher_gone(unix_ms());
                self.stop_ladder(&name, &ladder);
                self.flush(&name);
                changed = true;
            }
            let Some(s) = self.streams.get_mut(&name) else {
                continue;
            };
            match s.phase {
                Phase::Grace { until } if now >= until => {
                    tracing::info!(stream = %name, "grace period over; stream ended");
                    s.packager.handle_end(unix_ms());
                    s.phase = Phase::Ended {
                        remove_at: now + self.config.ended_retention,
                    };
                    self.flush(&name);
                    changed = true;
                }
                Phase::Ended { remove_at } if now >= remove_at => {
                    if let Some(ladder) = self.streams.remove(&name).and_then(|s| s.ladder) {
                        self.stop_ladder(&name, &ladder);
                    }
                    self.store.remove_stream(&name);
                    tracing::info!(stream = %name, "ended stream removed");
                    changed = true;
                }
                _ => {}
            }
        }
        if changed {
            self.publish_status();
        }
    }

    /// Publishes what the stream's packager produced, one committed batch at a time.
    fn flush(&mut self, name: &str) {
        let Some(s) = self.streams.get_mut(name) else {
            return;
        };
        let live_max_age = (self.config.packaging.target_duration.as_secs() / 2).max(1) as u32;
        while let Some(output) = s.packager.poll_output() {
            match output {
                PackagerOutput::Put { path, kind, body } => {
                    let (content_type, cache) = object_policy(kind, live_max_age);
                    s.pending.push(StoreChange::Put {
                        path,
                        object: StoredObject::new(body, content_type, cache),
                    });
                }
                PackagerOutput::Remove { path } => s.pending.push(StoreChange::Remove { path }),
                PackagerOutput::Commit => {
                    let batch = std::mem::take(&mut s.pending);
                    self.store.apply(name, batch);
                }
            }
        }
    }

    fn publish_status(&self) {
        let now = Instant::now();
        let mut list: Vec<StreamStatus> = self
            .streams
            .iter()
            .map(|(name, s)| StreamStatus {
                name: name.to_string(),
                state: match s.phase {
                    Phase::Live => "live",
                    Phase::Grace { .. } => "reconnecting",
                    Phase::Ended { .. } => "ended",
                },
                origin: s.origin.clone(),
                started_at_ms: s.started_at_ms,
                input_kbps: if matches!(s.phase, Phase::Live) {
                    s.meter.kbps(now)
                } else {
                    0
                },
                renditions: RenditionStatus::of(
                    s.video.as_ref(),
                    s.audio.as_ref().map(|a| (a, s.audio_source.as_ref())),
                    s.ladder.as_ref(),
                ),
                transcode_dropped_units: s.ladder.as_ref().map(|l| l.dropped_units),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        self.status.store(Arc::new(list));
    }
}

/// Content type and cache policy of each kind of packager output.
fn object_policy(kind: ObjectKind, live_max_age: u32) -> (&'static str, CachePolicy) {
    let live = CachePolicy::Live {
        max_age_secs: live_max_age,
    };
    match kind {
        ObjectKind::Playlist | ObjectKind::FinalPlaylist => (content_type::HLS_PLAYLIST, live),
        ObjectKind::Mpd | ObjectKind::FinalMpd => (content_type::DASH_MPD, live),
        // A returning publisher with new parameters gets a new init path, so inits never change.
        ObjectKind::VideoInit => (content_type::MP4_VIDEO, CachePolicy::Immutable),
        ObjectKind::AudioInit => (content_type::MP4_AUDIO, CachePolicy::Immutable),
        ObjectKind::VideoSegment => (content_type::MP4_VIDEO, CachePolicy::Immutable),
        ObjectKind::AudioSegment => (content_type::MP4_AUDIO, CachePolicy::Immutable),
        ObjectKind::TsSegment => (content_type::MPEG_TS, CachePolicy::Immutable),
    }
}

/// Bytes over a sliding window of one-second buckets.
#[derive(Debug)]
struct RateMeter {
    start: Option<Instant>,
    /// (second index since start, bytes in that second)
    buckets: [(u64, u64); RateMeter::SECONDS],
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter {
            start: None,
            buckets: [(u64::MAX, 0); RateMeter::SECONDS],
        }
    }
}

impl RateMeter {
    const SECONDS: usize = 5;

    fn add(&mut self, now: Instant, bytes: usize) {
        let start = *self.start.get_or_insert(now);
        let second = now.saturating_duration_since(start).as_secs();
        let bucket = &mut self.buckets[(second % Self::SECONDS as u64) as usize];
        if bucket.0 != second {
            *bucket = (second, 0);
        }
        bucket.1 += bytes as u64;
    }

    /// Average over the last full seconds of the window.
    fn kbps(&self, now: Instant) -> u64 {
        let Some(start) = self.start else {
            return 0;
        };
        let current = now.saturating_duration_since(start).as_secs();
        let window = (Self::SECONDS as u64 - 1).min(current);
        if window == 0 {
            return 0;
        }
        let bytes: u64 = self
            .buckets
            .iter()
            .filter(|(second, _)| *second < current && current - *second <= window)
            .map(|(_, b)| *b)
            .sum();
        bytes * 8 / window / 1000
    }
}

/// Wall-clock time in Unix ms, the clock playlists and MPDs are stamped with.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
