//! The encoder shape every codec driver implements (STYLE.md): submit raw frames, poll encoded
//! access units, flush at the end. Drivers live in drivers/; this crate only names the contract.

use crate::AccessUnit;

/// One raw video picture in planar I420 (YUV 4:2:0, 8-bit).
#[derive(Debug)]
pub struct RawVideoFrame<'a> {
    pub width: u32,
    pub height: u32,
    /// Presentation time on the 90 kHz clock.
    pub pts: i64,
    /// Y, U, V planes and their strides in bytes.
    pub planes: [&'a [u8]; 3],
    pub strides: [usize; 3],
}

/// Interleaved or planar raw audio: `samples` per channel, f32, planar (one slice per channel).
#[derive(Debug)]
pub struct RawAudioFrame<'a> {
    /// Presentation time on the sample-rate clock.
    pub pts: i64,
    pub channels: &'a [&'a [f32]],
}

pub trait VideoEncoder {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Queues one picture; `force_idr` makes it an IDR (with parameter sets in the track config).
    fn submit(&mut self, frame: &RawVideoFrame<'_>, force_idr: bool) -> Result<(), Self::Error>;
    /// The next encoded unit, `Ok(None)` when none is ready yet.
    fn poll_packet(&mut self) -> Result<Option<AccessUnit>, Self::Error>;
    /// No more input: later `poll_packet` calls drain what the encoder holds.
    fn flush(&mut self) -> Result<(), Self::Error>;
}

pub trait AudioEncoder {
    type Error: std::error::Error + Send + Sync + 'static;
    fn submit(&mut self, frame: &RawAudioFrame<'_>) -> Result<(), Self::Error>;
    fn poll_packet(&mut self) -> Result<Option<AccessUnit>, Self::Error>;
    fn flush(&mut self) -> Result<(), Self::Error>;
}
