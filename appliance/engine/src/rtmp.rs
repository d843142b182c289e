//! The RTMP listener: drives one [`RtmpSession`] per TCP connection on the ingest core's
//! current-thread tokio runtime. Sockets live here; the protocol lives in `ingest`.
//!
//! MP3 audio is transcoded to AAC here, on the ingest core ([`crate::audio_transcode`]). MP3
//! has no sequence header, so its format is only known at the first audio tag, which may come
//! after the first video frames: a stream whose audio is not known at its first unit holds its
//! units (up to [`AUDIO_WAIT_MS`] of media time) for the audio to show up, so that it does
//! not start without audio and restart with it a moment later. A publisher whose `onMetaData`
//! lists no audio track (ffmpeg `-an`) starts at once.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::time::{Duration, Instant};

use ingest::rtmp::{PublishRejection, RtmpEvent, RtmpSession};
use media::{AacConfig, AccessUnit, TrackConfig, TrackKind, VIDEO_TIMESCALE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::audio_transcode::{SourceAudioTranscoder, needs_transcode};
use crate::hub::{ClaimError, HubHandle, PublisherClaim};

/// How much video (by dts) a stream holds while it waits for its audio track's parameters
/// before it starts without audio.
pub const AUDIO_WAIT_MS: i64 = 1000;
/// At most this many units are held meanwhile.
const MAX_HELD_UNITS: usize = 256;

/// Settings of the RTMP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtmpConfig {
    pub listen: SocketAddr,
    /// The RTMP application publishers must use (`rtmp://host/<app>/<stream>`).
    pub app: String,
    /// A connection that sends nothing for this long is closed (handshake included).
    pub read_timeout: Duration,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            app: "live".to_owned(),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// Binds the RTMP port (so a bind error surfaces before any thread starts).
pub fn bind(config: &RtmpConfig) -> std::io::Result<StdTcpListener> {
    let listener = StdTcpListener::bind(config.listen)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves RTMP publishers until the process ends. Runs on the calling thread.
pub fn run(listener: StdTcpListener, config: RtmpConfig, hub: HubHandle) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::from_std(listener)?;
        loop {
            let (socket, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on a failing accept.
                    tracing::warn!(error = %e, "RTMP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let config = config.clone();
            let hub = hub.clone();
            tokio::task::spawn_local(async move {
                let mut connection = Connection::new(peer, config, hub);
                if let Err(reason) = connection.serve(socket).await {
                    match &connection.claim {
                        Some(claim) => {
                            tracing::warn!(%peer, stream = claim.stream(), %reason, "RTMP publisher dropped")
                        }
                        None => tracing::warn!(%peer, %reason, "RTMP session dropped"),
                    }
                    if let Some(claim) = connection.claim.as_mut() {
                        claim.set_end_reason(reason);
                    }
                }
            });
        }
    })
}

/// One RTMP connection's state beside its protocol session.
struct Connection {
    peer: SocketAddr,
    config: RtmpConfig,
    hub: HubHandle,
    session: RtmpSession,
    claim: Option<PublisherClaim>,
    video: Option<TrackConfig>,
    audio: Option<AacConfig>,
    /// Open while the publisher's audio is MP3.
    audio_transcoder: SourceAudioTranscoder,
    /// Units that came before the stream started, waiting for the audio track.
    held: VecDeque<AccessUnit>,
    /// Reused for the AAC units one MP3 unit completes.
    transcoded: Vec<AccessUnit>,
    out: Vec<u8>,
    close_after_flush: bool,
}

impl Connection {
    fn new(peer: SocketAddr, config: RtmpConfig, hub: HubHandle) -> Self {
        Connection {
            peer,
            config,
            hub,
            session: RtmpSession::new(),
            claim: None,
            video: None,
            audio: None,
            audio_transcoder: SourceAudioTranscoder::new(""),
            held: VecDeque::new(),
            transcoded: Vec::new(),
            out: Vec::with_capacity(4096),
            close_after_flush: false,
        }
    }

    /// Runs the session; `Err` carries the reason it ended abnormally.
    async fn serve(&mut self, mut socket: TcpStream) -> Result<(), String> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let read = tokio::time::timeout(self.config.read_timeout, socket.read(&mut buf)).await;
            let n = match read {
                Err(_) => {
                    return Err(format!(
                        "no data for {} s",
                        self.config.read_timeout.as_secs()
                    ));
                }
                Ok(Err(e)) => return Err(format!("read error: {e}")),
                Ok(Ok(0)) => {
                    if let Some(claim) = self.claim.as_mut() {
                        claim.set_end_reason("publisher closed the connection");
                    }
                    return Ok(());
                }
                Ok(Ok(n)) => n,
            };
            self.session
                .handle_bytes(Instant::now(), &buf[..n])
                .map_err(|e| e.to_string())?;
            self.pump();
            if !self.out.is_empty() {
                socket
                    .write_all(&self.out)
                    .await
                    .map_err(|e| format!("write error: {e}"))?;
                self.out.clear();
            }
            if self.close_after_flush {
                let _ = socket.shutdown().await;
                return Ok(());
            }
        }
    }

    /// Drains the session: bytes to send into `self.out`, events to the hub.
    fn pump(&mut self) {
        loop {
            while self.session.poll_transmit(&mut self.out).is_some() {}
            let Some(event) = self.session.poll_event() else {
                return;
            };
            self.handle_event(event);
        }
    }

    fn handle_event(&mut self, event: RtmpEvent) {
        match event {
            RtmpEvent::PublishRequested { app, stream_key } => self.handle_publish(app, stream_key),
            RtmpEvent::VideoConfig(config) => {
                let changed = self.video.as_ref() != Some(&config);
                self.video = Some(config);
                self.restart_if(changed, TrackKind::Video);
            }
            RtmpEvent::AudioConfig(config) => {
                self.audio_transcoder.reset();
                self.set_audio(Some(config));
            }
            RtmpEvent::AudioFormat(format) => match self.audio_transcoder.set_format(format) {
                Ok(config) => self.set_audio(Some(config)),
                Err(reason) => {
                    tracing::warn!(peer = %self.peer, %reason, "RTMP audio dropped");
                    self.set_audio(None);
                }
            },
            RtmpEvent::Media(unit) if needs_transcode(unit.codec) => {
                let mut aac = std::mem::take(&mut self.transcoded);
                self.audio_transcoder.transcode(&unit, &mut aac);
                for unit in aac.drain(..) {
                    self.handle_unit(unit);
                }
                self.transcoded = aac;
            }
            RtmpEvent::Media(unit) => self.handle_unit(unit),
            RtmpEvent::Unpublished => {
                self.held.clear();
                self.audio_transcoder.reset();
                if let Some(mut claim) = self.claim.take() {
                    claim.set_end_reason("publisher sent unpublish");
                }
            }
            other => tracing::debug!(peer = %self.peer, event = ?other, "RTMP event ignored"),
        }
    }

    fn set_audio(&mut self, config: Option<AacConfig>) {
        let changed = self.audio != config;
        self.audio = config;
        self.restart_if(changed, TrackKind::Audio);
        let waiting = self.claim.as_ref().is_some_and(|c| !c.is_started()) && !self.held.is_empty();
        if waiting && self.audio.is_some() {
            self.start();
        }
    }

    /// One unit for the hub (AAC audio, or video).
    fn handle_unit(&mut self, unit: AccessUnit) {
        let Some(claim) = self.claim.as_ref() else {
            return;
        };
        if !claim.is_started() {
            // The stream starts with the tracks whose parameters came before the first media
            // (encoders send AAC and video sequence headers first), or, when the audio's are
            // missing (MP3 has none), once audio shows up or a second of video went by.
            if self.audio.is_none()
                && self.session.announced_audio() != Some(false)
                && !self.waited_for_audio(&unit)
            {
                self.held.push_back(unit);
                return;
            }
            self.start();
        }
        self.send(unit);
    }

    /// True when the held units (and `next`) span [`AUDIO_WAIT_MS`] of video, or fill the
    /// buffer: time to start without audio.
    fn waited_for_audio(&self, next: &AccessUnit) -> bool {
        let first_video = self
            .held
            .iter()
            .find(|u| u.kind() == TrackKind::Video)
            .map(|u| u.dts);
        let waited = match (first_video, next.kind()) {
            (Some(first), TrackKind::Video) => {
                (next.dts - first) * 1000 >= AUDIO_WAIT_MS * i64::from(VIDEO_TIMESCALE)
            }
            _ => false,
        };
        waited || self.held.len() >= MAX_HELD_UNITS
    }

    /// Starts the stream with the tracks known now and sends what was held.
    fn start(&mut self) {
        let Some(claim) = self.claim.as_mut() else {
            return;
        };
        claim.set_audio_source(self.audio_transcoder.source());
        claim.start_tracks(self.video.clone(), self.audio.clone());
        for unit in std::mem::take(&mut self.held) {
            self.send(unit);
        }
    }

    fn send(&self, unit: AccessUnit) {
        let Some(claim) = self.claim.as_ref() else {
            return;
        };
        let has_track = match unit.kind() {
            TrackKind::Video => self.video.is_some(),
            TrackKind::Audio => self.audio.is_some(),
        };
        if has_track && claim.is_started() {
            claim.send_unit(unit);
        }
    }

    fn handle_publish(&mut self, app: String, key: String) {
        if self.claim.is_some() {
            tracing::warn!(peer = %self.peer, stream = %key, "refused: connection already publishes");
            self.session.reject_publish(PublishRejection::BadName);
            self.close_after_flush = true;
            return;
        }
        if app != self.config.app {
            tracing::warn!(peer = %self.peer, %app, stream = %key, expected = %self.config.app, "publish refused: unknown application");
            self.session.reject_publish(PublishRejection::BadName);
            self.close_after_flush = true;
            return;
        }
        let origin = format!("rtmp {}", self.peer);
        match self.hub.claim(&key, &origin) {
            Ok(claim) => {
                tracing::info!(peer = %self.peer, stream = %key, "RTMP publish accepted");
                self.audio_transcoder.set_stream(&key);
                self.session.accept_publish();
                self.claim = Some(claim);
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, stream = %key, reason = %e, "publish refused");
                self.session.reject_publish(match e {
                    ClaimError::NameInUse(_) => PublishRejection::NameInUse,
                    _ => PublishRejection::BadName,
                });
                self.close_after_flush = true;
            }
        }
    }

    /// New parameters for a track once the stream runs: restart it (a discontinuity).
    fn restart_if(&mut self, changed: bool, kind: TrackKind) {
        let Some(claim) = self.claim.as_mut() else {
            return;
        };
        if changed && claim.is_started() {
            tracing::info!(peer = %self.peer, stream = claim.stream(), track = ?kind, "track parameters changed mid-stream");
            claim.set_audio_source(self.audio_transcoder.source());
            claim.start_tracks(self.video.clone(), self.audio.clone());
        }
    }
}
