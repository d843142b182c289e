//! The transcode ladder of one stream: decode the source once (on the CPU, or with NVDEC by
//! [`DecoderChoice`]), scale it per rung, encode each rung with x264 or NVENC for H.264, x265
//! or NVENC for HEVC (an unavailable NVENC falls back to the CPU encoder by the rung's rule),
//! or with rav1e or SVT-AV1 for an AV1 rung, with an IDR (AV1: a key frame) in every rung at exactly the pts where the
//! packager cuts the source (passthrough) rendition. docs/transcode.md explains the rules and the numbers.
//!
//! Run-loop contract (sans-IO: the ladder reads no clock; `now` is any monotonic time the
//! caller keeps, used only for the encode-rate figures):
//! 1. [`Ladder::handle_unit`] with each source video unit, in decode order. It decodes, places
//!    the unit on the segment timeline ([`SegmentClock`]) and queues a scaled picture per rung.
//! 2. [`Ladder::encode_step`] encodes one queued picture (of the rung furthest behind) and
//!    returns whether there was one. A worker with time to spare calls it until `false`; one
//!    that is short of time calls it less, and a rung whose queue fills up drops frames by the
//!    policy in [`queue`] (never a segment's first frame).
//! 3. [`Ladder::poll_output`] until `None`: encoded units of every rung, each rung's in decode
//!    order.
//! 4. At the end, [`Ladder::finish`], then steps 2 and 3 until both are exhausted.
//!
//! Broken input: a unit the decoder refuses is skipped and counted ([`LadderStats`]); the rungs
//! go on with the next picture. If a segment's first unit is lost that way, the next picture
//! that comes out takes its IDR (counted as `misaligned_boundaries`).
//!
//! The engine runs ladders on its transcode thread (engine::ladder). Not done here: rebuilding
//! on a resolution change mid-stream (it is an error today), audio.

pub mod config;
pub mod queue;
mod rung_encoder;
pub mod segment_clock;

use std::collections::VecDeque;
use std::time::Duration;

use libav::{
    CudaFrames, CudaPicture, CudaScaler, DecodeDevice, DecodedPicture, I420Picture, LibavError,
    Scaler, VideoDecoder, VideoDecoderSettings,
};
use media::{AccessUnit, AvcConfig, Codec, TrackConfig, VIDEO_TIMESCALE, rescale};
use rung_encoder::RungVideoEncoder;
use x264::X264Settings;

use crate::TranscodeError;

pub use config::{
    DEFAULT_AV1_ENCODER, DEFAULT_RAV1E_SPEED, DEFAULT_SVT_AV1_PRESET, DecoderChoice, GpuFallback,
    LadderConfig, RungCodec, RungConfig, RungEncoder, rung_size,
};
pub use queue::{FrameQueue, Reservation};
pub use rung_encoder::{nvenc_settings, rav1e_settings, svt_av1_settings, x265_settings};
pub use segment_clock::{SegmentClock, UnitPlace};

/// Index of a rung among the ladder's rungs (skipped rungs have none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RungId(pub usize);

/// What an H.264 rung is, once built ([`Ladder::rungs`]).
#[derive(Clone, Copy, Debug)]
pub struct RungInfo<'a> {
    pub id: RungId,
    pub config: &'a RungConfig,
    pub width: u32,
    pub height: u32,
    /// The rung's parameter sets, for its init segment and CODECS string.
    pub avc: &'a AvcConfig,
    /// The encoder that runs the rung: the codec's CPU encoder for an NVENC rung that fell
    /// back.
    pub encoder: RungEncoder,
    /// Why an NVENC rung runs on the CPU (`fallback = "cpu"`), if it does.
    pub fallback_reason: Option<&'a str>,
}

/// What a rung of any codec is, once built ([`Ladder::rung_tracks`]).
#[derive(Clone, Copy, Debug)]
pub struct RungTrack<'a> {
    pub id: RungId,
    pub config: &'a RungConfig,
    pub width: u32,
    pub height: u32,
    /// The rung's codec parameters (`avcC`, `hvcC` or `av1C` source), for its init segment and
    /// CODECS string.
    pub track: &'a TrackConfig,
    /// The encoder that runs the rung: the codec's CPU encoder for an NVENC rung that fell
    /// back.
    pub encoder: RungEncoder,
    /// Why an NVENC rung runs on the CPU (`fallback = "cpu"`), if it does.
    pub fallback_reason: Option<&'a str>,
}

