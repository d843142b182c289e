//! RTSP camera pull (`[[source]] url = "rtsp://..."`) through the `retina` client: DESCRIBE,
//! SETUP of the first H.264 or H.265 video stream and the first AAC (`mpeg4-generic`,
//! RFC 3640) audio stream, or else the first G.711 one (`PCMU` / `PCMA`, RFC 3551 §4.5.14),
//! which is transcoded to AAC on this thread ([`crate::audio_transcode`]), PLAY (RFC 2326), RTP over TCP-interleaved (RFC 2326 §10.12, the
//! default) or UDP. retina does the RTP depacketization (RFC 6184 for H.264, RFC 7798 for
//! H.265) and Basic/Digest authentication (RFC 2617) with the credentials taken from the URL.
//!
//! All RTSP sources share one thread, `cc-rtsp`, pinned to the ingest core and running a
//! current-thread tokio runtime with one task per source (the same arrangement as
//! [`crate::udp`], for the same reason: the RTMP listener's runtime is private to it).
//!
//! Life cycle of a source: connecting (DESCRIBE/SETUP/PLAY, bounded by the source's timeout)
//! → live (claim + start in the hub once the tracks' parameters are known) → on any error, or
//! when no RTP frame came for `timeout`, the claim is dropped (the hub's grace period keeps the
//! playlist going and marks the discontinuity when the source comes back), the error is logged
//! and the source is retried after an exponential backoff (1 s doubling to 30 s, ±25 % jitter
//! so that a rack of cameras behind one switch do not reconnect in step). A session that went
//! live resets the backoff. Each step is reported to the source's [`SourceHandle`] (state,
//! last error, next attempt; frames, bytes, access units, RTP packets lost, errors by kind).
//!
//! Frames: retina is asked for ISO/IEC 14496-15 framing (4-byte NAL lengths, no in-band
//! parameter sets); parameter set and AUD NAL units that a camera sends in-band anyway are
//! removed, since parameter sets travel in the track's [`AvcConfig`] / [`HevcConfig`] (built
//! from retina's `avcC` / `hvcC` record). Video timestamps are the RTP timestamps rescaled to
//! 90 kHz, audio timestamps to the AAC sample rate. RTP carries no decode time: video dts
//! comes from a reorder window over the pts ([`DtsFromPts`]), audio has `dts = pts`.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use media::{
    AacConfig, AccessUnit, AvcConfig, Codec, HevcConfig, TrackConfig, VIDEO_TIMESCALE, rescale,
};
use retina::client::{
    Credentials, Demuxed, PlayOptions, Session, SessionOptions, SetupOptions, Transport,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParametersCodec};
use tokio::time::Instant;

use crate::audio_transcode::SourceAudioTranscoder;
use crate::hub::{HubHandle, PublisherClaim};
use crate::sources::SourceHandle;
use libav::SourceAudioCodec;

mod dts;
pub use dts::{DEFAULT_REORDER_DEPTH, DtsFromPts, DtsNote, MAX_REORDER_DEPTH, avc_reorder_depth};

/// First retry delay after a failure.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The backoff doubles up to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How RTP reaches us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RtspTransport {
    /// Interleaved in the RTSP TCP connection: passes NAT and firewalls, no loss.
    #[default]
    Tcp,
    /// RTP/RTCP on UDP port pairs.
    Udp,
}

impl std::str::FromStr for RtspTransport {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "tcp" => Ok(RtspTransport::Tcp),
            "udp" => Ok(RtspTransport::Udp),
            other => Err(format!("transport {other:?}: tcp or udp")),
        }
    }
}

/// One `[[source]]` with an `rtsp://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspSourceConfig {
    /// The stream name it publishes.
    pub name: String,
    /// The URL without credentials: what is requested, and what logs show.
    pub url: url::Url,
    /// From the URL's user info, percent-decoded.
    pub credentials: Option<(String, String)>,
    pub transport: RtspTransport,
    /// No RTP frame for this long ends the session (and bounds connecting).
    pub timeout: Duration,
}

impl std::fmt::Debug for RtspSourceConfig {
    // The password stays out of debug output and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspSourceConfig")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("transport", &self.transport)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RtspSourceConfig {
    /// The URL as the API shows it: the user name if any, the password as `***`.
    pub fn redacted_url(&self) -> String {
        let mut url = self.url.clone();
        if let Some((user, _)) = &self.credentials {
            // Cannot fail: the URL has a host (checked when it was read).
            let _ = url.set_username(user);
            let _ = url.set_password(Some("***"));
        }
        url.to_string()
    }

