//! One MPEG-TS feed into the hub, whatever carries it: a UDP source (`udp.rs`) and an SRT
//! publisher (`srt/publish.rs`) both hand their bytes to a [`TsFeed`], which demuxes them
//! ([`ingest::ts::TsDemuxer`]: H.264, HEVC, AAC in ADTS, MPEG-1/2 audio and AC-3, SCTE-35
//! sections) and publishes the tracks under the stream's name. MPEG audio and AC-3 are
//! transcoded to AAC here, once, before the hub sees them ([`crate::audio_transcode`]); the
//! stream's audio track is the AAC. What differs between the carriers stays with them: what
//! ends a session (a silence for UDP, the connection closing for SRT), UDP's sender filter,
//! and what a taken stream name means ([`ClaimPolicy`]).
//!
//! Going live: the claim is made and the stream started once every track the PMT announced
//! has its parameters, or, [`STARTUP_WAIT`] after the first one did, with the tracks that
//! have shown up. Access units that come before then are held (up to [`MAX_HELD_UNITS`]) and
//! sent first, so the first keyframe is not lost when it comes before the first audio frame.
//! New parameters for a track once the stream runs restart it (the hub marks a
//! discontinuity). The demuxer's error counts reach the feed's [`SourceHandle`] as deltas
//! after each call that added any.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ingest::ts::{TsCounters, TsDemuxer, TsEvent, stream_type_name};
use media::{AacConfig, AccessUnit, TrackConfig, TrackKind};

use crate::audio_transcode::{SourceAudioTranscoder, needs_transcode};
use crate::hub::{ClaimError, HubHandle, PublisherClaim};
use crate::sources::SourceHandle;

/// How long a feed waits for a track the PMT announced before going live without it.
pub const STARTUP_WAIT: Duration = Duration::from_secs(3);
/// Access units held while a feed waits for its last track's config (the first video
/// keyframe often comes before the first audio frame): a few seconds of a feed.
pub const MAX_HELD_UNITS: usize = 2048;

/// What a feed does when its stream name has another publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimPolicy {
    /// Log it, keep holding units, and try again after this long: a configured source has
    /// nobody to tell but the log.
    Retry(Duration),
    /// Return the error, so that the caller can end its session (an SRT connection).
    Fail,
}

/// The demuxer and hub side of one MPEG-TS session. No sockets; the clock comes in as `now`.
#[derive(Debug)]
pub struct TsFeed {
    stream: String,
    /// Who publishes, as the API shows it (`udp 10.0.0.5:4000 -> 239.1.1.1:5000`).
    origin: String,
    /// What the log calls the session (`UDP source`, `SRT publisher`).
    label: &'static str,
    hub: HubHandle,
    board: SourceHandle,
    claim_policy: ClaimPolicy,
    demuxer: TsDemuxer,
    /// Tracks the PMT announced.
    expect_video: bool,
    expect_audio: bool,
    video: Option<TrackConfig>,
    audio: Option<AacConfig>,
    /// Open while the feed's audio is MPEG audio or AC-3.
    audio_transcoder: SourceAudioTranscoder,
    /// Reused for the AAC units one source audio frame completes.
    transcoded: Vec<AccessUnit>,
    first_config_at: Option<Instant>,
    claim: Option<PublisherClaim>,
    next_claim_attempt: Option<Instant>,
    /// Units that came before the stream could go live, sent when it does.
    held: VecDeque<AccessUnit>,
    /// Demuxer counters already added to the board.
    published: TsCounters,
    unsupported_logged: Vec<(u16, u8)>,
}