/// Counters of the source side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LadderStats {
    pub source_units: u64,
    /// Units before the first keyframe (the packager drops them too).
    pub skipped_before_keyframe: u64,
    /// Units the decoder refused (skipped).
    pub corrupt_units: u64,
    /// Pictures the decoder patched up (still encoded).
    pub concealed_frames: u64,
    /// Pictures that were not 8-bit 4:2:0 and were converted to it before scaling.
    pub converted_frames: u64,
    /// Pictures NVDEC decoded (the rest were decoded in software).
    pub gpu_decoded_frames: u64,
    pub decoded_frames: u64,
    /// Segment starts found by the [`SegmentClock`].
    pub segment_starts: u64,
    /// Segment starts whose picture never came out of the decoder; the next one took the IDR.
    pub misaligned_boundaries: u64,
    /// Times NVDEC failed mid-stream and the ladder went on decoding on the CPU (0 or 1).
    pub gpu_failovers: u64,
    /// Source units skipped after such a failover, until the next key frame.
    pub skipped_after_failover: u64,
}

/// Units in a row that NVDEC may fail (with no picture out) before the ladder decodes on the
/// CPU instead: one second at 30 fps. A damaged stream fails a unit or two, not dozens.
pub const GPU_FAILOVER_UNITS: u32 = 30;

/// Encoder progress of one rung.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RungStats {
    pub encoded_frames: u64,
    /// Frames dropped because the rung's queue was full.
    pub dropped_frames: u64,
    /// Frames scaled and waiting for the encoder: how far behind the rung is.
    pub queued_frames: usize,
    /// Media time (90 kHz) between the newest decoded picture and the oldest one still queued.
    pub lag_ticks: i64,
    /// Pictures encoded per second of the caller's `now`, over the last full second.
    pub encoded_fps: f64,
}

struct Rung {
    config: RungConfig,
    size: (u32, u32),
    scaler: Scaler,
    /// Scales NVDEC's pictures without leaving the GPU; `None` when the ladder decodes on the
    /// CPU or GPU scaling could not be set up.
    gpu_scaler: Option<CudaScaler>,
    encoder: RungVideoEncoder,
    /// The encoder's codec parameters, fixed at open.
    track: TrackConfig,
    fallback_reason: Option<String>,
    queue: FrameQueue<RungPicture>,
    /// A software-decoded picture scaled here on its way to a rung that takes CUDA frames.
    upload_staging: Option<I420Picture>,
    /// pts of pictures submitted as IDRs whose units have not come out yet.
    forced: VecDeque<i64>,
    encoded_frames: u64,
    flushed: bool,
    rate_window: Option<(Duration, u32)>,
    encoded_fps: f64,
}

/// A rung's scaled picture waiting for its encoder: in system memory, or in GPU memory for an
/// NVENC rung that takes CUDA frames (the ladder decodes and scales on the GPU).
enum RungPicture {
    System(I420Picture),
    Gpu(CudaPicture),
}

impl RungPicture {
    fn pts(&self) -> i64 {
        match self {
            RungPicture::System(picture) => picture.pts(),
            RungPicture::Gpu(picture) => picture.pts(),
        }
    }
}

/// See the module docs.
pub struct Ladder {
    config: LadderConfig,
    source_size: (u32, u32),
    decoder: VideoDecoder,
    /// Why `decoder = "auto"` decodes on the CPU, if it does.
    decoder_fallback_reason: Option<String>,
    /// Why a ladder decoding on NVDEC scales on the CPU, if it does.
    gpu_scale_fallback_reason: Option<String>,
    /// The source's parameter sets and the decoder settings, to reopen the decoder on the CPU.
    source: TrackConfig,
    decoder_settings: VideoDecoderSettings,
    /// Units NVDEC failed since its last picture.
    gpu_failures_in_a_row: u32,
    /// After a failover: units are skipped until a key frame.
    awaiting_keyframe: bool,
    /// The counts of a decoder replaced by a failover, so the stats keep them.
    retired: libav::DecodeStats,
    /// The source track's codec (H.264 or HEVC): units of another codec are refused.
    source_codec: Codec,
    clock: SegmentClock,
    /// Input pts of segment starts whose picture has not come out of the decoder yet.
    boundaries: VecDeque<i64>,
    rungs: Vec<Rung>,
    outputs: VecDeque<(RungId, AccessUnit)>,
    stats: LadderStats,
    newest_pts: Option<i64>,
    finishing: bool,
}