    /// Reads `rtsp://[USER:PASS@]HOST[:PORT]/PATH`.
    pub fn from_url(
        name: &str,
        url: &str,
        transport: RtspTransport,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if parsed.scheme() != "rtsp" {
            return Err("not an rtsp:// URL (rtsps:// is not supported)".into());
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("no host".into());
        }
        let credentials = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            let user = percent_decode(parsed.username())?;
            let password = percent_decode(parsed.password().unwrap_or(""))?;
            // retina refuses URLs with user info; they go in SessionOptions instead.
            parsed
                .set_username("")
                .and_then(|()| parsed.set_password(None))
                .map_err(|()| "cannot remove the credentials from the URL".to_owned())?;
            Some((user, password))
        };
        Ok(RtspSourceConfig {
            name: name.to_owned(),
            url: parsed,
            credentials,
            transport,
            timeout,
        })
    }
}

/// Decodes `%XX` escapes of a URL's user info.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in the URL's user info at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL's user info is not UTF-8".to_owned())
}

/// The delay before retry: `backoff` scaled by a factor in [0.75, 1.25) picked by `random`
/// (uniform in [0, 1)).
pub fn jittered(backoff: Duration, random: f64) -> Duration {
    backoff.mul_f64(0.75 + 0.5 * random.clamp(0.0, 1.0))
}

/// The backoff after `backoff` failed again.
pub fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// Removes parameter set and AUD NAL units (H.264: SPS 7, PPS 8, AUD 9; H.265: VPS 32, SPS 33,
/// PPS 34, AUD 35) from 4-byte length-prefixed data, checking the framing on the way.
pub fn strip_parameter_sets(codec: Codec, data: &[u8]) -> Result<Vec<u8>, String> {
    let out_of_band = |nal: &[u8]| match codec {
        Codec::H265 => matches!(media::hevc::nal_unit_type(nal), Some(32..=35)),
        _ => nal.first().is_some_and(|b| matches!(b & 0x1f, 7..=9)),
    };
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while !rest.is_empty() {
        let (prefix, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| format!("{} bytes left, not a 4-byte NAL length", rest.len()))?;
        let length = u32::from_be_bytes(*prefix) as usize;
        let nal = after
            .get(..length)
            .filter(|nal| !nal.is_empty())
            .ok_or_else(|| {
                format!(
                    "NAL length {length} with {} bytes left (or empty)",
                    after.len()
                )
            })?;
        rest = &after[length..];
        if !out_of_band(nal) {
            out.extend_from_slice(prefix);
            out.extend_from_slice(nal);
        }
    }
    Ok(out)
}

/// The video track of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
enum VideoTrack {
    Avc(AvcConfig),
    Hevc(HevcConfig),
}

impl VideoTrack {
    fn codec(&self) -> Codec {
        match self {
            VideoTrack::Avc(_) => Codec::H264,
            VideoTrack::Hevc(_) => Codec::H265,
        }
    }

    fn describe(&self) -> String {
        match self {
            VideoTrack::Avc(c) => format!("{} {}x{}", c.codec_string(), c.width, c.height),
            VideoTrack::Hevc(c) => format!("{} {}x{}", c.codec_string(), c.width, c.height),
        }
    }

    /// The reorder window to start with (see [`DtsFromPts`]): the depth the H.264 SPS
    /// announces, or a guess that may grow.
    fn dts_window(&self) -> DtsFromPts {
        let known = match self {
            VideoTrack::Avc(c) => c.sps.first().and_then(|sps| avc_reorder_depth(sps)),
            VideoTrack::Hevc(_) => None,
        };
        match known {
            Some(depth) => DtsFromPts::with_known_depth(depth, self.frame_duration()),
            None => DtsFromPts::new(DEFAULT_REORDER_DEPTH, self.frame_duration()),
        }
    }

    fn frame_duration(&self) -> i64 {
        let rate = match self {
            VideoTrack::Avc(c) => c.frame_rate,
            VideoTrack::Hevc(c) => c.frame_rate,
        };
        match rate {
            Some((num, den)) if num > 0 => {
                i64::from(VIDEO_TIMESCALE) * i64::from(den) / i64::from(num)
            }
            // 30 fps, the usual camera rate.
            _ => 3000,
        }
    }
}

