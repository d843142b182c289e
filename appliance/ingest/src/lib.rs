//! corecast ingest: sans-IO publisher sessions. Each session takes bytes and a time and returns
//! bytes to send and events; the engine owns the sockets.
#![forbid(unsafe_code)]

pub mod rtmp;
