//! corecast ingest: sans-IO publisher sessions (RTMP) and demuxers (MPEG-TS). Each takes bytes
//! (and a time, where it has timers) and returns bytes to send and events; the engine owns the
//! sockets.
#![forbid(unsafe_code)]

pub mod rtmp;
pub mod srt;
pub mod ts;
