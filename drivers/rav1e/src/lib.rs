//! AV1 encoding with rav1e (pure Rust with nasm-built assembly) behind
//! [`media::encode::VideoEncoder`].
//!
//! Configuration for live ladders:
//! - `low_latency = true`: no frame reordering and no hidden (alt-ref) frames, so every temporal
//!   unit holds exactly one shown frame, units come out in input order and dts equals pts.
//! - Scene detection is off and the key-frame interval is unbounded unless
//!   [`Rav1eSettings::keyint_max`] says otherwise: key frames come where the caller forces them
//!   (`FrameTypeOverride::Key`), i.e. at the segment boundaries of the ladder.
//! - RDO lookahead is [`Rav1eSettings::lookahead_frames`] (1 by default): the number of pictures
//!   rav1e holds before it emits the first unit, i.e. added latency.
//! - Threads: rav1e gets its own rayon pool of [`Rav1eSettings::threads`] threads (never the
//!   global pool, which would take every core), and at least that many tiles: tiles are what let
//!   rav1e use more than one thread (shared/research/deps.md §1.3).
//!
//! Output: each [`AccessUnit`] is one temporal unit in the low-overhead OBU format (AV1 spec
//! §5.2, every OBU with a size field) with the temporal delimiter OBU removed (as the `av01`
//! sample format of the AV1-ISOBMFF binding §2.4 wants). Key frames carry the sequence header
//! OBU in front of the KEY_FRAME. The track config is built from the sequence header, which
//! rav1e only writes into a key frame's unit, so opening the encoder encodes one grey picture in
//! a throw-away context with the same configuration to learn it (a few ms at 360p, once per
//! open); the first real key frame's sequence header is checked against it.
//!
//! Not done here: 10-bit input, HDR metadata, run-time reconfiguration, two-pass.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;
use media::av1::temporal_unit_payload;
use media::encode::{
    RawVideoFrame, VideoEncoder, check_frame_rate, check_in_range, check_keyint_max,
    check_picture_size,
};
use media::{AccessUnit, Av1Config, Codec, MediaError, TrackConfig};
use rav1e::prelude::{
    ChromaSampling, Config, Context, EncoderConfig, EncoderStatus, FrameParameters, FrameType,
    FrameTypeOverride, Opaque, PixelRange, Rational, SceneDetectionSpeed, SpeedSettings,
};

/// The linked rav1e's version (e.g. `0.8.1 (v0.8.1)`), for `corecast probe`.
pub fn rav1e_version() -> String {
    rav1e::version::full()
}

/// Encoder threads we allow at most: the core plan gives a transcode worker one or two cores.
pub const MAX_THREADS: u32 = 16;
/// rav1e's fastest speed preset; 0 is the slowest.
pub const FASTEST_SPEED: u8 = 10;

/// Errors from the rav1e driver; each says which setting or call was at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rav1eError {
    #[error("rav1e setting {setting}: {reason}")]
    InvalidSettings {
        setting: &'static str,
        reason: String,
    },
    #[error("rav1e refused the configuration for {width}x{height}: {reason}")]
    Config {
        width: u32,
        height: u32,
        reason: String,
    },
    #[error("rav1e {call} failed: {status}")]
    Encoder {
        call: &'static str,
        status: EncoderStatus,
    },
    #[error("rav1e's probe encode made no unit to read the sequence header from")]
    MissingSequenceHeader,
    #[error("rav1e's output does not parse: {0}")]
    Bitstream(#[from] MediaError),
    #[error("rav1e changed its sequence header after open (frame at pts {pts})")]
    SequenceHeaderChanged { pts: i64 },
    #[error("rav1e returned a unit for no submitted picture (input frame {frame})")]
    UnknownFrame { frame: u64 },
    #[error("rav1e got a {got_width}x{got_height} picture, it was opened for {width}x{height}")]
    FrameSize {
        width: u32,
        height: u32,
        got_width: u32,
        got_height: u32,
    },
    #[error("rav1e picture plane {plane} is shorter than its rows at its stride")]
    PlaneTooSmall { plane: usize },
    #[error("rav1e picture submitted after flush")]
    SubmitAfterFlush,
}

media::impl_encoder_error_from!(Rav1eError);

/// How to open the encoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rav1eSettings {
    /// Picture size in pixels; both even (4:2:0 chroma).
    pub width: u32,
    pub height: u32,
    /// Frame rate as numerator / denominator: rav1e's rate control budgets per frame.
    pub fps_num: u32,
    pub fps_den: u32,
    /// Target bitrate in kbit/s (rav1e's one-pass rate control).
    pub bitrate_kbps: u32,
    /// Speed preset, 0 (slowest, best) ..= [`FASTEST_SPEED`].
    pub speed: u8,
    /// Worker threads, 1..=[`MAX_THREADS`]; also the minimum tile count.
    pub threads: u32,
    /// Pictures of RDO lookahead, 1..=30: latency traded for rate-control quality.
    pub lookahead_frames: u32,
    /// rav1e places a key frame on its own after this many frames without one; `None` leaves
    /// key frames entirely to `force_idr`.
    pub keyint_max: Option<u32>,
}