impl std::fmt::Debug for Ladder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rungs: Vec<(&str, (u32, u32))> = self
            .rungs
            .iter()
            .map(|r| (r.config.name.as_str(), r.size))
            .collect();
        f.debug_struct("Ladder")
            .field("source_size", &self.source_size)
            .field("rungs", &rungs)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Ladder {
    /// Builds the ladder for a source with these parameter sets: one decoder, and a scaler,
    /// an encoder (x264, or NVENC by the rung's `encoder` and `fallback`) and a queue for every
    /// rung not taller than the source.
    pub fn new(config: LadderConfig, source: &TrackConfig) -> Result<Self, TranscodeError> {
        config.check()?;
        let (source_size, frame_rate) = match source {
            TrackConfig::Avc(avc) => ((avc.width, avc.height), avc.frame_rate),
            TrackConfig::Hevc(hevc) => ((hevc.width, hevc.height), hevc.frame_rate),
            other => return Err(TranscodeError::WrongCodec(other.codec())),
        };
        let (decoder, decoder_fallback_reason) = open_decoder(&config, source)?;
        let (fps_num, fps_den) = frame_rate.unwrap_or(config.fallback_fps);
        // H.264 rungs first, HEVC and AV1 rungs after every one of them (in config order), so
        // the ids of `rungs()` (the H.264 ones) are 0..n whatever the config order; rungs
        // taller than the source are left out.
        let built: Vec<(&RungConfig, (u32, u32))> = config
            .rungs
            .iter()
            .filter(|r| r.encoder.codec() == RungCodec::H264)
            .chain(
                config
                    .rungs
                    .iter()
                    .filter(|r| r.encoder.codec() != RungCodec::H264),
            )
            .filter_map(|rung| Some((rung, rung_size(source_size, rung.height)?)))
            .collect();
        // GPU scalers before the encoders (every rung or none), so that an NVENC rung knows
        // whether it can take CUDA frames when it is opened.
        let (gpu, mut gpu_scalers, gpu_scale_fallback_reason) = match decoder.device() {
            DecodeDevice::Nvdec { gpu } => match gpu_scalers(gpu, source_size, &built) {
                Ok(scalers) => (Some(gpu), scalers.into_iter(), None),
                Err(reason) => (None, Vec::new().into_iter(), Some(reason)),
            },
            DecodeDevice::Cpu => (None, Vec::new().into_iter(), None),
        };
        let mut rungs = Vec::new();
        for (rung, size) in built {
            let scaler_error = |source| TranscodeError::Scaler {
                rung: rung.name.clone(),
                source,
            };
            let scaler =
                Scaler::new(source_size, size, config.scale_filter).map_err(scaler_error)?;
            let gpu_scaler = gpu_scalers.next();
            // A pool of CUDA frames for an NVENC rung when the ladder scales on the GPU.
            let cuda_frames = match (gpu, &gpu_scaler, rung.encoder) {
                (Some(gpu), Some(_), RungEncoder::Nvenc { .. }) => {
                    Some(CudaFrames::new(gpu, size).map_err(scaler_error)?)
                }
                _ => None,
            };
            let x264 = X264Settings {
                width: size.0,
                height: size.1,
                fps_num,
                fps_den,
                bitrate_kbps: rung.bitrate_kbps,
                vbv_max_kbps: rung.maxrate_kbps,
                vbv_buffer_kbits: rung.vbv_buffer_kbits,
                preset: rung.preset,
                zerolatency: config.zerolatency,
                profile: rung.profile,
                keyint_max: None,
                threads: config.encoder_threads,
            };
            let (encoder, fallback_reason) =
                RungVideoEncoder::open(rung, x264, config.gpu, cuda_frames.as_ref())?;
            let slots = (0..config.queue_frames)
                .map(|_| match &cuda_frames {
                    Some(frames) if encoder.takes_cuda_frames() => {
                        frames.picture().map(RungPicture::Gpu)
                    }
                    _ => I420Picture::new(size.0, size.1).map(RungPicture::System),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(scaler_error)?;
            let upload_staging = if encoder.takes_cuda_frames() {
                tracing::info!(rung = %rung.name, "NVENC takes the rung's pictures in GPU memory");
                Some(I420Picture::new(size.0, size.1).map_err(scaler_error)?)
            } else {
                None
            };
            rungs.push(Rung {
                config: rung.clone(),
                size,
                scaler,
                gpu_scaler,
                upload_staging,
                track: encoder.track_config(),
                encoder,
                fallback_reason,
                queue: FrameQueue::new(slots),
                forced: VecDeque::new(),
                encoded_frames: 0,
                flushed: false,
                rate_window: None,
                encoded_fps: 0.0,
            });
        }
        let decoder_settings = decoder.settings().clone();
        let target = rescale(
            i64::try_from(config.segment_target.as_millis()).unwrap_or(i64::MAX / 90),
            1000,
            VIDEO_TIMESCALE,
        );
        Ok(Ladder {
            clock: SegmentClock::new(target),
            config,
            source_size,
            decoder,
            decoder_fallback_reason,
            gpu_scale_fallback_reason,
            source: source.clone(),
            decoder_settings,
            gpu_failures_in_a_row: 0,
            awaiting_keyframe: false,
            retired: libav::DecodeStats::default(),
            source_codec: source.codec(),
            boundaries: VecDeque::new(),
            rungs,
            outputs: VecDeque::new(),
            stats: LadderStats::default(),
            newest_pts: None,
            finishing: false,
        })
    }

    pub fn config(&self) -> &LadderConfig {
        &self.config
    }

    /// Where the source is decoded.
    pub fn decoder_device(&self) -> DecodeDevice {
        self.decoder.device()
    }

    /// Whether NVDEC's pictures are scaled on the GPU (every rung), so that only rung-size
    /// pictures come back to system memory.
    pub fn scales_on_gpu(&self) -> bool {
        self.rungs.iter().all(|rung| rung.gpu_scaler.is_some()) && !self.rungs.is_empty()
    }

    /// Why a ladder that decodes on NVDEC scales on the CPU, if it does.
    pub fn gpu_scale_fallback_reason(&self) -> Option<&str> {
        self.gpu_scale_fallback_reason.as_deref()
    }

    /// Why `decoder = "auto"` decodes on the CPU (NVDEC unavailable here), if it does.
    pub fn decoder_fallback_reason(&self) -> Option<&str> {
        self.decoder_fallback_reason.as_deref()
    }

    /// Every rung that was built (those not taller than the source): the H.264 rungs in config
    /// order, then the HEVC and AV1 rungs in config order.
    pub fn rung_tracks(&self) -> impl Iterator<Item = RungTrack<'_>> {
        self.rungs
            .iter()
            .enumerate()
            .map(|(index, rung)| RungTrack {
                id: RungId(index),
                config: &rung.config,
                width: rung.size.0,
                height: rung.size.1,
                track: &rung.track,
                encoder: rung.encoder.kind(),
                fallback_reason: rung.fallback_reason.as_deref(),
            })
    }

    /// The H.264 rungs that were built, in config order, with ids 0..n (HEVC and AV1 rungs,
    /// which have no `avcC`, come after them: [`Self::rung_tracks`] lists every rung). A caller
    /// that packages only these still receives the other rungs' units from
    /// [`Self::poll_output`], with ids past n.
    pub fn rungs(&self) -> impl Iterator<Item = RungInfo<'_>> {
        self.rung_tracks().filter_map(|rung| match rung.track {
            TrackConfig::Avc(avc) => Some(RungInfo {
                id: rung.id,
                config: rung.config,
                width: rung.width,
                height: rung.height,
                avc,
                encoder: rung.encoder,
                fallback_reason: rung.fallback_reason,
            }),
            _ => None,
        })
    }

    pub fn stats(&self) -> LadderStats {
        self.stats
    }

    /// Progress of one rung (`None` for an id the ladder does not have).
    pub fn rung_stats(&self, id: RungId) -> Option<RungStats> {
        let rung = self.rungs.get(id.0)?;
        let lag_ticks = match (self.newest_pts, rung.queue.front()) {
            (Some(newest), Some(oldest)) => newest - oldest.slot.pts(),
            _ => 0,
        };
        Some(RungStats {
            encoded_frames: rung.encoded_frames,
            dropped_frames: rung.queue.dropped(),
            queued_frames: rung.queue.len(),
            lag_ticks,
            encoded_fps: rung.encoded_fps,
        })
    }

    /// Takes one source video unit (decode order): decodes it and queues a scaled picture per
    /// rung for every picture the decoder returns.
    pub fn handle_unit(&mut self, unit: &AccessUnit) -> Result<(), TranscodeError> {
        if unit.codec != self.source_codec {
            return Err(TranscodeError::WrongCodec(unit.codec));
        }
        self.stats.source_units += 1;
        match self.clock.place(unit.pts, unit.dts, unit.keyframe) {
            UnitPlace::BeforeFirstKeyframe => {
                self.stats.skipped_before_keyframe += 1;
                return Ok(());
            }
            UnitPlace::StartsSegment { pts, .. } => {
                self.stats.segment_starts += 1;
                // Segment starts come in increasing pts; keep the list sorted regardless.
                let at = self.boundaries.partition_point(|&b| b < pts);
                self.boundaries.insert(at, pts);
            }
            UnitPlace::InSegment => {}
        }
        if self.awaiting_keyframe {
            if !unit.keyframe {
                self.stats.skipped_after_failover += 1;
                return Ok(());
            }
            self.awaiting_keyframe = false;
        }
        let nvdec = self.decoder.device() != DecodeDevice::Cpu;
        let submitted = match self.decoder.submit(unit) {
            Ok(()) => Ok(()),
            Err(LibavError::CorruptUnit { reason, .. }) if nvdec => {
                count_gpu_failure(&mut self.gpu_failures_in_a_row, &reason)
            }
            Err(LibavError::CorruptUnit { .. }) => Ok(()),
            Err(other) => Err(TranscodeError::Decoder(other)),
        };
        match submitted.and_then(|()| self.drain_decoder()) {
            Err(TranscodeError::GpuFault { reason }) => self.fail_over(&reason),
            other => other,
        }
    }

    /// NVDEC or the GPU scaler failed mid-stream (a GPU fault, a driver reset): reopens the
    /// decoder on the CPU, drops the GPU scalers, and waits for the next key frame. Rungs whose
    /// encoder takes CUDA frames (NVENC) get their pictures uploaded from system memory.
    fn fail_over(&mut self, reason: &str) -> Result<(), TranscodeError> {
        tracing::warn!(%reason, "GPU failed mid-stream: the ladder decodes and scales on the CPU from the next key frame");
        let cpu = VideoDecoder::new(&self.source, self.decoder_settings.clone())
            .map_err(TranscodeError::Decoder)?;
        let old = std::mem::replace(&mut self.decoder, cpu).stats();
        self.retired.corrupt_units += old.corrupt_units;
        self.retired.concealed_frames += old.concealed_frames;
        self.retired.converted_frames += old.converted_frames;
        self.retired.gpu_frames += old.gpu_frames;
        for rung in &mut self.rungs {
            rung.gpu_scaler = None;
        }
        self.decoder_fallback_reason = Some(format!("GPU failed mid-stream: {reason}"));
        self.gpu_failures_in_a_row = 0;
        self.awaiting_keyframe = true;
        self.stats.gpu_failovers += 1;
        Ok(())
    }

    /// No more source units: the decoder gives up the pictures it holds, and later
    /// [`Self::encode_step`] calls flush the encoders once their queues are empty.
    pub fn finish(&mut self) -> Result<(), TranscodeError> {
        if self.finishing {
            return Ok(());
        }
        self.finishing = true;
        self.decoder.flush().map_err(TranscodeError::Decoder)?;
        match self.drain_decoder() {
            // The stream is over: what the GPU still held is lost, the rungs finish.
            Err(TranscodeError::GpuFault { reason }) => {
                tracing::warn!(%reason, "GPU failed while the ladder finished");
                Ok(())
            }
            other => other,
        }
    }

    /// Encodes one queued picture, of the rung furthest behind. Returns false when there
    /// was nothing to do. After [`Self::finish`], the last step of each rung flushes its encoder.
    pub fn encode_step(&mut self, now: Duration) -> Result<bool, TranscodeError> {
        // The rung furthest behind in media time (oldest queued picture) goes first, so rungs
        // that share too little time fall behind evenly instead of one starving.
        let busiest = self
            .rungs
            .iter()
            .enumerate()
            .filter_map(|(index, rung)| {
                let front = rung.queue.front()?;
                Some((front.slot.pts(), std::cmp::Reverse(rung.queue.len()), index))
            })
            .min()
            .map(|(_, _, index)| index);
        if let Some(index) = busiest {
            encode_one(
                &mut self.rungs[index],
                RungId(index),
                Some(now),
                &mut self.outputs,
            )?;
            return Ok(true);
        }
        if !self.finishing {
            return Ok(false);
        }
        let Some(index) = self.rungs.iter().position(|rung| !rung.flushed) else {
            return Ok(false);
        };
        let rung = &mut self.rungs[index];
        rung.flushed = true;
        rung.encoder.flush(&rung.config.name)?;
        drain_encoder(rung, RungId(index), &mut self.outputs)?;
        Ok(true)
    }

    /// The next encoded unit of any rung.
    pub fn poll_output(&mut self) -> Option<(RungId, AccessUnit)> {
        self.outputs.pop_front()
    }

    fn drain_decoder(&mut self) -> Result<(), TranscodeError> {
        let Ladder {
            decoder,
            rungs,
            boundaries,
            stats,
            newest_pts,
            outputs,
            source_size,
            finishing,
            gpu_failures_in_a_row,
            retired,
            ..
        } = self;
        let on_gpu = rungs.iter().any(|rung| rung.gpu_scaler.is_some());
        let nvdec = decoder.device() != DecodeDevice::Cpu;
        loop {
            let polled = if on_gpu {
                decoder.poll_picture()
            } else {
                decoder
                    .poll_frame()
                    .map(|frame| frame.map(DecodedPicture::System))
            };
            let picture = match polled {
                Ok(Some(picture)) => picture,
                Ok(None) => break,
                Err(LibavError::CorruptUnit { reason, .. }) => {
                    if nvdec {
                        count_gpu_failure(gpu_failures_in_a_row, &reason)?;
                    }
                    continue;
                }
                Err(other) => return Err(TranscodeError::Decoder(other)),
            };
            *gpu_failures_in_a_row = 0;
            let (width, height, pts) = match &picture {
                DecodedPicture::System(frame) => (frame.width, frame.height, frame.pts),
                DecodedPicture::Gpu(gpu) => (gpu.width, gpu.height, gpu.pts),
            };
            if (width, height) != *source_size {
                return Err(TranscodeError::SourceSizeChanged {
                    expected: *source_size,
                    got: (width, height),
                });
            }
            stats.decoded_frames += 1;
            let mut starts_segment = false;
            while let Some(&boundary) = boundaries.front() {
                if boundary > pts {
                    break;
                }
                if boundary < pts {
                    // That segment's first picture never came out: this one takes its IDR.
                    stats.misaligned_boundaries += 1;
                }
                starts_segment = true;
                boundaries.pop_front();
            }
            *newest_pts = Some(newest_pts.map_or(pts, |n| n.max(pts)));
            for (index, rung) in rungs.iter_mut().enumerate() {
                if *finishing && rung.queue.is_full() {
                    // The end of the stream is not a reason to lose frames: make room.
                    encode_one(rung, RungId(index), None, outputs)?;
                }
                match queue_picture(rung, &picture, starts_segment) {
                    Err(TranscodeError::Scaler {
                        source: LibavError::Cuda { call, error },
                        ..
                    }) if nvdec => {
                        return Err(TranscodeError::GpuFault {
                            reason: format!("GPU scaler: CUDA {call} failed: {error}"),
                        });
                    }
                    other => other?,
                }
            }
        }
        let decode = decoder.stats();
        stats.corrupt_units = retired.corrupt_units + decode.corrupt_units;
        stats.concealed_frames = retired.concealed_frames + decode.concealed_frames;
        stats.converted_frames = retired.converted_frames + decode.converted_frames;
        stats.gpu_decoded_frames = retired.gpu_frames + decode.gpu_frames;
        Ok(())
    }
}