/// Whether 4-byte length-prefixed H.265 data holds an IRAP picture's NAL unit (types 16-23,
/// H.265 §7.4.2.2).
pub fn contains_hevc_irap(data: &[u8]) -> bool {
    let mut rest = data;
    while let Some((prefix, after)) = rest.split_first_chunk::<4>() {
        let length = u32::from_be_bytes(*prefix) as usize;
        let Some(nal) = after.get(..length) else {
            return false;
        };
        if media::hevc::nal_unit_type(nal).is_some_and(media::hevc::is_irap) {
            return true;
        }
        rest = &after[length..];
    }
    false
}

/// Runs every RTSP source until the process ends. Runs on the calling thread.
pub fn run(sources: Vec<(RtspSourceConfig, SourceHandle)>, hub: HubHandle) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let tasks: Vec<_> = sources
            .into_iter()
            .map(|(config, board)| tokio::task::spawn_local(serve(config, hub.clone(), board)))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
    Ok(())
}

/// One source, forever: connect, stream, back off, again.
async fn serve(config: RtspSourceConfig, hub: HubHandle, board: SourceHandle) {
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write(config.name.as_bytes());
    let mut backoff = INITIAL_BACKOFF;
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        if attempt > 1 {
            board.count_reconnect();
        }
        board.set_connecting();
        tracing::info!(source = %config.name, url = %config.url, attempt, state = "connecting", "RTSP source connecting");
        let mut session = RtspSession::new(&config, hub.clone(), board.clone());
        let failure = session.run().await;
        session.flush_audio();
        let was_live = session.claim.is_some();
        if let Some(mut claim) = session.claim.take() {
            claim.set_end_reason(format!("RTSP: {}", failure.message));
        }
        board.count_error(failure.kind, 1);
        if was_live {
            backoff = INITIAL_BACKOFF;
        }
        random.write_u64(attempt);
        let delay = jittered(
            backoff,
            (random.finish() >> 11) as f64 / (1u64 << 53) as f64,
        );
        board.set_retrying(&failure.message, delay);
        tracing::warn!(
            source = %config.name,
            url = %config.url,
            state = "retrying",
            was_live,
            last_error = %failure.message,
            next_attempt_secs = format_args!("{:.1}", delay.as_secs_f32()),
            "RTSP source down"
        );
        tokio::time::sleep(delay).await;
        if !was_live {
            backoff = next_backoff(backoff);
        }
    }
}

/// Why a session ended: an error kind for the source's counters and a message for people.
#[derive(Debug)]
struct Failure {
    /// `rtsp_error` (the server or the connection failed, auth included), `rtsp_timeout` (no
    /// answer while connecting), `rtp_timeout` (no frame while playing), `rtsp_unsupported`
    /// (nothing we can take in the SDP), `rtsp_ended` (the server ended the session),
    /// `claim_refused` (the stream name is taken).
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

/// One RTSP session, from DESCRIBE to its end.
struct RtspSession<'a> {
    config: &'a RtspSourceConfig,
    hub: HubHandle,
    board: SourceHandle,
    video_stream: Option<usize>,
    audio_stream: Option<usize>,
    video: Option<VideoTrack>,
    audio: Option<AacConfig>,
    /// Set when the audio stream is G.711: its transcoder to AAC.
    audio_transcoder: Option<SourceAudioTranscoder>,
    /// Reused for the AAC units one G.711 frame completes.
    transcoded: Vec<AccessUnit>,
    claim: Option<PublisherClaim>,
    dts: Option<DtsFromPts>,
    bad_frames: u64,
    reorder_faults: u64,
}

impl<'a> RtspSession<'a> {
    fn new(config: &'a RtspSourceConfig, hub: HubHandle, board: SourceHandle) -> Self {
        RtspSession {
            config,
            hub,
            board,
            video_stream: None,
            audio_stream: None,
            video: None,
            audio: None,
            audio_transcoder: None,
            transcoded: Vec::new(),
            claim: None,
            dts: None,
            bad_frames: 0,
            reorder_faults: 0,
        }
    }

