//! FFmpeg driver: codec work done through FFmpeg's libraries (`ffmpeg-next` over Debian's
//! FFmpeg 5.1), behind the traits of [`media::encode`].
//!
//! Today it holds one thing: [`AacEncoder`], AAC-LC (ISO/IEC 14496-3) with FFmpeg's native `aac`
//! encoder, used by the demo source and, later, the audio rung of the ladder. Decoding and
//! scaling (H.264/HEVC in, swscale) come with the transcode ladder.
//!
//! Logging: FFmpeg writes its own log lines to stderr. The first encoder opened lowers FFmpeg's
//! process-wide level to warnings ([`quiet_logging`]), which hides the native AAC encoder's
//! `Qavg:` info line on close but keeps every warning and error visible.

mod aac;

pub use aac::{AacEncoder, AacSettings};

use std::sync::Once;

use media::MediaError;

/// Errors from the FFmpeg driver; each names the FFmpeg call or the input that was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LibavError {
    #[error("FFmpeg {call} failed: {source}")]
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
    #[error("encoder extradata is not a usable AudioSpecificConfig: {0}")]
    Config(#[from] MediaError),
    #[error("audio submitted after flush")]
    SubmitAfterFlush,
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
