//! corecast transcode: the encode graph over the codec drivers, and the built-in demo source.

pub mod demo;

pub use demo::{DemoConfig, DemoError, DemoSource};
