//! The encoder of one rung: x264, x265, NVENC (H.264 or HEVC) with its fallback rule
//! (docs/transcode.md, "GPU rungs" and "HEVC rungs"), or an AV1 encoder (rav1e, SVT-AV1;
//! docs/transcode.md, "AV1 rungs"). All implement
//! [`VideoEncoder`]; this enum keeps the ladder free of trait objects and keeps each encoder's
//! typed errors.

use std::sync::{Mutex, PoisonError};

use corecast_rav1e::{Rav1eEncoder, Rav1eError, Rav1eSettings};
use libav::{
    CudaFrames, CudaPicture, LibavError, SvtAv1Encoder, SvtAv1Settings, X265Encoder, X265Settings,
};
use media::encode::{RawVideoFrame, VideoEncoder};
use media::{AccessUnit, TrackConfig};
use nvenc::{NvencCodec, NvencEncoder, NvencError, NvencProfile, NvencSettings, NvencTune};
use x264::{X264Encoder, X264Profile, X264Settings};

use super::config::{GpuFallback, RungCodec, RungConfig, RungEncoder};
use crate::TranscodeError;

/// A rung's open encoder.
pub(super) enum RungVideoEncoder {
    X264(X264Encoder),
    X265(Box<X265Encoder>),
    Nvenc(Box<NvencEncoder>),
    Rav1e(Box<Rav1eEncoder>),
    SvtAv1(Box<SvtAv1Encoder>),
}

impl RungVideoEncoder {
    /// Opens the encoder `rung` asks for. An NVENC rung where NVENC is unavailable follows the
    /// rung's fallback: the codec's CPU encoder with the same settings (the second value is
    /// then the reason), or [`TranscodeError::GpuUnavailable`]. With `cuda_frames` (the
    /// ladder decodes and scales on the GPU) an NVENC rung is opened to take CUDA frames of
    /// that pool; any other encoder ignores it.
    pub(super) fn open(
        rung: &RungConfig,
        x264: X264Settings,
        gpu: u32,
        cuda_frames: Option<&CudaFrames>,
    ) -> Result<(RungVideoEncoder, Option<String>), TranscodeError> {
        let codec = match rung.encoder {
            RungEncoder::Nvenc { codec } => codec,
            cpu => return Ok((Self::open_cpu(cpu, &rung.name, x264)?, None)),
        };
        let nvenc_codec = match codec {
            RungCodec::H264 => NvencCodec::H264,
            RungCodec::Hevc => NvencCodec::Hevc,
            RungCodec::Av1 => NvencCodec::Av1,
        };
        let settings = nvenc_settings(rung, &x264, gpu);
        let opened = match cuda_frames.map(CudaFrames::picture) {
            // The pool is on GPU `gpu` (the ladder made it there) and of the rung's size.
            Some(Ok(sample)) => {
                NvencEncoder::with_cuda_frames(nvenc_codec, settings, sample.frame())
            }
            Some(Err(source)) => {
                return Err(TranscodeError::Scaler {
                    rung: rung.name.clone(),
                    source,
                });
            }
            None => NvencEncoder::with_codec(nvenc_codec, settings),
        };
        match opened {
            Ok(encoder) => Ok((RungVideoEncoder::Nvenc(Box::new(encoder)), None)),
            Err(NvencError::Unavailable { reason }) => match rung.fallback {
                GpuFallback::Cpu => {
                    let fallback = codec.default_encoder();
                    warn_once(&rung.name, fallback.name(), &reason);
                    Ok((Self::open_cpu(fallback, &rung.name, x264)?, Some(reason)))
                }
                GpuFallback::Fail => Err(TranscodeError::GpuUnavailable {
                    rung: rung.name.clone(),
                    reason,
                }),
            },
            Err(source) => Err(TranscodeError::Nvenc {
                rung: rung.name.clone(),
                source,
            }),
        }
    }

    /// Opens a CPU encoder (`encoder` is never NVENC here).
    fn open_cpu(
        encoder: RungEncoder,
        rung: &str,
        x264: X264Settings,
    ) -> Result<RungVideoEncoder, TranscodeError> {
        Ok(match encoder {
            RungEncoder::Rav1e { speed } => RungVideoEncoder::Rav1e(Box::new(
                Rav1eEncoder::new(rav1e_settings(&x264, speed))
                    .map_err(|source| rav1e_error(rung, source))?,
            )),
            RungEncoder::SvtAv1 { preset } => RungVideoEncoder::SvtAv1(Box::new(
                SvtAv1Encoder::new(svt_av1_settings(&x264, preset))
                    .map_err(|source| svt_av1_error(rung, source))?,
            )),
            RungEncoder::X265 => RungVideoEncoder::X265(Box::new(
                X265Encoder::new(x265_settings(&x264))
                    .map_err(|source| x265_error(rung, source))?,
            )),
            RungEncoder::X264 | RungEncoder::Nvenc { .. } => RungVideoEncoder::X264(
                X264Encoder::new(x264).map_err(|source| x264_error(rung, source))?,
            ),
        })
    }