impl Default for Rav1eSettings {
    fn default() -> Self {
        Rav1eSettings {
            width: 640,
            height: 360,
            fps_num: 30,
            fps_den: 1,
            bitrate_kbps: 500,
            speed: FASTEST_SPEED,
            threads: 1,
            lookahead_frames: 1,
            keyint_max: None,
        }
    }
}

impl Rav1eSettings {
    fn check(&self) -> Result<(), Rav1eError> {
        check_picture_size(self.width, self.height, 16, 16384)?;
        check_frame_rate(self.fps_num, self.fps_den)?;
        check_in_range("bitrate_kbps", self.bitrate_kbps, 1..=1_000_000)?;
        check_in_range("speed", u32::from(self.speed), 0..=u32::from(FASTEST_SPEED))?;
        check_in_range("threads", self.threads, 1..=MAX_THREADS)?;
        check_in_range("lookahead_frames", self.lookahead_frames, 1..=30)?;
        check_keyint_max(self.keyint_max)?;
        Ok(())
    }

    fn rav1e_config(&self) -> Config {
        let mut speed = SpeedSettings::from_preset(self.speed);
        speed.scene_detection_mode = SceneDetectionSpeed::None;
        speed.rdo_lookahead_frames = self.lookahead_frames as usize;
        let mut encoder = EncoderConfig {
            width: self.width as usize,
            height: self.height as usize,
            time_base: Rational::new(u64::from(self.fps_den), u64::from(self.fps_num)),
            bit_depth: 8,
            chroma_sampling: ChromaSampling::Cs420,
            pixel_range: PixelRange::Limited,
            low_latency: true,
            // Bounded by `check` to 1_000_000 kbit/s, well inside i32.
            bitrate: (self.bitrate_kbps * 1000) as i32,
            // In bitrate mode `quantizer` is the highest quantizer rate control may use; rav1e's
            // default (100 of 255) caps compression, so busy pictures overshot the rate fourfold.
            quantizer: 255,
            tiles: self.threads as usize,
            // Rate control evens out its budget over two seconds (a ladder segment), not
            // rav1e's default of up to 240 frames, so a live rung meets its rate per segment.
            reservoir_frame_delay: Some(
                i32::try_from((2 * self.fps_num).div_ceil(self.fps_den)).map_or(60, |f| f.max(12)),
            ),
            speed_settings: speed,
            ..EncoderConfig::default()
        };
        encoder.set_key_frame_interval(0, self.keyint_max.map_or(0, u64::from));
        Config::new()
            .with_encoder_config(encoder)
            .with_threads(self.threads as usize)
    }
}

/// An open rav1e encoder. See the crate docs for the output format.
pub struct Rav1eEncoder {
    context: Context<u8>,
    settings: Rav1eSettings,
    config: Av1Config,
    ready: VecDeque<AccessUnit>,
    flushing: bool,
    /// rav1e has said it holds nothing more (`LimitReached`).
    drained: bool,
}

impl fmt::Debug for Rav1eEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rav1eEncoder")
            .field("settings", &self.settings)
            .field("codec", &self.config.codec_string())
            .field("ready", &self.ready.len())
            .field("flushing", &self.flushing)
            .finish_non_exhaustive()
    }
}

impl Rav1eEncoder {
    /// Opens rav1e with `settings` and learns its sequence header (see the crate docs).
    pub fn new(settings: Rav1eSettings) -> Result<Self, Rav1eError> {
        settings.check()?;
        let config_error = |reason: String| Rav1eError::Config {
            width: settings.width,
            height: settings.height,
            reason,
        };
        let rav1e_config = settings.rav1e_config();
        let context: Context<u8> = rav1e_config
            .new_context()
            .map_err(|e| config_error(e.to_string()))?;
        let config = probe_sequence_header(&settings)?;
        Ok(Rav1eEncoder {
            context,
            settings,
            config,
            ready: VecDeque::new(),
            flushing: false,
            drained: false,
        })
    }

    pub fn settings(&self) -> &Rav1eSettings {
        &self.settings
    }

    /// The sequence header and the fields parsed from it.
    pub fn av1_config(&self) -> &Av1Config {
        &self.config
    }