impl TsFeed {
    pub fn new(
        stream: &str,
        origin: String,
        label: &'static str,
        hub: HubHandle,
        board: SourceHandle,
        claim_policy: ClaimPolicy,
    ) -> Self {
        TsFeed {
            stream: stream.to_owned(),
            origin,
            label,
            hub,
            board,
            claim_policy,
            demuxer: TsDemuxer::new(),
            expect_video: false,
            expect_audio: false,
            video: None,
            audio: None,
            audio_transcoder: SourceAudioTranscoder::new(stream),
            transcoded: Vec::new(),
            first_config_at: None,
            claim: None,
            next_claim_attempt: None,
            held: VecDeque::new(),
            published: TsCounters::default(),
            unsupported_logged: Vec::new(),
        }
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Changes the origin a later claim gives the hub (UDP learns its sender late).
    pub fn set_origin(&mut self, origin: String) {
        self.origin = origin;
    }

    /// True once the stream has been claimed and started.
    pub fn is_live(&self) -> bool {
        self.claim.as_ref().is_some_and(PublisherClaim::is_started)
    }

    /// The video track's parameters, once known.
    pub fn video(&self) -> Option<&TrackConfig> {
        self.video.as_ref()
    }

    /// The audio track's parameters, once known (the AAC it is transcoded to, for a source
    /// whose audio is not AAC).
    pub fn audio(&self) -> Option<&AacConfig> {
        self.audio.as_ref()
    }

    /// Demuxer counters since the feed began.
    pub fn counters(&self) -> &TsCounters {
        self.demuxer.counters()
    }

    /// Whole or partial TS packets as they arrived (a datagram, an SRT message). Counted on
    /// the board as one input packet. An error only under [`ClaimPolicy::Fail`].
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) -> Result<(), ClaimError> {
        self.board.count_input(1, data.len() as u64);
        self.demuxer.handle_bytes(data);
        let mut result = Ok(());
        while let Some(event) = self.demuxer.poll_event() {
            if let Err(e) = self.handle_event(now, event) {
                result = Err(e);
                break;
            }
        }
        self.publish_errors();
        result
    }

    /// The session ended: hands out what the demuxer holds and ends the claim with `reason`.
    /// Returns whether the feed had claimed its stream.
    pub fn finish(&mut self, now: Instant, reason: &str) -> bool {
        self.demuxer.handle_end_of_stream();
        while let Some(event) = self.demuxer.poll_event() {
            if self.handle_event(now, event).is_err() {
                break;
            }
        }
        let mut tail = Vec::new();
        self.audio_transcoder.flush(&mut tail);
        for unit in tail {
            if self.handle_unit(now, unit).is_err() {
                break;
            }
        }
        self.audio_transcoder.reset();
        self.publish_errors();
        match self.claim.take() {
            Some(mut claim) => {
                claim.set_end_reason(reason.to_owned());
                true
            }
            None => false,
        }
    }