    pub(super) fn kind(&self) -> RungEncoder {
        match self {
            RungVideoEncoder::X264(_) => RungEncoder::X264,
            RungVideoEncoder::X265(_) => RungEncoder::X265,
            RungVideoEncoder::Nvenc(encoder) => RungEncoder::Nvenc {
                codec: match encoder.codec() {
                    NvencCodec::H264 => RungCodec::H264,
                    NvencCodec::Hevc => RungCodec::Hevc,
                    NvencCodec::Av1 => RungCodec::Av1,
                },
            },
            RungVideoEncoder::Rav1e(encoder) => RungEncoder::Rav1e {
                speed: encoder.settings().speed,
            },
            RungVideoEncoder::SvtAv1(encoder) => RungEncoder::SvtAv1 {
                preset: encoder.settings().preset,
            },
        }
    }

    /// The rung's codec parameters: its init segment and CODECS string.
    pub(super) fn track_config(&self) -> TrackConfig {
        match self {
            RungVideoEncoder::X264(encoder) => encoder.track_config(),
            RungVideoEncoder::X265(encoder) => encoder.track_config(),
            RungVideoEncoder::Nvenc(encoder) => encoder.track_config(),
            RungVideoEncoder::Rav1e(encoder) => encoder.track_config(),
            RungVideoEncoder::SvtAv1(encoder) => encoder.track_config(),
        }
    }

    pub(super) fn submit(
        &mut self,
        rung: &str,
        frame: &RawVideoFrame<'_>,
        force_idr: bool,
    ) -> Result<(), TranscodeError> {
        match self {
            RungVideoEncoder::X264(encoder) => encoder
                .submit(frame, force_idr)
                .map_err(|source| x264_error(rung, source)),
            RungVideoEncoder::X265(encoder) => encoder
                .submit(frame, force_idr)
                .map_err(|source| x265_error(rung, source)),
            RungVideoEncoder::Nvenc(encoder) => encoder
                .submit(frame, force_idr)
                .map_err(|source| nvenc_error(rung, source)),
            RungVideoEncoder::Rav1e(encoder) => encoder
                .submit(frame, force_idr)
                .map_err(|source| rav1e_error(rung, source)),
            RungVideoEncoder::SvtAv1(encoder) => encoder
                .submit(frame, force_idr)
                .map_err(|source| svt_av1_error(rung, source)),
        }
    }

    /// Submits a picture that is in GPU memory: only to an NVENC encoder opened for CUDA
    /// frames.
    pub(super) fn submit_cuda(
        &mut self,
        rung: &str,
        picture: &mut CudaPicture,
        force_idr: bool,
    ) -> Result<(), TranscodeError> {
        match self {
            RungVideoEncoder::Nvenc(encoder) => encoder
                .submit_cuda_frame(picture.frame_mut(), force_idr)
                .map_err(|source| nvenc_error(rung, source)),
            _ => Err(TranscodeError::Scaler {
                rung: rung.to_owned(),
                source: LibavError::Cuda {
                    call: "submit",
                    error: "a GPU picture reached a CPU encoder".into(),
                },
            }),
        }
    }

    /// Whether the encoder takes CUDA frames (NVENC opened with the rung's frames pool).
    pub(super) fn takes_cuda_frames(&self) -> bool {
        matches!(self, RungVideoEncoder::Nvenc(encoder) if encoder.takes_cuda_frames())
    }

    pub(super) fn poll_packet(&mut self, rung: &str) -> Result<Option<AccessUnit>, TranscodeError> {
        match self {
            RungVideoEncoder::X264(encoder) => encoder
                .poll_packet()
                .map_err(|source| x264_error(rung, source)),
            RungVideoEncoder::X265(encoder) => encoder
                .poll_packet()
                .map_err(|source| x265_error(rung, source)),
            RungVideoEncoder::Nvenc(encoder) => encoder
                .poll_packet()
                .map_err(|source| nvenc_error(rung, source)),
            RungVideoEncoder::Rav1e(encoder) => encoder
                .poll_packet()
                .map_err(|source| rav1e_error(rung, source)),
            RungVideoEncoder::SvtAv1(encoder) => encoder
                .poll_packet()
                .map_err(|source| svt_av1_error(rung, source)),
        }
    }

    pub(super) fn flush(&mut self, rung: &str) -> Result<(), TranscodeError> {
        match self {
            RungVideoEncoder::X264(encoder) => {
                encoder.flush().map_err(|source| x264_error(rung, source))
            }
            RungVideoEncoder::X265(encoder) => {
                encoder.flush().map_err(|source| x265_error(rung, source))
            }
            RungVideoEncoder::Nvenc(encoder) => {
                encoder.flush().map_err(|source| nvenc_error(rung, source))
            }
            RungVideoEncoder::Rav1e(encoder) => {
                encoder.flush().map_err(|source| rav1e_error(rung, source))
            }
            RungVideoEncoder::SvtAv1(encoder) => encoder
                .flush()
                .map_err(|source| svt_av1_error(rung, source)),
        }
    }
}

