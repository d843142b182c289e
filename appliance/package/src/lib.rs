//! corecast packaging: CMAF fMP4 and MPEG-TS muxers, the live segmenter, HLS and DASH writers.
//! Pure code: it takes access units and times and returns bytes to publish.
#![forbid(unsafe_code)]

pub mod dash;
pub mod fmp4;
pub mod hls;
pub mod live;
pub mod ts;

pub use live::{LivePackager, ObjectKind, PackagerConfig, PackagerOutput, Rendition};