    fn handle_event(&mut self, now: Instant, event: TsEvent) -> Result<(), ClaimError> {
        match event {
            TsEvent::Program(program) => {
                self.expect_video = program.video_pid.is_some();
                self.expect_audio = program.audio_pid.is_some();
                tracing::debug!(stream = %self.stream, feed = self.label, ?program, "program map");
            }
            TsEvent::VideoConfig(avc) => self.set_video(now, TrackConfig::Avc(avc)),
            TsEvent::HevcConfig(hevc) => self.set_video(now, TrackConfig::Hevc(hevc)),
            TsEvent::AudioConfig(config) => {
                self.audio_transcoder.reset();
                self.set_audio(now, config);
            }
            TsEvent::AudioFormat(format) => match self.audio_transcoder.set_format(format) {
                Ok(config) => self.set_audio(now, config),
                Err(reason) => {
                    // Without a track the feed goes live STARTUP_WAIT after its video.
                    tracing::warn!(stream = %self.stream, feed = self.label, %reason, "audio dropped");
                }
            },
            TsEvent::Media(unit) if needs_transcode(unit.codec) => {
                let mut aac = std::mem::take(&mut self.transcoded);
                self.audio_transcoder.transcode(&unit, &mut aac);
                let mut result = Ok(());
                for unit in aac.drain(..) {
                    if result.is_ok() {
                        result = self.handle_unit(now, unit);
                    }
                }
                self.transcoded = aac;
                result?;
            }
            TsEvent::Media(unit) => self.handle_unit(now, unit)?,
            TsEvent::Scte35 { pid, section, .. } => {
                // Kept by the demuxer for the packager, which does not take them yet.
                tracing::debug!(stream = %self.stream, feed = self.label, pid, bytes = section.len(), "SCTE-35 section");
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
                        "{}: stream not read: {reason}",
                        self.label
                    );
                }
            }
            other => {
                tracing::debug!(stream = %self.stream, feed = self.label, event = ?other, "TS event ignored")
            }
        }
        Ok(())
    }

    fn set_audio(&mut self, now: Instant, config: AacConfig) {
        let changed = self.audio.as_ref() != Some(&config);
        self.audio = Some(config);
        self.first_config_at.get_or_insert(now);
        self.restart_if(changed, TrackKind::Audio);
    }

    /// One unit for the hub: sent when the stream is live, held until it is.
    fn handle_unit(&mut self, now: Instant, unit: AccessUnit) -> Result<(), ClaimError> {
        if !self.go_live(now)? {
            // Kept for when the stream starts: dropping them would lose the first keyframe,
            // and with it the first GOP.
            if self.held.len() >= MAX_HELD_UNITS {
                self.held.pop_front();
            }
            self.held.push_back(unit);
            return Ok(());
        }
        for unit in std::mem::take(&mut self.held).into_iter().chain([unit]) {
            self.send(unit);
        }
        Ok(())
    }

    fn set_video(&mut self, now: Instant, config: TrackConfig) {
        let changed = self.video.as_ref() != Some(&config);
        self.video = Some(config);
        self.first_config_at.get_or_insert(now);
        self.restart_if(changed, TrackKind::Video);
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
    fn go_live(&mut self, now: Instant) -> Result<bool, ClaimError> {
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
            if self.next_claim_attempt.is_some_and(|at| now < at) {
                return Ok(false);
            }
            match self.hub.claim(&self.stream, &self.origin) {
                Ok(claim) => {
                    self.claim = Some(claim);
                    self.next_claim_attempt = None;
                }
                Err(e) => match self.claim_policy {
                    ClaimPolicy::Fail => return Err(e),
                    ClaimPolicy::Retry(retry) => {
                        tracing::warn!(stream = %self.stream, reason = %e, retry_secs = retry.as_secs(), "{} cannot publish", self.label);
                        self.next_claim_attempt = Some(now + retry);
                        return Ok(false);
                    }
                },
            }
        }
        let Some(claim) = self.claim.as_mut() else {
            return Ok(false);
        };
        claim.set_audio_source(self.audio_transcoder.source());
        claim.start_tracks(self.video.clone(), self.audio.clone());
        self.board.set_live();
        tracing::info!(
            stream = %self.stream,
            origin = %self.origin,
            video = self.video.as_ref().map(|v| {
                let (width, height) = v.video_size().unwrap_or_default();
                format!("{} {width}x{height}", v.codec_string())
            }),
            audio = self.audio.as_ref().map(|a| format!("{} {} Hz {} ch", a.codec_string(), a.sample_rate, a.channels)),
            "{} live",
            self.label
        );
        Ok(true)
    }

    /// New parameters for a track once the stream runs: restart it (a discontinuity).
    fn restart_if(&mut self, changed: bool, kind: TrackKind) {
        let Some(claim) = self.claim.as_mut() else {
            return;
        };
        if changed && claim.is_started() {
            tracing::info!(stream = %self.stream, feed = self.label, track = ?kind, "track parameters changed mid-stream");
            claim.set_audio_source(self.audio_transcoder.source());
            claim.start_tracks(self.video.clone(), self.audio.clone());
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::hub::{HubConfig, hub};
    use crate::sources::{SourceBoard, SourceState};
    use crate::store::SegmentStore;

    const PMT_PID: u16 = 0x1000;
    const VIDEO_PID: u16 = 0x100;

    /// Transport packets of one payload (PES or pointer_field + section), the last one padded
    /// with an adaptation field; `counter` is the PID's continuity counter.
    fn packets(out: &mut Vec<u8>, pid: u16, counter: &mut u8, data: &[u8]) {
        for (index, chunk) in data.chunks(184).enumerate() {
            *counter = (*counter + 1) & 0x0f;
            let start = if index == 0 { 0x40 } else { 0 };
            let mut packet = vec![0x47, start | (pid >> 8) as u8, pid as u8, 0x10 | *counter];
            if chunk.len() < 184 {
                packet[3] |= 0x20;
                let adaptation = 183 - chunk.len();
                packet.push(adaptation as u8);
                if adaptation > 0 {
                    packet.push(0);
                    packet.resize(packet.len() + adaptation - 1, 0xff);
                }
            }
            packet.extend_from_slice(chunk);
            out.extend_from_slice(&packet);
        }
    }

    fn section(out: &mut Vec<u8>, pid: u16, counter: &mut u8, body: &[u8]) {
        let mut data = vec![0];
        data.extend_from_slice(body);
        data.extend_from_slice(&media::crc32_mpeg2(body).to_be_bytes());
        packets(out, pid, counter, &data);
    }

    /// x265's first five pictures (the media crate's capture) as TS: PAT, a PMT with one HEVC
    /// stream (stream_type 0x24), one picture per PES, 25 fps.
    fn hevc_ts() -> Vec<u8> {
        let stream: &[u8] = include_bytes!("../../media/tests/data/x265_320x240_main.hevc");
        let mut pictures: Vec<Vec<u8>> = Vec::new();
        for nal in media::annex_b::nal_units(stream) {
            let kind = media::hevc::nal_unit_type(nal).unwrap();
            // A first slice starts a picture unless parameter sets or SEI already opened one.
            let opened = pictures.last().is_some_and(|p| {
                media::annex_b::nal_units(p).all(|n| media::hevc::nal_unit_type(n) >= Some(32))
            });
            if pictures.is_empty() || (kind < 32 && nal[2] & 0x80 != 0 && !opened) {
                pictures.push(Vec::new());
            }
            let picture = pictures.last_mut().unwrap();
            picture.extend_from_slice(&[0, 0, 0, 1]);
            picture.extend_from_slice(nal);
        }
        assert_eq!(pictures.len(), 5);
        let (mut out, mut pat, mut pmt, mut video) = (Vec::new(), 15, 15, 15);
        section(
            &mut out,
            0,
            &mut pat,
            &[0x00, 0xb0, 0x0d, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0x00],
        );
        let (pid_high, pid_low) = (0xe0 | (VIDEO_PID >> 8) as u8, VIDEO_PID as u8);
        section(
            &mut out,
            PMT_PID,
            &mut pmt,
            &[
                0x02, 0xb0, 0x12, 0, 1, 0xc1, 0, 0, pid_high, pid_low, 0xf0, 0, 0x24, pid_high,
                pid_low, 0xf0, 0,
            ],
        );
        for (index, picture) in pictures.iter().enumerate() {
            let pts = 3600 * (index as u64 + 1);
            let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5];
            pes.extend_from_slice(&[
                0x21 | (((pts >> 30) as u8 & 0x07) << 1),
                (pts >> 22) as u8,
                (((pts >> 15) as u8) << 1) | 1,
                (pts >> 7) as u8,
                ((pts as u8) << 1) | 1,
            ]);
            pes.extend_from_slice(picture);
            packets(&mut out, VIDEO_PID, &mut video, &pes);
        }
        out
    }

    fn feed(policy: ClaimPolicy) -> (TsFeed, HubHandle, SourceHandle) {
        let (hub, _stream_hub) = hub(HubConfig::default(), Arc::new(SegmentStore::new()));
        let board = SourceBoard::new().register("udp", "feed", "feed", "udp://127.0.0.1:5000");
        let feed = TsFeed::new(
            "feed",
            "udp test".into(),
            "UDP source",
            hub.clone(),
            board.clone(),
            policy,
        );
        (feed, hub, board)
    }

    #[test]
    fn hevc_goes_live_as_an_hevc_track_with_every_unit() {
        let (mut feed, _hub, board) = feed(ClaimPolicy::Fail);
        let now = Instant::now();
        // In datagrams of seven packets, as ffmpeg sends them.
        for datagram in hevc_ts().chunks(7 * 188) {
            feed.handle_bytes(now, datagram).unwrap();
        }
        // The last picture is handed out when the stream ends (no next PES start).
        assert!(feed.finish(now, "test over"));
        let Some(TrackConfig::Hevc(hevc)) = feed.video() else {
            panic!("video track {:?}", feed.video());
        };
        assert_eq!(hevc.codec_string(), "hvc1.1.6.L60.90");
        assert_eq!((hevc.width, hevc.height), (320, 240));
        assert!(feed.audio().is_none());
        let status = board.status();
        assert_eq!(status.state, SourceState::Live);
        assert_eq!(status.counters.access_units, 5);
        assert_eq!(status.counters.errors_total, 0, "{:?}", status.counters);
        assert_eq!(feed.counters().errors(), 0);
    }

    #[test]
    fn a_taken_name_fails_or_is_retried_while_units_are_held() {
        let ts = hevc_ts();
        let now = Instant::now();

        let (mut failing, hub, _) = feed(ClaimPolicy::Fail);
        let taken = hub.claim("feed", "rtmp elsewhere").unwrap();
        let err = failing.handle_bytes(now, &ts).unwrap_err();
        assert_eq!(err, ClaimError::NameInUse("feed".into()));
        assert!(!failing.is_live());
        drop(taken);

        let retry = Duration::from_secs(5);
        let (mut retrying, hub, board) = feed(ClaimPolicy::Retry(retry));
        let taken = hub.claim("feed", "rtmp elsewhere").unwrap();
        retrying.handle_bytes(now, &ts).unwrap();
        assert!(!retrying.is_live());
        // The demuxer hands out the last pictures only at the end of the stream.
        let held = retrying.held.len();
        assert!((1..5).contains(&held), "{held} units held");
        assert!(
            retrying
                .next_claim_attempt
                .is_some_and(|at| at == now + retry)
        );
        drop(taken);
        // The next unit after the retry time goes live, and the held ones are sent first: all
        // five reach the hub.
        retrying.finish(now + retry, "test over");
        assert_eq!(board.status().state, SourceState::Live);
        assert_eq!(board.status().counters.access_units, 5);
        assert!(retrying.held.is_empty());
    }
}
