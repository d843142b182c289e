//! The transcode worker: runs the [`transcode::Ladder`] of every stream that has one, on the
//! transcode core of the core plan. docs/transcode.md describes the wiring.
//!
//! The hub builds a stream's ladder when its publisher starts (so it knows the rungs'
//! parameter sets before the packager starts), hands it over in a [`LadderJob::Start`], then
//! forwards the source's video units. The worker sends each rung's units back as
//! [`LadderEvent::Unit`]s, which the hub feeds to the stream's packager.
//!
//! Back-pressure, in order: the worker's inbox is bounded (the hub drops a source unit it
//! cannot queue, counted per stream). While the inbox holds at most [`BURST_UNITS`] the worker
//! takes one unit and encodes every picture it gives, so bursts lose nothing. Beyond that it
//! is behind: each turn it decodes everything queued (decode and scale are cheap next to
//! encoding) and encodes one picture per ladder, so a rung that cannot keep up fills its
//! bounded queue and drops frames by the ladder's policy (never a segment's first). Its events
//! to the hub go through a bounded channel too (dropped and counted when full, never blocking,
//! so the hub and the worker cannot wait on each other).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use media::AccessUnit;
pub use package::live::valid_rendition_name;
pub use transcode::{DecoderChoice, RungConfig};
use transcode::{Ladder, LadderConfig, LadderStats, RungId, RungStats};
pub use x264::{X264Preset, X264Profile};

/// Settings of transcoding (`[transcode]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranscodeConfig {
    /// Off by default: a ladder costs about a core per 1080p30 stream.
    pub enabled: bool,
    /// The rungs; those taller than a stream's source are skipped for it.
    pub rungs: Vec<RungConfig>,
    /// Streams that stay passthrough: exact names, or prefixes written with a trailing `*`.
    pub passthrough_streams: Vec<String>,
    /// libavcodec frame threads of each ladder's decoder.
    pub decoder_threads: u32,
    /// Where each ladder decodes its source: NVDEC when available (`auto`), the CPU, or NVDEC
    /// or no ladder.
    pub decoder: DecoderChoice,
    /// The CUDA device of every ladder's NVDEC, GPU scaling and NVENC rungs.
    pub gpu: u32,
    /// x264 threads per rung.
    pub encoder_threads: u32,
    /// Scaled pictures a rung may hold before it drops frames.
    pub queue_frames: usize,
    /// Source units waiting for a worker before the hub drops new ones.
    pub inbox_depth: usize,
    /// Transcode workers (threads, one per transcode core of the plan); 0 = automatic: one on
    /// boxes of up to 3 cores, half of the cores after the first from 4 cores up. Streams go
    /// to the worker with the fewest ladders.
    pub workers: usize,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        let ladder = LadderConfig::default();
        TranscodeConfig {
            enabled: false,
            rungs: ladder.rungs,
            passthrough_streams: Vec::new(),
            decoder_threads: ladder.decoder_threads,
            decoder: ladder.decoder,
            gpu: ladder.gpu,
            encoder_threads: ladder.encoder_threads,
            queue_frames: ladder.queue_frames,
            inbox_depth: 512,
            workers: 0,
        }
    }
}

impl TranscodeConfig {
    /// Whether `stream` gets a ladder.
    pub fn transcodes(&self, stream: &str) -> bool {
        self.enabled
            && !self.rungs.is_empty()
            && !self
                .passthrough_streams
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => stream.starts_with(prefix),
                    None => stream == pattern,
                })
    }

    /// The ladder of one stream; `segment_target` is the packager's target duration, where the
    /// ladder forces its IDRs.
    pub fn ladder_config(&self, segment_target: Duration) -> LadderConfig {
        LadderConfig {
            rungs: self.rungs.clone(),
            segment_target,
            decoder_threads: self.decoder_threads,
            decoder: self.decoder,
            gpu: self.gpu,
            encoder_threads: self.encoder_threads,
            queue_frames: self.queue_frames,
            ..LadderConfig::default()
        }
    }
}

/// x264 presets by their x264 names (`ultrafast` … `slow`).
pub fn x264_preset(name: &str) -> Option<X264Preset> {
    [
        X264Preset::Ultrafast,
        X264Preset::Superfast,
        X264Preset::Veryfast,
        X264Preset::Faster,
        X264Preset::Fast,
        X264Preset::Medium,
        X264Preset::Slow,
    ]
    .into_iter()
    .find(|preset| preset.name() == name)
}

/// x264 profiles by name (`baseline`, `main`, `high`).
pub fn x264_profile(name: &str) -> Option<X264Profile> {
    [X264Profile::Baseline, X264Profile::Main, X264Profile::High]
        .into_iter()
        .find(|profile| profile.name() == name)
}