/// Opens the source decoder by `config.decoder` (see [`DecoderChoice`]); the second value is
/// why "auto" decodes on the CPU.
fn open_decoder(
    config: &LadderConfig,
    source: &TrackConfig,
) -> Result<(VideoDecoder, Option<String>), TranscodeError> {
    let settings = VideoDecoderSettings {
        threads: config.decoder_threads,
    };
    let gpu = DecodeDevice::Nvdec { gpu: config.gpu };
    let cpu = |reason| {
        VideoDecoder::new(source, settings.clone())
            .map(|decoder| (decoder, reason))
            .map_err(TranscodeError::Decoder)
    };
    // "auto" decodes every ladder on NVDEC where it can: with the pictures scaled on the GPU
    // too, a 1080p picture costs the CPU about a tenth of decode + swscale (measured on an
    // H100, docs/capacity.md), which x264 rungs then have. Only a ladder with an NVENC rung
    // asked for the GPU, so only its status reports the CPU decode as a fallback.
    let gpu_ladder = config.rungs.iter().any(|rung| rung.encoder.is_gpu());
    match config.decoder {
        DecoderChoice::Cpu => cpu(None),
        choice => match VideoDecoder::with_device(source, settings.clone(), gpu) {
            Ok(decoder) => Ok((decoder, None)),
            Err(LibavError::NvdecUnavailable { reason }) if choice == DecoderChoice::Auto => {
                warn_decoder_fallback_once(&reason);
                cpu(gpu_ladder.then_some(reason))
            }
            Err(LibavError::NvdecUnavailable { reason }) => {
                Err(TranscodeError::GpuDecoderUnavailable { reason })
            }
            Err(other) => Err(TranscodeError::Decoder(other)),
        },
    }
}

