//! The encoder of one rung: x264, or NVENC with its fallback rule (docs/transcode.md, "GPU
//! rungs"). Both implement [`VideoEncoder`]; this enum keeps the ladder free of trait objects
//! and keeps each encoder's typed errors.

use std::sync::{Mutex, PoisonError};

use media::encode::{RawVideoFrame, VideoEncoder};
use media::{AccessUnit, AvcConfig};
use nvenc::{NvencEncoder, NvencError, NvencProfile, NvencSettings, NvencTune};
use x264::{X264Encoder, X264Profile, X264Settings};

use super::LadderError;
use super::config::{GpuFallback, RungConfig, RungEncoder};

/// A rung's open encoder.
pub(super) enum RungVideoEncoder {
    X264(X264Encoder),
    Nvenc(Box<NvencEncoder>),
}

impl RungVideoEncoder {
    /// Opens the encoder `rung` asks for. An NVENC rung where NVENC is unavailable follows the
    /// rung's fallback: x264 with the same settings (the second value is then the reason), or
    /// [`LadderError::GpuUnavailable`].
    pub(super) fn open(
        rung: &RungConfig,
        x264: X264Settings,
    ) -> Result<(RungVideoEncoder, Option<String>), LadderError> {
        let x264_encoder = |settings| {
            X264Encoder::new(settings)
                .map(RungVideoEncoder::X264)
                .map_err(|source| LadderError::Encoder {
                    rung: rung.name.clone(),
                    source,
                })
        };
        if rung.encoder == RungEncoder::X264 {
            return Ok((x264_encoder(x264)?, None));
        }
        match NvencEncoder::new(nvenc_settings(rung, &x264)) {
            Ok(encoder) => Ok((RungVideoEncoder::Nvenc(Box::new(encoder)), None)),
            Err(NvencError::Unavailable { reason }) => match rung.fallback {
                GpuFallback::Cpu => {
                    warn_once(&rung.name, &reason);
                    Ok((x264_encoder(x264)?, Some(reason)))
                }
                GpuFallback::Fail => Err(LadderError::GpuUnavailable {
                    rung: rung.name.clone(),
                    reason,
                }),
            },
            Err(source) => Err(LadderError::Nvenc {
                rung: rung.name.clone(),
                source,
            }),
        }
    }

    pub(super) fn kind(&self) -> RungEncoder {
        match self {
            RungVideoEncoder::X264(_) => RungEncoder::X264,
            RungVideoEncoder::Nvenc(_) => RungEncoder::Nvenc,
        }
    }

    pub(super) fn avc_config(&self) -> &AvcConfig {
        match self {
            RungVideoEncoder::X264(encoder) => encoder.avc_config(),
            RungVideoEncoder::Nvenc(encoder) => encoder.avc_config(),
        }
    }

    pub(super) fn submit(
        &mut self,
        rung: &str,
        frame: &RawVideoFrame<'_>,
        force_idr: bool,
    ) -> Result<(), LadderError> {
        match self {
            RungVideoEncoder::X264(encoder) => encoder
                .submit(frame, force_idr)
                .map_err(|source| x264_error(rung, source)),
            RungVideoEncoder::Nvenc(encoder) => encoder
                .submit(frame, force_idr)
                .map_err(|source| nvenc_error(rung, source)),
        }
    }

    pub(super) fn poll_packet(&mut self, rung: &str) -> Result<Option<AccessUnit>, LadderError> {
        match self {
            RungVideoEncoder::X264(encoder) => encoder
                .poll_packet()
                .map_err(|source| x264_error(rung, source)),
            RungVideoEncoder::Nvenc(encoder) => encoder
                .poll_packet()
                .map_err(|source| nvenc_error(rung, source)),
        }
    }

    pub(super) fn flush(&mut self, rung: &str) -> Result<(), LadderError> {
        match self {
            RungVideoEncoder::X264(encoder) => {
                encoder.flush().map_err(|source| x264_error(rung, source))
            }
            RungVideoEncoder::Nvenc(encoder) => {
                encoder.flush().map_err(|source| nvenc_error(rung, source))
            }
        }
    }
}

fn x264_error(rung: &str, source: x264::X264Error) -> LadderError {
    LadderError::Encoder {
        rung: rung.to_owned(),
        source,
    }
}

fn nvenc_error(rung: &str, source: NvencError) -> LadderError {
    LadderError::Nvenc {
        rung: rung.to_owned(),
        source,
    }
}

/// The NVENC settings of a rung: the x264 rung's size, frame rate, rates and profile, with the
/// rung's NVENC preset; `zerolatency` maps to NVENC's low-latency tuning.
pub fn nvenc_settings(rung: &RungConfig, x264: &X264Settings) -> NvencSettings {
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
        gpu: 0,
    }
}

/// Logs the fallback at warning level the first time a reason is seen in this process, at
/// debug level after that: a box without NVENC and hundreds of streams would otherwise repeat
/// the same line for every rung of every publish.
fn warn_once(rung: &str, reason: &str) {
    static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(PoisonError::into_inner);
    if warned.iter().any(|r| r == reason) {
        tracing::debug!(rung, reason, "NVENC unavailable: rung encoded with x264");
        return;
    }
    warned.push(reason.to_owned());
    tracing::warn!(
        rung,
        reason,
        "NVENC unavailable: rungs with encoder = \"nvenc\" are encoded with x264 \
         (fallback = \"cpu\"); logged once per reason"
    );
}
