//! The stream hub: one thread that owns every stream's packager, takes access units from
//! ingest sessions and the demo source, and publishes what the packagers produce into the
//! [`SegmentStore`].
//!
//! Publisher life cycle: a source claims a stream name in the [`StreamRegistry`] (a second
//! claim of a live name is refused), sends `Start`, units, and `Gone` when it ends. A stream
//! whose publisher is gone waits `grace_period` for a new one, which continues the same
//! playlists after a discontinuity; after that its playlists end and, `ended_retention` later,
//! its objects are removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use media::{AacConfig, AccessUnit, AvcConfig};
use package::{LivePackager, ObjectKind, PackagerConfig, PackagerOutput};
use serde::Serialize;

use crate::store::{CachePolicy, SegmentStore, StoreChange, StoredObject, content_type};

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
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            packaging: PackagerConfig::default(),
            grace_period: Duration::from_secs(10),
            ended_retention: Duration::from_secs(300),
            queue_depth: 8192,
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
        video: Option<AvcConfig>,
        audio: Option<AacConfig>,
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
        self.started = true;
        // Start is rare and must not be lost: block if the queue is full.
        let _ = self.hub.commands.send(HubCommand::Start {
            stream: self.stream.clone(),
            publisher: self.id,
            origin: self.origin.clone(),
            video,
            audio,
        });
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

/// One stream as the control API shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StreamStatus {
    pub name: String,
    /// `live`, `reconnecting` (publisher gone, within the grace period) or `ended`.
    pub state: &'static str,
    /// Who publishes, e.g. `rtmp 127.0.0.1:50312` or `demo`.
    pub origin: String,
    /// Unix ms when the current publisher started.
    pub started_at_ms: i64,
    /// Input bitrate over the last few seconds, in kbit/s.
    pub input_kbps: u64,
    pub renditions: Vec<RenditionStatus>,
}

/// One rendition (rung) of a stream.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RenditionStatus {
    pub name: &'static str,
    pub codec: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
}

