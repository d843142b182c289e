//! FFmpeg driver: codec work done through FFmpeg's libraries (`ffmpeg-next` over Debian's
//! FFmpeg 5.1), behind the traits of [`media::encode`].
//!
//! - [`AacEncoder`]: AAC-LC (ISO/IEC 14496-3) with FFmpeg's native `aac` encoder, used by the
//!   demo source and, later, the audio rung of the ladder.
//! - [`AudioTranscoder`]: audio that is not AAC (MP2, MP3, AC-3, G.711) decoded, converted with
//!   libswresample and encoded to AAC-LC once per stream.
//! - [`VideoDecoder`]: H.264 (ITU-T H.264) and HEVC (ITU-T H.265) with libavcodec's native
//!   decoders, fed our length-prefixed access units; the first stage of the transcode ladder.
//!   On an NVIDIA GPU it decodes with NVDEC through the CUDA hwaccel ([`DecodeDevice`]).
//! - [`SvtAv1Encoder`]: AV1 with SVT-AV1 through libavcodec's `libsvtav1`, low delay, a forced
//!   key frame by restarting the encoder (FFmpeg 5.1 ignores `pict_type` there; see its docs).
//! - [`X265Encoder`]: HEVC with x265 through libavcodec's `libx265`, zero latency, IDRs where
//!   the caller forces them (`forced-idr`).
//! - [`CudaScaler`]: NVDEC's pictures scaled on the GPU by our own box-filter kernel, so only
//!   rung-size pictures come back to system memory.
//! - [`Scaler`]: libswscale resampling of I420 pictures into reusable [`I420Picture`]s, one per
//!   rung size.
//!
//! Logging: FFmpeg writes its own log lines to stderr. The first encoder opened lowers FFmpeg's
//! process-wide level to warnings ([`quiet_logging`]), which hides the native AAC encoder's
//! `Qavg:` info line on close but keeps every warning and error visible.

mod aac;
mod audio_transcode;
mod cuda_scale;
mod decode;
mod nvdec;
mod scale;
mod svtav1;
mod x265;

pub use aac::{AacEncoder, AacSettings};
pub use audio_transcode::{
    AudioTranscodeStats, AudioTranscoder, AudioTranscoderSettings, SourceAudioCodec,
};
pub use cuda_scale::{
    CudaFrames, CudaPicture, CudaScaler, GpuPicture, box_scale_reference, gpu_scale_check,
    poison_cuda_context_for_fault_tests,
};
pub use decode::{
    DecodeDevice, DecodeStats, DecodedPicture, MAX_DECODE_THREADS, VideoDecoder,
    VideoDecoderSettings, check_length_prefixed,
};
pub use nvdec::{NVDEC_LIBRARIES, nvdec_check};
pub use scale::{I420Picture, ScaleFilter, Scaler};
pub use svtav1::{
    MAX_SVT_AV1_THREADS, SVT_AV1_FASTEST_PRESET, SvtAv1Encoder, SvtAv1Settings,
    quiet_svt_av1_logging,
};
pub use x265::{MAX_X265_THREADS, X265_PRESETS, X265Encoder, X265Settings};

use std::sync::Once;

impl From<media::encode::InvalidSetting> for LibavError {
    fn from(invalid: media::encode::InvalidSetting) -> Self {
        LibavError::InvalidSettings {
            setting: invalid.setting,
            reason: invalid.reason,
        }
    }
}

impl From<media::encode::FrameMismatch> for LibavError {
    fn from(mismatch: media::encode::FrameMismatch) -> Self {
        match mismatch {
            media::encode::FrameMismatch::Size { expected, got } => LibavError::FrameSize {
                what: "picture",
                expected,
                got,
            },
            media::encode::FrameMismatch::PlaneTooSmall(plane) => {
                LibavError::PlaneTooSmall { plane }
            }
        }
    }
}