    /// Runs until the session fails; returns why.
    async fn run(&mut self) -> Failure {
        let timeout = self.config.timeout;
        let mut demuxed = match tokio::time::timeout(timeout, self.connect()).await {
            Ok(Ok(demuxed)) => demuxed,
            Ok(Err(e)) => return e,
            Err(_) => {
                return Failure::new(
                    "rtsp_timeout",
                    format!("no answer within {} s", timeout.as_secs_f32()),
                );
            }
        };
        let mut deadline = Instant::now() + timeout;
        loop {
            let item = match tokio::time::timeout_at(deadline, demuxed.next()).await {
                Err(_) => {
                    return Failure::new(
                        "rtp_timeout",
                        format!("no RTP frame for {} s", timeout.as_secs_f32()),
                    );
                }
                Ok(None) => return Failure::new("rtsp_ended", "the server ended the session"),
                Ok(Some(Err(e))) => return Failure::new("rtsp_error", e.to_string()),
                Ok(Some(Ok(item))) => item,
            };
            let unit = match item {
                CodecItem::VideoFrame(frame) if Some(frame.stream_id()) == self.video_stream => {
                    deadline = Instant::now() + timeout;
                    self.board.count_input(1, frame.data().len() as u64);
                    self.board.count_error("rtp_lost", u64::from(frame.loss()));
                    if frame.has_new_parameters() || self.video.is_none() {
                        self.update_parameters(&demuxed);
                    }
                    self.video_unit(&frame)
                }
                CodecItem::AudioFrame(frame) if Some(frame.stream_id()) == self.audio_stream => {
                    deadline = Instant::now() + timeout;
                    self.board.count_input(1, frame.data().len() as u64);
                    self.board.count_error("rtp_lost", u64::from(frame.loss()));
                    let Some(sample_rate) = self.audio.as_ref().map(|a| a.sample_rate) else {
                        continue;
                    };
                    let timestamp = frame.timestamp();
                    let pts = rescale(
                        timestamp.elapsed(),
                        timestamp.clock_rate().get(),
                        sample_rate,
                    );
                    if let Some(transcoder) = self.audio_transcoder.as_mut() {
                        // G.711: the AAC keeps its rate, so the RTP clock carries over.
                        let mut aac = std::mem::take(&mut self.transcoded);
                        transcoder.transcode_payload(pts, frame.data(), &mut aac);
                        if self.claim.is_none()
                            && self.ready()
                            && let Err(e) = self.go_live()
                        {
                            return e;
                        }
                        for unit in aac.drain(..) {
                            self.send(unit);
                        }
                        self.transcoded = aac;
                        continue;
                    }
                    Some(AccessUnit {
                        codec: Codec::Aac,
                        pts,
                        dts: pts,
                        keyframe: true,
                        payload: Bytes::copy_from_slice(frame.data()),
                    })
                }
                _ => None,
            };
            // Live before the unit is sent: the first frame is usually the first keyframe.
            if self.claim.is_none()
                && self.ready()
                && let Err(e) = self.go_live()
            {
                return e;
            }
            if let Some(unit) = unit {
                self.send(unit);
            }
        }
    }

    /// A video frame as an access unit: parameter sets out, dts from the reorder window.
    fn video_unit(&mut self, frame: &retina::codec::VideoFrame) -> Option<AccessUnit> {
        let codec = self.video.as_ref()?.codec();
        let timestamp = frame.timestamp();
        let pts = rescale(
            timestamp.elapsed(),
            timestamp.clock_rate().get(),
            VIDEO_TIMESCALE,
        );
        let payload = match strip_parameter_sets(codec, frame.data()) {
            Ok(payload) if !payload.is_empty() => payload,
            Ok(_) => return None,
            Err(e) => {
                self.count_bad_frame(&e);
                return None;
            }
        };
        // retina flags IDR pictures only; for H.265 every IRAP picture (CRA and BLA too: x265
        // and most encoders use CRA after the first IDR) starts a GOP and is a sync sample.
        let keyframe = frame.is_random_access_point()
            || (codec == Codec::H265 && contains_hevc_irap(&payload));
        let (dts, note) = self
            .dts
            .as_mut()
            .map_or((pts, DtsNote::InOrder), |window| window.dts(pts));
        match note {
            DtsNote::InOrder => {}
            DtsNote::ReorderedDeeper => {
                self.reorder_faults += 1;
                self.board.count_error("dts_reorder", 1);
                if self.reorder_faults.is_power_of_two() {
                    tracing::warn!(source = %self.config.name, pts, dts, window = self.dts.as_ref().map(DtsFromPts::depth), "RTSP source: pictures reordered deeper than the dts window; window grown");
                }
            }
            DtsNote::TimestampJump => {
                self.board.count_error("pts_jump", 1);
                tracing::info!(source = %self.config.name, pts, "RTSP source: video timestamps went back; dts window restarted");
            }
        }
        Some(AccessUnit {
            codec,
            pts,
            dts,
            keyframe,
            payload: Bytes::from(payload),
        })
    }

