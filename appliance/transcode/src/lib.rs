//! corecast transcode: the encode graph over the codec drivers, and the built-in demo source.
//!
//! - [`Ladder`]: one source H.264 or HEVC stream decoded once (CPU or NVDEC), scaled per rung
//!   and encoded to H.264 with x264 or NVENC, to HEVC with x265 or NVENC (with a fallback rule
//!   when the GPU is not there), or to AV1 with rav1e or SVT-AV1,
//!   every rung with IDRs at exactly the pts where the packager cuts the source rendition
//!   ([`SegmentClock`]). The engine runs it on the transcode core (docs/transcode.md).
//! - [`DemoSource`]: the built-in synthetic stream (docs/demo.md).
//!
//! Like the protocol crates it reads no clock: media time and wall time come in as arguments.
//! Codec work happens in drivers/ (x264, nvenc, libav), the only place with `unsafe`.
#![forbid(unsafe_code)]

pub mod demo;
mod error;
pub mod ladder;

pub use demo::{DemoConfig, DemoSource};
pub use error::TranscodeError;
pub use ladder::{
    DEFAULT_AV1_ENCODER, DecoderChoice, GpuFallback, Ladder, LadderConfig, LadderStats, RungCodec,
    RungConfig, RungEncoder, RungId, RungInfo, RungStats, RungTrack, SegmentClock, UnitPlace,
    rung_size,
};
pub use libav::DecodeDevice;
pub use nvenc::NvencPreset;