/// FFmpeg's words for an error code, from `av_strerror`. `ffmpeg_next::Error`'s own `Display`
/// reads a table that only `ffmpeg_next::init` fills, so without that call it printed nothing
/// for codes such as `AVERROR_INVALIDDATA` ("corrupt unit: libavcodec: "); every message of
/// this crate goes through here instead.
pub fn ffmpeg_error_text(error: ffmpeg_next::Error) -> String {
    let mut text = [0 as std::ffi::c_char; ffmpeg_next::ffi::AV_ERROR_MAX_STRING_SIZE];
    // SAFETY: av_strerror writes at most `text.len()` bytes, NUL-terminated, into `text`;
    // for a code it does not know it writes "Error number N occurred".
    unsafe { ffmpeg_next::ffi::av_strerror(error.into(), text.as_mut_ptr(), text.len()) };
    // SAFETY: `text` is NUL-terminated (above, or all zeros from its initialiser).
    unsafe { std::ffi::CStr::from_ptr(text.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Maps a failed libavcodec call to [`LibavError::Ffmpeg`], naming the call.
pub(crate) fn ffmpeg_error(call: &'static str) -> impl FnOnce(ffmpeg_next::Error) -> LibavError {
    move |source| LibavError::Ffmpeg { call, source }
}

use media::{Codec, MediaError};

/// Errors from the FFmpeg driver; each names the FFmpeg call or the input that was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LibavError {
    #[error("FFmpeg {call} failed: {}", ffmpeg_error_text(*source))]
    Ffmpeg {
        call: &'static str,
        source: ffmpeg_next::Error,
    },
    #[error("FFmpeg has no {0} encoder")]
    EncoderNotFound(&'static str),
    #[error("encoder setting {setting}: {reason}")]
    InvalidSettings {
        setting: &'static str,
        reason: String,
    },
    #[error("audio frame has {got} channels, the encoder was opened for {expected}")]
    ChannelCount { expected: usize, got: usize },
    #[error("audio channel {channel} has {len} samples, channel 0 has {expected}")]
    ChannelLength {
        channel: usize,
        len: usize,
        expected: usize,
    },
    #[error("encoder extradata or output does not parse: {0}")]
    Config(#[from] MediaError),
    #[error("input submitted after flush")]
    SubmitAfterFlush,
    #[error("FFmpeg has no {0} decoder")]
    DecoderNotFound(&'static str),
    #[error("expected an {expected} unit, got {got:?}")]
    WrongCodec { expected: &'static str, got: Codec },
    /// One unit could not be decoded; it was dropped and counted, the decoder carries on.
    /// `pts` is -1 when frame threading reported the failure without naming its unit.
    #[error("corrupt unit at pts {pts}: {reason}")]
    CorruptUnit { pts: i64, reason: String },
    #[error("decoded pictures are {0}, only 8-bit 4:2:0 is supported")]
    UnsupportedPixelFormat(String),
    #[error("{what} is {}x{}, expected {}x{}", got.0, got.1, expected.0, expected.1)]
    FrameSize {
        what: &'static str,
        expected: (u32, u32),
        got: (u32, u32),
    },
    /// NVDEC cannot be used here (no driver, no GPU): the caller may decode on the CPU.
    #[error("NVDEC unavailable: {reason}")]
    NvdecUnavailable { reason: String },
    /// A CUDA driver call failed (GPU scaling): the call and the driver's error name.
    #[error("CUDA {call} failed: {error}")]
    Cuda { call: &'static str, error: String },
    #[error("plane {plane} of the picture is shorter than its rows at its stride")]
    PlaneTooSmall { plane: usize },
}

/// Sets FFmpeg's process-wide log level to warnings, once. Called by every encoder constructor;
/// a caller that wants FFmpeg's info lines back can raise the level afterwards with
/// `ffmpeg_next::util::log::set_level`.
pub fn quiet_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Warning);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_errors_read_in_ffmpeg_s_words() {
        assert_eq!(
            ffmpeg_error_text(ffmpeg_next::Error::InvalidData),
            "Invalid data found when processing input"
        );
        assert_eq!(
            ffmpeg_error_text(ffmpeg_next::Error::from(ffmpeg_next::ffi::AVERROR(
                ffmpeg_next::ffi::ENOMEM
            ))),
            "Cannot allocate memory"
        );
        let failed = ffmpeg_error("avcodec_send_packet")(ffmpeg_next::Error::InvalidData);
        assert_eq!(
            failed.to_string(),
            "FFmpeg avcodec_send_packet failed: Invalid data found when processing input"
        );
    }
}