/// What the hub asks of the worker. `generation` tells one ladder of a stream from the next.
pub(crate) enum LadderJob {
    Start {
        stream: Arc<str>,
        generation: u64,
        ladder: Box<Ladder>,
    },
    Unit {
        stream: Arc<str>,
        generation: u64,
        unit: AccessUnit,
    },
    /// The publisher is gone: encode what is queued, send it, then [`LadderEvent::Finished`].
    Finish { stream: Arc<str>, generation: u64 },
    /// Drop the ladder now (the stream restarted or was removed).
    Stop { stream: Arc<str>, generation: u64 },
}

/// What the worker tells the hub.
#[derive(Debug)]
pub(crate) enum LadderEvent {
    Unit {
        stream: Arc<str>,
        generation: u64,
        rung: usize,
        unit: AccessUnit,
    },
    /// Every rung's progress, about once a second.
    Stats {
        stream: Arc<str>,
        generation: u64,
        rungs: Vec<RungStats>,
        /// The decoder's figures (corrupt units, concealed pictures).
        ladder: LadderStats,
    },
    Finished {
        stream: Arc<str>,
        generation: u64,
    },
    /// The ladder stopped on an error (logged by the worker); the stream goes on without it.
    Failed {
        stream: Arc<str>,
        generation: u64,
    },
}

/// Events that may wait for the hub before the worker drops new ones.
const EVENT_QUEUE: usize = 4096;
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Jobs taken per turn while behind, before encoding again.
const JOBS_PER_TURN: usize = 256;
/// Source units queued in the inbox beyond which the worker counts as behind (about a second
/// of video): below it every picture is encoded, above it the rungs drop frames.
const BURST_UNITS: usize = 30;

/// The channels between the hub and `count` new workers: an inbox per worker, one event
/// channel they all send into.
pub(crate) fn channels(
    inbox_depth: usize,
    count: usize,
) -> (
    Vec<Sender<LadderJob>>,
    Receiver<LadderEvent>,
    Vec<LadderWorker>,
) {
    let (events, events_rx) = crossbeam_channel::bounded(EVENT_QUEUE);
    let epoch = Instant::now();
    let (inboxes, workers) = (0..count.max(1))
        .map(|_| {
            let (jobs_tx, jobs) = crossbeam_channel::bounded(inbox_depth.max(16));
            let worker = LadderWorker {
                jobs,
                events: events.clone(),
                ladders: HashMap::new(),
                dropped_events: 0,
                epoch,
            };
            (jobs_tx, worker)
        })
        .unzip();
    (inboxes, events_rx, workers)
}

struct Running {
    generation: u64,
    ladder: Ladder,
    finishing: bool,
}

/// The worker loop; see the module docs. Runs until the hub drops its sender.
pub struct LadderWorker {
    jobs: Receiver<LadderJob>,
    events: Sender<LadderEvent>,
    ladders: HashMap<Arc<str>, Running>,
    dropped_events: u64,
    epoch: Instant,
}

impl std::fmt::Debug for LadderWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LadderWorker")
            .field("streams", &self.ladders.len())
            .field("dropped_events", &self.dropped_events)
            .finish_non_exhaustive()
    }
}

impl LadderWorker {
    pub fn run(mut self) {
        let mut next_stats = Instant::now() + STATS_INTERVAL;
        let mut busy = false;
        loop {
            // Block only when no ladder has pictures waiting for its encoders.
            let job = if busy {
                match self.jobs.try_recv() {
                    Ok(job) => Some(job),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return,
                }
            } else {
                let wait = next_stats.saturating_duration_since(Instant::now());
                match self.jobs.recv_timeout(wait) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            };
            if let Some(job) = job {
                self.handle(job);
            }
            if self.jobs.len() > BURST_UNITS {
                // Behind: decode what is queued (cheap) and encode one picture per ladder, so
                // the rungs' bounded queues drop frames instead of the inbox dropping units.
                for _ in 0..JOBS_PER_TURN {
                    let Ok(job) = self.jobs.try_recv() else {
                        break;
                    };
                    self.handle(job);
                }
                busy = self.encode_turn();
            } else {
                // Keeping up (a burst, such as a publisher's last frames, included): encode
                // everything, so nothing is dropped.
                while self.encode_turn() {}
                busy = false;
            }
            let now = Instant::now();
            if now >= next_stats {
                self.send_stats();
                next_stats = now + STATS_INTERVAL;
            }
        }
    }

