//! One SRT publisher's MPEG-TS: the demuxer's tracks into the hub, the way `udp.rs` does it
//! for UDP feeds (claim, go live when the tracks' parameters are known, hold the first units
//! until then, restart on new parameters), with the SRT connection as the session: the claim
//! ends when the connection does.

use std::collections::VecDeque;
use std::time::Instant;

use ingest::ts::{TsCounters, TsDemuxer, TsEvent, stream_type_name};
use media::{AacConfig, AccessUnit, AvcConfig, TrackKind};

use crate::hub::{ClaimError, HubHandle, PublisherClaim};
use crate::sources::SourceHandle;
use crate::udp::{MAX_HELD_UNITS, STARTUP_WAIT};

/// The demuxer and hub side of one SRT connection that publishes.
#[derive(Debug)]
pub struct TsPublisher {
    stream: String,
    origin: String,
    hub: HubHandle,
    board: SourceHandle,
    demuxer: TsDemuxer,
    expect_video: bool,
    expect_audio: bool,
    video: Option<AvcConfig>,
    audio: Option<AacConfig>,
    first_config_at: Option<Instant>,
    claim: Option<PublisherClaim>,
    held: VecDeque<AccessUnit>,
    /// Demuxer counters already added to the board.
    published: TsCounters,
    unsupported_logged: Vec<(u16, u8)>,
    /// Last time a message arrived.
    pub last_input: Instant,
}

/// Why a publisher cannot go on.
#[derive(Debug)]
pub enum PublishError {
    /// The name has another publisher (RTMP, another SRT connection, a configured source).
    Claim(ClaimError),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Claim(e) => write!(f, "{e}"),
        }
    }
}