    /// DESCRIBE, SETUP, PLAY.
    async fn connect(&mut self) -> Result<Demuxed, Failure> {
        let rtsp_error = |e: retina::Error| Failure::new("rtsp_error", e.to_string());
        let credentials = self
            .config
            .credentials
            .as_ref()
            .map(|(username, password)| Credentials {
                username: username.clone(),
                password: password.clone(),
            });
        let options = SessionOptions::default()
            .creds(credentials)
            .user_agent(format!("corecast/{}", env!("CARGO_PKG_VERSION")));
        let mut session = Session::describe(self.config.url.clone(), options)
            .await
            .map_err(rtsp_error)?;
        let streams = session.streams();
        self.video_stream = streams.iter().position(|s| {
            s.media() == "video"
                && (s.encoding_name().eq_ignore_ascii_case("h264")
                    || s.encoding_name().eq_ignore_ascii_case("h265"))
        });
        let audio_of = |encoding: &str| {
            streams.iter().position(|s| {
                s.media() == "audio" && s.encoding_name().eq_ignore_ascii_case(encoding)
            })
        };
        // AAC when the camera offers it; else G.711, transcoded.
        let g711 = [
            ("pcmu", SourceAudioCodec::G711MuLaw),
            ("pcma", SourceAudioCodec::G711ALaw),
        ]
        .into_iter()
        .find_map(|(name, codec)| audio_of(name).map(|index| (index, codec)));
        self.audio_stream = audio_of("mpeg4-generic").or(g711.map(|(index, _)| index));
        let g711 = g711.filter(|&(index, _)| Some(index) == self.audio_stream);
        if self.video_stream.is_none() && self.audio_stream.is_none() {
            let found: Vec<String> = streams
                .iter()
                .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                .collect();
            return Err(Failure::new(
                "rtsp_unsupported",
                format!(
                    "no H.264 or H.265 video or AAC or G.711 audio stream in the SDP (found: {})",
                    found.join(", ")
                ),
            ));
        }
        let transport = match self.config.transport {
            RtspTransport::Tcp => Transport::Tcp(Default::default()),
            RtspTransport::Udp => Transport::Udp(Default::default()),
        };
        for index in [self.video_stream, self.audio_stream].into_iter().flatten() {
            session
                .setup(
                    index,
                    SetupOptions::default()
                        .transport(transport.clone())
                        .frame_format(FrameFormat::MP4),
                )
                .await
                .map_err(rtsp_error)?;
        }
        if let Some((index, codec)) = g711 {
            let stream = session.streams().get(index);
            let sample_rate = stream.map_or(8000, |s| s.clock_rate_hz());
            let channels = stream
                .and_then(|s| s.channels())
                .map_or(1, |c| u8::try_from(c.get()).unwrap_or(u8::MAX));
            let mut transcoder = SourceAudioTranscoder::new(&self.config.name);
            match transcoder.open(codec, sample_rate, channels) {
                Ok(config) => {
                    self.audio = Some(config);
                    self.audio_transcoder = Some(transcoder);
                }
                Err(reason) => {
                    tracing::warn!(source = %self.config.name, %reason, "RTSP source: audio left out");
                    self.audio_stream = None;
                }
            }
        } else if let Some(index) = self.audio_stream
            && let Some(ParametersRef::Audio(parameters)) =
                session.streams().get(index).and_then(|s| s.parameters())
        {
            match AacConfig::from_asc(parameters.extra_data()) {
                Ok(config) => self.audio = Some(config),
                Err(e) => {
                    tracing::warn!(source = %self.config.name, error = %e, "RTSP source: AAC config unreadable, audio left out");
                    self.audio_stream = None;
                }
            }
        }
        let playing = session
            .play(PlayOptions::default())
            .await
            .map_err(rtsp_error)?;
        playing.demuxed().map_err(rtsp_error)
    }