impl RenditionStatus {
    fn of(video: Option<&AvcConfig>, audio: Option<&AacConfig>) -> Vec<RenditionStatus> {
        let mut out = Vec::new();
        if let Some(v) = video {
            out.push(RenditionStatus {
                name: "source",
                codec: v.codec_string(),
                width: Some(v.width),
                height: Some(v.height),
                frame_rate: v
                    .frame_rate
                    .filter(|(_, den)| *den > 0)
                    .map(|(num, den)| f64::from(num) / f64::from(den)),
                sample_rate: None,
                channels: None,
            });
        }
        if let Some(a) = audio {
            out.push(RenditionStatus {
                name: "audio",
                codec: a.codec_string(),
                width: None,
                height: None,
                frame_rate: None,
                sample_rate: Some(a.sample_rate),
                channels: Some(a.channels),
            });
        }
        out
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
    let hub = StreamHub {
        config,
        store,
        commands: rx,
        streams: HashMap::new(),
        status,
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
    video: Option<AvcConfig>,
    audio: Option<AacConfig>,
    /// Payload bytes per second over a short window, for the input bitrate.
    meter: RateMeter,
    pending: Vec<StoreChange>,
}

/// The hub loop; see the module docs.
#[derive(Debug)]
pub struct StreamHub {
    config: HubConfig,
    store: Arc<SegmentStore>,
    commands: Receiver<HubCommand>,
    streams: HashMap<Arc<str>, Stream>,
    status: Arc<ArcSwap<Vec<StreamStatus>>>,
}

const STATUS_INTERVAL: Duration = Duration::from_secs(1);

impl StreamHub {
    /// Runs until every [`HubHandle`] is dropped.
    pub fn run(mut self) {
        let mut next_status = Instant::now();
        loop {
            let now = Instant::now();
            let deadline = self
                .next_deadline()
                .map_or(next_status, |d| d.min(next_status));
            match self
                .commands
                .recv_timeout(deadline.saturating_duration_since(now))
            {
                Ok(command) => {
                    self.handle(command);
                    // Drain what else is queued before the bookkeeping below: one turn per unit
                    // would rebuild the status list far more often than anyone reads it.
                    for _ in 0..4096 {
                        let Ok(command) = self.commands.try_recv() else {
                            break;
                        };
                        self.handle(command);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
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
            .filter_map(|s| match s.phase {
                Phase::Live => None,
                Phase::Grace { until } => Some(until),
                Phase::Ended { remove_at } => Some(remove_at),
            })
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
            } => self.handle_start(stream, publisher, origin, video, audio),
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
                s.packager.handle_publisher_gone(unix_ms());
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
        video: Option<AvcConfig>,
        audio: Option<AacConfig>,
    ) {
        let now_ms = unix_ms();
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
                    meter: RateMeter::default(),
                    pending: Vec::new(),
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
            video = video.as_ref().map(|v| format!("{} {}x{}", v.codec_string(), v.width, v.height)),
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
        s.packager.handle_start(now_ms, video, audio);
        self.flush(&stream);
        self.publish_status();
    }

    fn handle_timers(&mut self, now: Instant) {
        let mut changed = false;
        let names: Vec<Arc<str>> = self.streams.keys().cloned().collect();
        for name in names {
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
                    self.streams.remove(&name);
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
                renditions: RenditionStatus::of(s.video.as_ref(), s.audio.as_ref()),
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
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_url_safe() {
        assert!(valid_stream_name("demo"));
        assert!(valid_stream_name("cam-1_hd.v2"));
        for bad in ["", ".", "..", "a/b", "a b", "x?y", "ü"] {
            assert!(!valid_stream_name(bad), "{bad:?}");
        }
        assert!(!valid_stream_name(&"a".repeat(129)));
    }

    #[test]
    fn second_claim_of_a_live_name_is_refused_until_released() {
        let (handle, _hub) = hub(HubConfig::default(), Arc::new(SegmentStore::new()));
        let first = handle.claim("cam", "test").expect("free name");
        assert_eq!(
            handle.claim("cam", "test").unwrap_err(),
            ClaimError::NameInUse("cam".into())
        );
        assert_eq!(
            handle.claim("a/b", "test").unwrap_err(),
            ClaimError::BadName("a/b".into())
        );
        drop(first);
        assert!(handle.claim("cam", "test").is_ok());
    }

    fn avc() -> AvcConfig {
        AvcConfig {
            record: bytes::Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 2, 0x67, 0x64]),
            sps: vec![bytes::Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f])],
            pps: vec![bytes::Bytes::from_static(&[0x68, 0xeb])],
            profile_idc: 0x64,
            constraint_flags: 0,
            level_idc: 0x1f,
            width: 320,
            height: 180,
            frame_rate: Some((30, 1)),
        }
    }

    fn frame(index: i64) -> AccessUnit {
        let keyframe = index % 30 == 0;
        AccessUnit {
            codec: media::Codec::H264,
            pts: index * 3000,
            dts: index * 3000,
            keyframe,
            payload: bytes::Bytes::from(vec![0, 0, 0, 2, if keyframe { 0x65 } else { 0x41 }, 0x80]),
        }
    }

    fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn playlist(store: &SegmentStore) -> String {
        store
            .lookup("/live/cam/source/index.m3u8")
            .map(|o| String::from_utf8_lossy(&o.body).into_owned())
            .unwrap_or_default()
    }

    /// The life cycle through the real packager: publish, drop, return within the grace
    /// period (same playlist, a discontinuity), drop again, end, removal.
    #[test]
    fn publisher_life_cycle_reaches_the_store() {
        let store = Arc::new(SegmentStore::new());
        let config = HubConfig {
            packaging: PackagerConfig {
                target_duration: Duration::from_secs(1),
                window: 10,
            },
            grace_period: Duration::from_millis(300),
            ended_retention: Duration::from_millis(300),
            queue_depth: 1024,
        };
        let (handle, stream_hub) = hub(config, store.clone());
        let thread = std::thread::spawn(move || stream_hub.run());

        let mut claim = handle.claim("cam", "test 1").expect("free");
        claim.start(Some(avc()), None);
        (0..95).for_each(|i| claim.send_unit(frame(i)));
        wait_until("three 1 s segments", || {
            playlist(&store).matches(".m4s").count() >= 3
        });
        let object = store.lookup("/live/cam/source/0.m4s").expect("segment 0");
        assert_eq!(object.content_type, content_type::MP4_VIDEO);
        assert_eq!(object.cache, CachePolicy::Immutable);
        let master = store.lookup("/live/cam/index.m3u8").expect("multivariant");
        assert_eq!(master.content_type, content_type::HLS_PLAYLIST);
        assert!(matches!(master.cache, CachePolicy::Live { .. }));
        wait_until("status", || {
            handle
                .status()
                .iter()
                .any(|s| s.name == "cam" && s.state == "live")
        });

        drop(claim);
        wait_until("reconnecting", || {
            handle
                .status()
                .iter()
                .any(|s| s.name == "cam" && s.state == "reconnecting")
        });
        let mut claim = handle.claim("cam", "test 2").expect("released on drop");
        claim.start(Some(avc()), None);
        (0..65).for_each(|i| claim.send_unit(frame(i)));
        wait_until("a discontinuity", || {
            playlist(&store).contains("#EXT-X-DISCONTINUITY")
        });
        assert!(playlist(&store).contains("#EXT-X-MEDIA-SEQUENCE:0"));
        drop(claim);
        wait_until("the end", || playlist(&store).contains("#EXT-X-ENDLIST"));
        wait_until("removal", || !store.has_stream("cam"));
        wait_until("status cleared", || handle.status().is_empty());
        drop(handle);
        thread.join().expect("hub ends when every handle is gone");
    }

    #[test]
    fn rate_meter_averages_full_seconds() {
        let mut meter = RateMeter::default();
        let t0 = Instant::now();
        for s in 0..4u64 {
            for _ in 0..10 {
                meter.add(t0 + Duration::from_millis(s * 1000 + 50), 12_500);
            }
        }
        // 125,000 bytes per second = 1,000 kbit/s.
        assert_eq!(meter.kbps(t0 + Duration::from_millis(4_100)), 1000);
        assert_eq!(RateMeter::default().kbps(t0), 0);
    }
}
