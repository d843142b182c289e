//! corecast transcode: the encode graph over the codec drivers, and the built-in demo source.
//!
//! Today it holds the demo source ([`DemoSource`]); the decode → scale → encode ladder comes
//! next. Like the protocol crates it reads no clock: media time and wall time come in as
//! arguments. Codec work happens in drivers/ (x264, libav), the only place with `unsafe`.
#![forbid(unsafe_code)]

pub mod demo;

pub use demo::{DemoConfig, DemoError, DemoSource};