    fn handle(&mut self, job: LadderJob) {
        match job {
            LadderJob::Start {
                stream,
                generation,
                ladder,
            } => {
                self.ladders.insert(
                    stream,
                    Running {
                        generation,
                        ladder: *ladder,
                        finishing: false,
                    },
                );
            }
            LadderJob::Unit {
                stream,
                generation,
                unit,
            } => {
                let Some(running) = self.running(&stream, generation) else {
                    return;
                };
                if let Err(e) = running.ladder.handle_unit(&unit) {
                    self.fail(&stream, generation, e.to_string());
                    return;
                }
                self.forward_outputs(&stream);
            }
            LadderJob::Finish { stream, generation } => {
                let Some(running) = self.running(&stream, generation) else {
                    // Already failed or never started: the hub still waits for an answer.
                    self.send(LadderEvent::Finished { stream, generation });
                    return;
                };
                running.finishing = true;
                if let Err(e) = running.ladder.finish() {
                    self.fail(&stream, generation, e.to_string());
                }
            }
            LadderJob::Stop { stream, generation } => {
                if self.running(&stream, generation).is_some() {
                    self.ladders.remove(&stream);
                }
            }
        }
    }

    fn running(&mut self, stream: &str, generation: u64) -> Option<&mut Running> {
        self.ladders
            .get_mut(stream)
            .filter(|r| r.generation == generation)
    }

    /// One encode step per ladder. Returns whether any ladder had work.
    fn encode_turn(&mut self) -> bool {
        let now = self.epoch.elapsed();
        let mut busy = false;
        let mut finished = Vec::new();
        let mut failed = Vec::new();
        let names: Vec<Arc<str>> = self.ladders.keys().cloned().collect();
        for name in names {
            let Some(running) = self.ladders.get_mut(&name) else {
                continue;
            };
            match running.ladder.encode_step(now) {
                Ok(true) => busy = true,
                Ok(false) if running.finishing => finished.push((name.clone(), running.generation)),
                Ok(false) => {}
                Err(e) => failed.push((name.clone(), running.generation, e.to_string())),
            }
            self.forward_outputs(&name);
        }
        for (stream, generation, error) in failed {
            self.fail(&stream, generation, error);
        }
        for (stream, generation) in finished {
            self.ladders.remove(&stream);
            self.send(LadderEvent::Finished { stream, generation });
        }
        busy
    }

    fn forward_outputs(&mut self, stream: &Arc<str>) {
        let Some(running) = self.ladders.get_mut(stream) else {
            return;
        };
        let generation = running.generation;
        // alloc: the events are moved into the channel; the vector is reused by nobody, but
        // taking outputs first keeps the ladder borrow short.
        let mut outputs = Vec::new();
        while let Some((RungId(rung), unit)) = running.ladder.poll_output() {
            outputs.push((rung, unit));
        }
        for (rung, unit) in outputs {
            self.send(LadderEvent::Unit {
                stream: stream.clone(),
                generation,
                rung,
                unit,
            });
        }
    }

    fn fail(&mut self, stream: &str, generation: u64, error: String) {
        if let Some((stream, _)) = self.ladders.remove_entry(stream) {
            tracing::warn!(stream = %stream, %error, "transcode ladder failed; the stream goes on without its rungs");
            self.send(LadderEvent::Failed { stream, generation });
        }
    }

    fn send_stats(&mut self) {
        let stats: Vec<LadderEvent> = self
            .ladders
            .iter()
            .map(|(stream, running)| {
                let rungs = running
                    .ladder
                    .rungs()
                    .filter_map(|info| running.ladder.rung_stats(info.id))
                    .collect();
                LadderEvent::Stats {
                    stream: stream.clone(),
                    generation: running.generation,
                    rungs,
                    ladder: running.ladder.stats(),
                }
            })
            .collect();
        for event in stats {
            self.send(event);
        }
    }

    fn send(&mut self, event: LadderEvent) {
        if let Err(TrySendError::Full(_)) = self.events.try_send(event) {
            self.dropped_events += 1;
            if self.dropped_events.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped_events,
                    "hub is not taking transcoded units: dropping them"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthrough_streams_match_names_and_prefixes() {
        let config = TranscodeConfig {
            enabled: true,
            passthrough_streams: vec!["cam-*".into(), "lobby".into()],
            ..TranscodeConfig::default()
        };
        assert!(config.transcodes("event"));
        assert!(config.transcodes("lobby2"));
        assert!(!config.transcodes("lobby"));
        assert!(!config.transcodes("cam-17"));
        assert!(
            !TranscodeConfig::default().transcodes("event"),
            "off by default"
        );
    }

    #[test]
    fn presets_by_name() {
        assert_eq!(x264_preset("ultrafast"), Some(X264Preset::Ultrafast));
        assert_eq!(x264_preset("veryfast"), Some(X264Preset::Veryfast));
        assert_eq!(x264_preset("placebo"), None);
    }
}
