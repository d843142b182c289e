//! The encoder shape every codec driver implements (STYLE.md, after rav1e): submit raw frames,
//! poll encoded access units, flush at the end. Drivers live in drivers/; this crate only names
//! the contract.
//!
//! Drain order: after every `submit` (and after `flush`) call `poll_packet` until it returns
//! `Ok(None)`. Units come out in decode order. An encoder knows its [`TrackConfig`] from the
//! moment it is opened, so an init segment can be written before the first unit.

use crate::{AccessUnit, TrackConfig};

/// One raw video picture in planar I420 (YUV 4:2:0, 8-bit, BT.601 limited range), borrowed
/// from the caller: drivers copy what they need before `submit` returns.
#[derive(Debug)]
pub struct RawVideoFrame<'a> {
    pub width: u32,
    pub height: u32,
    /// Presentation time on the 90 kHz clock.
    pub pts: i64,
    /// Y, U, V planes. The chroma planes are `ceil(width / 2)` by `ceil(height / 2)`.
    pub planes: [&'a [u8]; 3],
    /// Bytes from the start of one row to the start of the next, per plane.
    pub strides: [usize; 3],
}

impl RawVideoFrame<'_> {
    /// The (width, height) in pixels of plane `index` (0 = Y, 1 = U, 2 = V).
    pub fn plane_size(&self, index: usize) -> (usize, usize) {
        let (width, height) = (self.width as usize, self.height as usize);
        if index == 0 {
            (width, height)
        } else {
            (width.div_ceil(2), height.div_ceil(2))
        }
    }

    /// Checks that every plane holds its rows at its stride; `Err(plane index)` names the first
    /// plane that is too short or has a stride narrower than its width.
    pub fn check_planes(&self) -> Result<(), usize> {
        for index in 0..3 {
            let (width, height) = self.plane_size(index);
            let stride = self.strides[index];
            let needed = stride
                .checked_mul(height.saturating_sub(1))
                .and_then(|rows| rows.checked_add(width));
            match needed {
                Some(needed) if stride >= width && self.planes[index].len() >= needed => {}
                _ => return Err(index),
            }
        }
        Ok(())
    }
}

/// Raw audio: f32 samples, planar (one slice per channel, all the same length), nominally in
/// -1.0..=1.0. A frame may hold any number of samples; encoders with a fixed frame size
/// (AAC: 1024) gather them.
#[derive(Debug)]
pub struct RawAudioFrame<'a> {
    /// Presentation time of the first sample, on the sample-rate clock.
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
    /// The codec parameters of the units this encoder emits (an `avcC` source for H.264).
    fn track_config(&self) -> TrackConfig;
}

pub trait AudioEncoder {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Queues samples; units come out once a whole codec frame has been gathered.
    fn submit(&mut self, frame: &RawAudioFrame<'_>) -> Result<(), Self::Error>;
    /// The next encoded unit, `Ok(None)` when none is ready yet.
    fn poll_packet(&mut self) -> Result<Option<AccessUnit>, Self::Error>;
    /// No more input: a partial frame is padded with silence and everything held is drained.
    fn flush(&mut self) -> Result<(), Self::Error>;
    /// The codec parameters of the units this encoder emits.
    fn track_config(&self) -> TrackConfig;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_planes_accepts_exact_i420_and_rejects_short_planes() {
        let (y, u, v) = (vec![0u8; 6 * 4], vec![0u8; 3 * 2], vec![0u8; 3 * 2]);
        let frame = RawVideoFrame {
            width: 5,
            height: 4,
            pts: 0,
            planes: [&y[..], &u[..], &v[..]],
            strides: [6, 3, 3],
        };
        assert_eq!(frame.plane_size(1), (3, 2));
        assert_eq!(frame.check_planes(), Ok(()));

        let short = RawVideoFrame {
            planes: [&y[..], &u[..5], &v[..]],
            ..frame
        };
        assert_eq!(short.check_planes(), Err(1));
        let narrow = RawVideoFrame {
            strides: [6, 3, 2],
            planes: [&y[..], &u[..], &v[..]],
            ..short
        };
        assert_eq!(narrow.check_planes(), Err(2));
    }
}
