//! The crate's one error type (STYLE.md rule 5): every failure of the ladder and of the demo
//! source, each naming where it happened (the rung, the setting, the source) and carrying the
//! driver's own typed error as its source.

use corecast_rav1e::Rav1eError;
use libav::LibavError;
use media::Codec;
use nvenc::NvencError;
use x264::X264Error;

/// Errors of the transcode crate. A corrupt source unit is not one of them: the ladder skips
/// and counts it ([`crate::LadderStats`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeError {
    /// A [`crate::LadderConfig`] value the ladder cannot run with.
    #[error("ladder setting {setting}: {reason}")]
    LadderConfig {
        setting: &'static str,
        reason: String,
    },
    /// The source's decoder could not be opened, or failed for good (not one corrupt unit).
    #[error("ladder source decoder: {0}")]
    Decoder(#[source] LibavError),
    /// `decoder = "nvdec"` where NVDEC cannot be used: the ladder is refused.
    #[error("ladder asks for decoder = \"nvdec\", and NVDEC is unavailable: {reason}")]
    GpuDecoderUnavailable { reason: String },
    /// NVDEC or the GPU scaler failed mid-stream; the ladder handles it by decoding on the
    /// CPU ([`crate::Ladder::handle_unit`] never returns it).
    #[error("GPU failed mid-stream: {reason}")]
    GpuFault { reason: String },
    #[error("rung {rung}: scaler: {source}")]
    Scaler { rung: String, source: LibavError },
    #[error("rung {rung}: x264: {source}")]
    X264 { rung: String, source: X264Error },
    #[error("rung {rung}: nvenc: {source}")]
    Nvenc { rung: String, source: NvencError },
    #[error("rung {rung}: rav1e: {source}")]
    Rav1e { rung: String, source: Rav1eError },
    #[error("rung {rung}: SVT-AV1: {source}")]
    SvtAv1 { rung: String, source: LibavError },
    #[error("rung {rung}: x265: {source}")]
    X265 { rung: String, source: LibavError },
    /// A rung with `encoder = "nvenc"` and `fallback = "fail"` where NVENC cannot be used.
    #[error(
        "rung {rung} asks for NVENC with fallback = \"fail\", and NVENC is unavailable: {reason}"
    )]
    GpuUnavailable { rung: String, reason: String },
    #[error("the ladder takes H.264 or HEVC video of the codec it was built for, got {0:?}")]
    WrongCodec(Codec),
    #[error("source picture is {}x{}, the ladder was built for {}x{}", got.0, got.1, expected.0, expected.1)]
    SourceSizeChanged {
        expected: (u32, u32),
        got: (u32, u32),
    },
    #[error("rung {rung}: the encoder did not make pts {pts} the IDR it was asked for")]
    IdrNotHonoured { rung: String, pts: i64 },
    /// A [`crate::DemoConfig`] value the demo source cannot run with.
    #[error("demo setting {setting}: {reason}")]
    DemoConfig {
        setting: &'static str,
        reason: String,
    },
    /// A demo encoder did something the demo relies on it not doing (e.g. ignored a forced
    /// IDR).
    #[error("demo encoder: {0}")]
    DemoEncoder(String),
    #[error("demo video encoder (x264): {0}")]
    DemoVideo(#[source] X264Error),
    #[error("demo audio encoder (AAC): {0}")]
    DemoAudio(#[source] LibavError),
}