    /// Reads the video parameters retina holds; a change mid-stream restarts the stream.
    fn update_parameters(&mut self, demuxed: &Demuxed) {
        let Some(ParametersRef::Video(parameters)) = self
            .video_stream
            .and_then(|index| demuxed.streams().get(index))
            .and_then(|stream| stream.parameters())
        else {
            return;
        };
        let parsed = match parameters.codec_params() {
            VideoParametersCodec::H264 { .. } => AvcConfig::from_record(parameters.extra_data())
                .map(VideoTrack::Avc)
                .map_err(|e| format!("avcC from retina: {e}")),
            VideoParametersCodec::H265 { .. } => HevcConfig::from_record(parameters.extra_data())
                .map(VideoTrack::Hevc)
                .map_err(|e| format!("hvcC from retina: {e}")),
            other => Err(format!("unexpected video parameters {other:?}")),
        };
        match parsed {
            Ok(track) if self.video.as_ref() != Some(&track) => {
                let window = track.dts_window();
                tracing::info!(source = %self.config.name, video = %track.describe(), reorder_depth = window.depth(), "RTSP source: video parameters");
                self.dts = Some(window);
                self.video = Some(track);
                if let Some(claim) = self.claim.as_mut() {
                    start(claim, self.video.as_ref(), self.audio.as_ref());
                }
            }
            Ok(_) => {}
            Err(e) => self.count_bad_frame(&e),
        }
    }

    /// Every set-up track has its parameters.
    fn ready(&self) -> bool {
        (self.video_stream.is_none() || self.video.is_some())
            && (self.audio_stream.is_none() || self.audio.is_some())
    }

    fn go_live(&mut self) -> Result<(), Failure> {
        let origin = format!("rtsp {}", self.config.url);
        let mut claim = self
            .hub
            .claim(&self.config.name, &origin)
            .map_err(|e| Failure::new("claim_refused", format!("cannot publish: {e}")))?;
        claim.set_audio_source(
            self.audio_transcoder
                .as_ref()
                .and_then(SourceAudioTranscoder::source),
        );
        start(&mut claim, self.video.as_ref(), self.audio.as_ref());
        self.board.set_live();
        tracing::info!(
            source = %self.config.name,
            url = %self.config.url,
            state = "live",
            video = self.video.as_ref().map(VideoTrack::describe),
            audio = self.audio.as_ref().map(|a| format!("{} {} Hz {} ch", a.codec_string(), a.sample_rate, a.channels)),
            "RTSP source live"
        );
        self.claim = Some(claim);
        Ok(())
    }

    fn send(&self, unit: AccessUnit) {
        if let Some(claim) = &self.claim {
            claim.send_unit(unit);
            self.board.count_access_units(1);
        }
    }

    /// The session ended: the AAC frames still inside the G.711 transcoder go out.
    fn flush_audio(&mut self) {
        let Some(transcoder) = self.audio_transcoder.as_mut() else {
            return;
        };
        let mut aac = Vec::new();
        transcoder.flush(&mut aac);
        for unit in aac {
            self.send(unit);
        }
    }

    fn count_bad_frame(&mut self, error: &str) {
        self.bad_frames += 1;
        self.board.count_error("bad_frame", 1);
        if self.bad_frames.is_power_of_two() {
            tracing::warn!(source = %self.config.name, bad_frames = self.bad_frames, error, "RTSP source: malformed frame dropped");
        }
    }
}