/// Logs NVDEC's absence at info level once per process (a box without an NVIDIA GPU is the
/// usual case, not a fault), at debug level for every ladder after that.
fn warn_decoder_fallback_once(reason: &str) {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    LOGGED.call_once(|| first = true);
    if first {
        tracing::info!(
            reason,
            "NVDEC unavailable: ladders decode on the CPU (decoder = \"auto\"); logged once"
        );
    } else {
        tracing::debug!(reason, "NVDEC unavailable: ladder decodes on the CPU");
    }
}

fn queue_picture(
    rung: &mut Rung,
    picture: &DecodedPicture<'_>,
    starts_segment: bool,
) -> Result<(), TranscodeError> {
    let Reservation::Slot(mut slot) = rung.queue.reserve(starts_segment) else {
        return Ok(());
    };
    let scaled = match (picture, &mut slot, &mut rung.gpu_scaler) {
        (DecodedPicture::System(frame), RungPicture::System(slot), _) => {
            rung.scaler.scale_into(frame, slot)
        }
        (DecodedPicture::Gpu(gpu), RungPicture::System(slot), Some(scaler)) => {
            scaler.scale_into(gpu, slot)
        }
        (DecodedPicture::Gpu(gpu), RungPicture::Gpu(slot), Some(scaler)) => {
            scaler.scale_into_gpu(gpu, slot)
        }
        // A picture libavcodec decoded in software (a profile NVDEC lacks) for a rung whose
        // encoder takes CUDA frames: scaled here, then uploaded.
        (DecodedPicture::System(frame), RungPicture::Gpu(slot), _) => {
            match rung.upload_staging.as_mut() {
                Some(staging) => rung
                    .scaler
                    .scale_into(frame, staging)
                    .and_then(|()| slot.upload(staging)),
                None => Err(no_gpu_path("a rung without an upload picture")),
            }
        }
        (DecodedPicture::Gpu(_), _, None) => Err(no_gpu_path("a rung without a GPU scaler")),
    };
    if let Err(source) = scaled {
        rung.queue.recycle(slot);
        return Err(TranscodeError::Scaler {
            rung: rung.config.name.clone(),
            source,
        });
    }
    rung.queue.push(slot, starts_segment);
    Ok(())
}