    /// Turns one rav1e packet into a unit: pts from the opaque value given at submit, temporal
    /// delimiter dropped.
    fn unit(&self, packet: rav1e::Packet<u8>) -> Result<AccessUnit, Rav1eError> {
        let pts = packet
            .opaque
            .and_then(|opaque| opaque.downcast::<i64>().ok())
            .map(|pts| *pts)
            .ok_or(Rav1eError::UnknownFrame {
                frame: packet.input_frameno,
            })?;
        // alloc (inside): one buffer per temporal unit; the unit outlives rav1e's packet.
        let (payload, shown_key_frame) = temporal_unit_payload(&packet.data)?;
        let keyframe = packet.frame_type == FrameType::KEY && shown_key_frame;
        if keyframe && Av1Config::from_sequence_header_obu(&payload)? != self.config {
            return Err(Rav1eError::SequenceHeaderChanged { pts });
        }
        Ok(AccessUnit {
            codec: Codec::Av1,
            pts,
            // low_latency: no reordering, decode order is presentation order.
            dts: pts,
            keyframe,
            payload: Bytes::from(payload),
        })
    }
}

impl VideoEncoder for Rav1eEncoder {
    type Error = Rav1eError;

    fn submit(&mut self, frame: &RawVideoFrame<'_>, force_idr: bool) -> Result<(), Rav1eError> {
        if self.flushing {
            return Err(Rav1eError::SubmitAfterFlush);
        }
        frame.check_fits(self.settings.width, self.settings.height)?;
        // alloc: one picture per frame; rav1e keeps it (behind an Arc) as a reference until it
        // has left the lookahead, so it cannot be a caller-owned buffer.
        let mut picture = self.context.new_frame();
        for (index, plane) in picture.planes.iter_mut().enumerate() {
            // Row by row: `check_planes` allows a last row of just `width` bytes, which
            // rav1e's own `copy_from_raw_u8` (whole strides only) would drop.
            // rav1e's planes are allocated in whole 8x8 blocks; it pads past the picture edge
            // itself when the frame is sent.
            let (source, stride) = (frame.planes[index], frame.strides[index]);
            let (width, height) = frame.plane_size(index);
            for (y, row) in plane.rows_iter_mut().take(height).enumerate() {
                let start = y * stride;
                let (Some(source_row), Some(row)) =
                    (source.get(start..start + width), row.get_mut(..width))
                else {
                    return Err(Rav1eError::PlaneTooSmall { plane: index });
                };
                row.copy_from_slice(source_row);
            }
        }
        let parameters = FrameParameters {
            frame_type_override: if force_idr {
                FrameTypeOverride::Key
            } else {
                FrameTypeOverride::No
            },
            // alloc: the pts rides through the encoder boxed; a few bytes per frame.
            opaque: Some(Opaque::new(frame.pts)),
            ..FrameParameters::default()
        };
        self.context
            .send_frame((picture, parameters))
            .map_err(|status| Rav1eError::Encoder {
                call: "send_frame",
                status,
            })
    }

    fn poll_packet(&mut self) -> Result<Option<AccessUnit>, Rav1eError> {
        if let Some(unit) = self.ready.pop_front() {
            return Ok(Some(unit));
        }
        if self.drained {
            return Ok(None);
        }
        loop {
            match self.context.receive_packet() {
                Ok(packet) => return self.unit(packet).map(Some),
                // A frame was coded without a packet (not expected with low_latency): go on.
                Err(EncoderStatus::Encoded) => continue,
                Err(EncoderStatus::NeedMoreData) => return Ok(None),
                Err(EncoderStatus::LimitReached) => {
                    self.drained = true;
                    return Ok(None);
                }
                Err(status) => {
                    return Err(Rav1eError::Encoder {
                        call: "receive_packet",
                        status,
                    });
                }
            }
        }
    }

    fn flush(&mut self) -> Result<(), Rav1eError> {
        if !self.flushing {
            self.flushing = true;
            self.context.flush();
        }
        Ok(())
    }

    fn track_config(&self) -> TrackConfig {
        TrackConfig::Av1(self.config.clone())
    }
}

/// Encodes one mid-grey picture with `settings` on one thread and reads the sequence header of
/// the key frame it makes.
fn probe_sequence_header(settings: &Rav1eSettings) -> Result<Av1Config, Rav1eError> {
    // The speed preset decides sequence-level tools (CDEF, loop restoration), so the probe
    // keeps every setting; only its thread pool is smaller (tiles live in frame headers).
    let config = settings.rav1e_config().with_threads(1);
    let mut context: Context<u8> = config.new_context().map_err(|e| Rav1eError::Config {
        width: settings.width,
        height: settings.height,
        reason: e.to_string(),
    })?;
    let mut picture = context.new_frame();
    for plane in &mut picture.planes {
        plane.data_origin_mut().fill(128);
    }
    let encoder_error = |call| move |status| Rav1eError::Encoder { call, status };
    context
        .send_frame(picture)
        .map_err(encoder_error("send_frame"))?;
    context.flush();
    loop {
        match context.receive_packet() {
            Ok(packet) => return Ok(Av1Config::from_sequence_header_obu(&packet.data)?),
            Err(EncoderStatus::Encoded) => continue,
            Err(EncoderStatus::LimitReached) => return Err(Rav1eError::MissingSequenceHeader),
            Err(status) => return Err(encoder_error("receive_packet")(status)),
        }
    }
}

#[cfg(test)]
mod tests;