impl TsPublisher {
    pub fn new(
        stream: &str,
        origin: String,
        hub: HubHandle,
        board: SourceHandle,
        now: Instant,
    ) -> Self {
        TsPublisher {
            stream: stream.to_owned(),
            origin,
            hub,
            board,
            demuxer: TsDemuxer::new(),
            expect_video: false,
            expect_audio: false,
            video: None,
            audio: None,
            first_config_at: None,
            claim: None,
            held: VecDeque::new(),
            published: TsCounters::default(),
            unsupported_logged: Vec::new(),
            last_input: now,
        }
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn is_live(&self) -> bool {
        self.claim.as_ref().is_some_and(PublisherClaim::is_started)
    }

    /// One SRT message (whole TS packets, usually seven).
    pub fn handle_message(&mut self, now: Instant, data: &[u8]) -> Result<(), PublishError> {
        self.last_input = now;
        self.board.count_input(1, data.len() as u64);
        self.demuxer.handle_bytes(data);
        while let Some(event) = self.demuxer.poll_event() {
            self.handle_event(now, event)?;
        }
        self.publish_errors();
        Ok(())
    }

    /// The connection ended: hand out what the demuxer holds and end the claim.
    pub fn finish(&mut self, now: Instant, reason: &str) {
        self.demuxer.handle_end_of_stream();
        while let Some(event) = self.demuxer.poll_event() {
            if self.handle_event(now, event).is_err() {
                break;
            }
        }
        self.publish_errors();
        if let Some(mut claim) = self.claim.take() {
            claim.set_end_reason(reason.to_owned());
        }
    }

    /// Demuxer counters since the connection began.
    pub fn counters(&self) -> &TsCounters {
        self.demuxer.counters()
    }

    fn handle_event(&mut self, now: Instant, event: TsEvent) -> Result<(), PublishError> {
        match event {
            TsEvent::Program(program) => {
                self.expect_video = program.video_pid.is_some();
                self.expect_audio = program.audio_pid.is_some();
                tracing::debug!(stream = %self.stream, ?program, "SRT program map");
            }
            TsEvent::VideoConfig(config) => {
                let changed = self.video.as_ref() != Some(&config);
                self.video = Some(config);
                self.first_config_at.get_or_insert(now);
                self.restart_if(changed, TrackKind::Video);
            }
            TsEvent::AudioConfig(config) => {
                let changed = self.audio.as_ref() != Some(&config);
                self.audio = Some(config);
                self.first_config_at.get_or_insert(now);
                self.restart_if(changed, TrackKind::Audio);
            }
            TsEvent::Media(unit) => {
                if !self.go_live(now)? {
                    // Kept for when the stream starts: the first keyframe is often among them.
                    if self.held.len() >= MAX_HELD_UNITS {
                        self.held.pop_front();
                    }
                    self.held.push_back(unit);
                    return Ok(());
                }
                for unit in std::mem::take(&mut self.held).into_iter().chain([unit]) {
                    self.send(unit);
                }
            }
            TsEvent::Scte35 { pid, section, .. } => {
                tracing::debug!(stream = %self.stream, pid, bytes = section.len(), "SCTE-35 section");
            }
            TsEvent::Unsupported {
                pid,
                stream_type,
                reason,
            } => {
                if !self.unsupported_logged.contains(&(pid, stream_type)) {
                    self.unsupported_logged.push((pid, stream_type));
                    tracing::warn!(
                        stream = %self.stream,
                        pid,
                        stream_type = format_args!("0x{stream_type:02x}"),
                        codec = stream_type_name(stream_type),
                        "SRT publisher: stream not read: {reason}"
                    );
                }
            }
            other => tracing::debug!(stream = %self.stream, event = ?other, "TS event ignored"),
        }
        Ok(())
    }

    fn send(&self, unit: AccessUnit) {
        let has_track = match unit.kind() {
            TrackKind::Video => self.video.is_some(),
            TrackKind::Audio => self.audio.is_some(),
        };
        if let Some(claim) = &self.claim
            && has_track
        {
            claim.send_unit(unit);
            self.board.count_access_units(1);
        }
    }

    /// Claims and starts the stream once its tracks are known; true when it is live.
    fn go_live(&mut self, now: Instant) -> Result<bool, PublishError> {
        if self.is_live() {
            return Ok(true);
        }
        let complete = (self.video.is_some() || !self.expect_video)
            && (self.audio.is_some() || !self.expect_audio);
        let waited = self
            .first_config_at
            .is_some_and(|first| now.duration_since(first) >= STARTUP_WAIT);
        if !(complete || waited) || (self.video.is_none() && self.audio.is_none()) {
            return Ok(false);
        }
        if self.claim.is_none() {
            let claim = self
                .hub
                .claim(&self.stream, &self.origin)
                .map_err(PublishError::Claim)?;
            self.claim = Some(claim);
        }
        let Some(claim) = self.claim.as_mut() else {
            return Ok(false);
        };
        claim.start(self.video.clone(), self.audio.clone());
        self.board.set_live();
        tracing::info!(
            stream = %self.stream,
            origin = %self.origin,
            video = self.video.as_ref().map(|v| format!("{} {}x{}", v.codec_string(), v.width, v.height)),
            audio = self.audio.as_ref().map(|a| format!("{} {} Hz {} ch", a.codec_string(), a.sample_rate, a.channels)),
            "SRT publisher live"
        );
        Ok(true)
    }

    /// New parameters for a track once the stream runs: restart it (a discontinuity).
    fn restart_if(&mut self, changed: bool, kind: TrackKind) {
        let Some(claim) = self.claim.as_mut() else {
            return;
        };
        if changed && claim.is_started() {
            tracing::info!(stream = %self.stream, track = ?kind, "track parameters changed mid-stream");
            claim.start(self.video.clone(), self.audio.clone());
        }
    }

    /// Adds the demuxer's new error counts to the board (one lock, only when there are some).
    fn publish_errors(&mut self) {
        let now = *self.demuxer.counters();
        let then = self.published;
        let dropped = |c: &TsCounters| c.errors() + c.duplicate_packets + c.scrambled_packets;
        if dropped(&now) == dropped(&then) {
            return;
        }
        for (kind, delta) in [
            ("ts_sync_loss", now.sync_losses - then.sync_losses),
            (
                "ts_transport_error",
                now.transport_errors - then.transport_errors,
            ),
            (
                "ts_malformed_packet",
                now.malformed_packets - then.malformed_packets,
            ),
            (
                "ts_continuity",
                now.continuity_errors - then.continuity_errors,
            ),
            (
                "ts_duplicate",
                now.duplicate_packets - then.duplicate_packets,
            ),
            (
                "ts_scrambled",
                now.scrambled_packets - then.scrambled_packets,
            ),
            ("ts_bad_section", now.bad_sections - then.bad_sections),
            ("pes_error", now.bad_pes - then.bad_pes),
            ("bad_video", now.bad_video - then.bad_video),
            ("bad_audio", now.bad_audio - then.bad_audio),
        ] {
            self.board.count_error(kind, delta);
        }
        self.published = now;
    }
}