/// One more unit NVDEC failed since its last picture; [`GPU_FAILOVER_UNITS`] in a row are a
/// GPU fault.
fn count_gpu_failure(failures: &mut u32, reason: &str) -> Result<(), TranscodeError> {
    *failures += 1;
    if *failures < GPU_FAILOVER_UNITS {
        return Ok(());
    }
    Err(TranscodeError::GpuFault {
        reason: format!("NVDEC failed {failures} units in a row (last: {reason})"),
    })
}

fn no_gpu_path(what: &str) -> LibavError {
    LibavError::Cuda {
        call: "scale",
        error: format!("a GPU picture reached {what}"),
    }
}

/// A GPU scaler for every rung of `built`, or the reason none can be had: the ladder then
/// downloads whole pictures and scales them with swscale.
fn gpu_scalers(
    gpu: u32,
    source_size: (u32, u32),
    built: &[(&RungConfig, (u32, u32))],
) -> Result<Vec<CudaScaler>, String> {
    built
        .iter()
        .map(|(_, size)| CudaScaler::new(gpu, source_size, *size))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            let reason = error.to_string();
            tracing::warn!(%reason, "GPU scaling unavailable: the ladder scales NVDEC's pictures on the CPU");
            reason
        })
}

fn encode_one(
    rung: &mut Rung,
    id: RungId,
    now: Option<Duration>,
    outputs: &mut VecDeque<(RungId, AccessUnit)>,
) -> Result<(), TranscodeError> {
    let Some(queued) = rung.queue.pop() else {
        return Ok(());
    };
    let mut slot = queued.slot;
    let pts = slot.pts();
    let submitted = match &mut slot {
        RungPicture::System(picture) => {
            rung.encoder
                .submit(&rung.config.name, &picture.as_raw(), queued.starts_segment)
        }
        RungPicture::Gpu(picture) => {
            rung.encoder
                .submit_cuda(&rung.config.name, picture, queued.starts_segment)
        }
    };
    rung.queue.recycle(slot);
    submitted?;
    if queued.starts_segment {
        rung.forced.push_back(pts);
    }
    rung.encoded_frames += 1;
    if let Some(now) = now {
        count_rate(rung, now);
    }
    drain_encoder(rung, id, outputs)
}