fn x264_error(rung: &str, source: x264::X264Error) -> TranscodeError {
    TranscodeError::X264 {
        rung: rung.to_owned(),
        source,
    }
}

fn x265_error(rung: &str, source: LibavError) -> TranscodeError {
    TranscodeError::X265 {
        rung: rung.to_owned(),
        source,
    }
}

fn nvenc_error(rung: &str, source: NvencError) -> TranscodeError {
    TranscodeError::Nvenc {
        rung: rung.to_owned(),
        source,
    }
}

fn rav1e_error(rung: &str, source: Rav1eError) -> TranscodeError {
    TranscodeError::Rav1e {
        rung: rung.to_owned(),
        source,
    }
}

fn svt_av1_error(rung: &str, source: LibavError) -> TranscodeError {
    TranscodeError::SvtAv1 {
        rung: rung.to_owned(),
        source,
    }
}

/// The rav1e settings of an AV1 rung: the rung's size, frame rate, average bitrate and thread
/// budget (the x264 settings the ladder worked out), at `speed`. rav1e's rate control has no
/// peak or buffer to set.
pub fn rav1e_settings(x264: &X264Settings, speed: u8) -> Rav1eSettings {
    Rav1eSettings {
        width: x264.width,
        height: x264.height,
        fps_num: x264.fps_num,
        fps_den: x264.fps_den,
        bitrate_kbps: x264.bitrate_kbps,
        speed,
        threads: x264.threads,
        lookahead_frames: 1,
        keyint_max: None,
    }
}

/// The SVT-AV1 settings of an AV1 rung, as [`rav1e_settings`], with the rung's VBV buffer as
/// SVT-AV1's rate-control buffer.
pub fn svt_av1_settings(x264: &X264Settings, preset: u8) -> SvtAv1Settings {
    SvtAv1Settings {
        width: x264.width,
        height: x264.height,
        fps_num: x264.fps_num,
        fps_den: x264.fps_den,
        bitrate_kbps: x264.bitrate_kbps,
        buffer_kbits: x264.vbv_buffer_kbits,
        preset,
        threads: x264.threads,
        keyint_max: None,
    }
}

/// The x265 settings of an HEVC rung: the rung's size, frame rate, rates, x264 preset name
/// (x265 has the same names) and thread budget. x265 has no `keyint_max` of its own here: IDRs
/// come only where the ladder forces them.
pub fn x265_settings(x264: &X264Settings) -> X265Settings {
    X265Settings {
        width: x264.width,
        height: x264.height,
        fps_num: x264.fps_num,
        fps_den: x264.fps_den,
        bitrate_kbps: x264.bitrate_kbps,
        vbv_max_kbps: x264.vbv_max_kbps,
        vbv_buffer_kbits: x264.vbv_buffer_kbits,
        preset: x264.preset.name(),
        threads: x264.threads,
        keyint_max: None,
    }
}

/// The NVENC settings of a rung: the x264 rung's size, frame rate, rates and profile, with the
/// rung's NVENC preset; `zerolatency` maps to NVENC's low-latency tuning.
/// NVENC settings for `rung` on CUDA device `gpu`, from the rung's x264 settings.
pub fn nvenc_settings(rung: &RungConfig, x264: &X264Settings, gpu: u32) -> NvencSettings {
    NvencSettings {
        width: x264.width,
        height: x264.height,
        fps_num: x264.fps_num,
        fps_den: x264.fps_den,
        bitrate_kbps: x264.bitrate_kbps,
        vbv_max_kbps: x264.vbv_max_kbps,
        vbv_buffer_kbits: x264.vbv_buffer_kbits,
        preset: rung.nvenc_preset,
        tune: if x264.zerolatency {
            NvencTune::LowLatency
        } else {
            NvencTune::HighQuality
        },
        profile: match x264.profile {
            X264Profile::Baseline => NvencProfile::Baseline,
            X264Profile::Main => NvencProfile::Main,
            X264Profile::High => NvencProfile::High,
        },
        gpu,
    }
}

/// Logs the fallback at warning level the first time a reason is seen in this process, at
/// debug level after that: a box without NVENC and hundreds of streams would otherwise repeat
/// the same line for every rung of every publish.
fn warn_once(rung: &str, fallback: &str, reason: &str) {
    static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(PoisonError::into_inner);
    if warned.iter().any(|r| r == reason) {
        tracing::debug!(
            rung,
            fallback,
            reason,
            "NVENC unavailable: rung encoded on the CPU"
        );
        return;
    }
    warned.push(reason.to_owned());
    tracing::warn!(
        rung,
        fallback,
        reason,
        "NVENC unavailable: rungs with encoder = \"nvenc\" are encoded on the CPU \
         (fallback = \"cpu\": x264, x265 or SVT-AV1 by the rung's codec); logged once per reason"
    );
}