/// Starts (or restarts) the claimed stream with the session's tracks.
fn start(claim: &mut PublisherClaim, video: Option<&VideoTrack>, audio: Option<&AacConfig>) {
    let video = video.map(|track| match track {
        VideoTrack::Avc(config) => TrackConfig::Avc(config.clone()),
        VideoTrack::Hevc(config) => TrackConfig::Hevc(config.clone()),
    });
    claim.start_tracks(video, audio.cloned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Duration::from_secs(10);
        let c = RtspSourceConfig::from_url(
            "cam1",
            "rtsp://admin:p%40ss@10.0.0.5:554/Streaming/101",
            RtspTransport::Tcp,
            t,
        )
        .unwrap();
        assert_eq!(c.url.as_str(), "rtsp://10.0.0.5:554/Streaming/101");
        assert_eq!(c.credentials, Some(("admin".into(), "p@ss".into())));
        assert!(!format!("{c:?}").contains("p@ss"));
        let c = RtspSourceConfig::from_url("c", "rtsp://cam/live", RtspTransport::Udp, t).unwrap();
        assert_eq!(c.credentials, None);
        assert_eq!(c.transport, RtspTransport::Udp);
        for (url, expected) in [
            ("udp://1.2.3.4:5", "not an rtsp"),
            ("rtsps://cam/x", "not an rtsp"),
            ("rtsp:/x", "host"),
            ("rtsp://u:%zz@cam/x", "%-escape"),
            ("not a url", "not a URL"),
        ] {
            let err = RtspSourceConfig::from_url("c", url, RtspTransport::Tcp, t).unwrap_err();
            assert!(err.contains(expected), "{url}: {err}");
        }
        assert_eq!("udp".parse(), Ok(RtspTransport::Udp));
        assert!("http".parse::<RtspTransport>().is_err());
    }

    #[test]
    fn parameter_sets_and_delimiters_are_stripped() {
        let data = [
            0, 0, 0, 2, 0x09, 0xf0, // AUD
            0, 0, 0, 3, 0x67, 0x42, 0x00, // SPS
            0, 0, 0, 2, 0x68, 0xce, // PPS
            0, 0, 0, 2, 0x06, 0x05, // SEI: kept
            0, 0, 0, 3, 0x65, 0x88, 0x84, // IDR slice
        ];
        assert_eq!(
            strip_parameter_sets(Codec::H264, &data).unwrap(),
            [0, 0, 0, 2, 0x06, 0x05, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );
        assert!(strip_parameter_sets(Codec::H264, &[0, 0, 0, 5, 0x65]).is_err());
        assert!(strip_parameter_sets(Codec::H264, &[0, 0, 0]).is_err());
        assert!(strip_parameter_sets(Codec::H264, &[0, 0, 0, 0]).is_err());
        assert_eq!(
            strip_parameter_sets(Codec::H264, &[]).unwrap(),
            Vec::<u8>::new()
        );
        let hevc = [
            0, 0, 0, 3, 0x46, 0x01, 0x50, // AUD (35)
            0, 0, 0, 3, 0x40, 0x01, 0x0c, // VPS (32)
            0, 0, 0, 3, 0x42, 0x01, 0x01, // SPS (33)
            0, 0, 0, 3, 0x44, 0x01, 0xc1, // PPS (34)
            0, 0, 0, 3, 0x4e, 0x01, 0x05, // prefix SEI (39): kept
            0, 0, 0, 3, 0x26, 0x01, 0xaf, // IDR_W_RADL (19)
        ];
        assert_eq!(
            strip_parameter_sets(Codec::H265, &hevc).unwrap(),
            [0, 0, 0, 3, 0x4e, 0x01, 0x05, 0, 0, 0, 3, 0x26, 0x01, 0xaf]
        );
        assert!(strip_parameter_sets(Codec::H265, &[0, 0, 0, 1, 0x26]).is_ok());
        assert!(contains_hevc_irap(&hevc));
        // A CRA (21) is IRAP; a TRAIL_R (1) after a prefix SEI is not.
        assert!(contains_hevc_irap(&[0, 0, 0, 3, 0x2a, 0x01, 0xaf]));
        assert!(!contains_hevc_irap(&[
            0, 0, 0, 3, 0x4e, 0x01, 0x05, 0, 0, 0, 3, 0x02, 0x01, 0xd0
        ]));
        assert!(!contains_hevc_irap(&[0, 0, 0, 9, 0x2a]));
        assert!(!contains_hevc_irap(&[]));
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut backoff = INITIAL_BACKOFF;
        let mut seen = Vec::new();
        for _ in 0..7 {
            seen.push(backoff.as_secs());
            backoff = next_backoff(backoff);
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(
            jittered(Duration::from_secs(4), 0.0),
            Duration::from_secs(3)
        );
        assert_eq!(
            jittered(Duration::from_secs(4), 0.5),
            Duration::from_secs(4)
        );
        assert!(jittered(Duration::from_secs(4), 0.999) < Duration::from_secs(5));
    }
}