fn drain_encoder(
    rung: &mut Rung,
    id: RungId,
    outputs: &mut VecDeque<(RungId, AccessUnit)>,
) -> Result<(), TranscodeError> {
    loop {
        let unit = rung.encoder.poll_packet(&rung.config.name)?;
        let Some(unit) = unit else {
            return Ok(());
        };
        // Units come out in decode order and forced pictures in pts order, so the next forced
        // pts is the only one this unit can be.
        if rung.forced.front() == Some(&unit.pts) {
            rung.forced.pop_front();
            if !unit.keyframe {
                return Err(TranscodeError::IdrNotHonoured {
                    rung: rung.config.name.clone(),
                    pts: unit.pts,
                });
            }
        }
        // alloc: the output queue grows only while the caller does not poll.
        outputs.push_back((id, unit));
    }
}

/// Updates the rung's encoded-frames-per-second figure over windows of one second of `now`.
fn count_rate(rung: &mut Rung, now: Duration) {
    match rung.rate_window.as_mut() {
        None => rung.rate_window = Some((now, 1)),
        Some((start, frames)) => {
            *frames += 1;
            let elapsed = now.saturating_sub(*start);
            if elapsed >= Duration::from_secs(1) {
                rung.encoded_fps = f64::from(*frames - 1) / elapsed.as_secs_f64();
                *start = now;
                *frames = 1;
            }
        }
    }
}
