//! The encoder shape every codec driver implements (STYLE.md, after rav1e): submit raw frames,
//! poll encoded access units, flush at the end. Drivers live in drivers/; this crate only names
//! the contract.
//!
//! Drain order: after every `submit` (and after `flush`) call `poll_packet` until it returns
//! `Ok(None)`. Units come out in decode order. An encoder knows its [`TrackConfig`] from the
//! moment it is opened, so an init segment can be written before the first unit.

use std::ops::RangeInclusive;

use crate::{AccessUnit, TrackConfig};

/// One encoder setting out of range: which setting, and why. Each driver maps it into its own
/// error type's invalid-settings variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSetting {
    pub setting: &'static str,
    pub reason: String,
}

impl InvalidSetting {
    pub fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        InvalidSetting {
            setting,
            reason: reason.into(),
        }
    }
}

/// Checks a picture size: both sides even (4:2:0 chroma has half as many samples each way) and
/// in `min_side..=max_side`, the limits of the encoder at hand.
pub fn check_picture_size(
    width: u32,
    height: u32,
    min_side: u32,
    max_side: u32,
) -> Result<(), InvalidSetting> {
    for (setting, value) in [("width", width), ("height", height)] {
        if !(min_side..=max_side).contains(&value) || !value.is_multiple_of(2) {
            return Err(InvalidSetting::new(
                setting,
                format!("{value} is not even in {min_side}..={max_side}"),
            ));
        }
    }
    Ok(())
}

/// Checks a frame rate `num / den` (setting `fps`): both parts non-zero, at most 1000 fps.
pub fn check_frame_rate(num: u32, den: u32) -> Result<(), InvalidSetting> {
    if num == 0 || den == 0 || u64::from(num) > 1000 * u64::from(den) {
        return Err(InvalidSetting::new(
            "fps",
            format!("{num}/{den} is not in (0, 1000]"),
        ));
    }
    Ok(())
}

/// Checks that `value` of `setting` (bitrate, threads, preset, ...) lies in `range`.
pub fn check_in_range(
    setting: &'static str,
    value: u32,
    range: RangeInclusive<u32>,
) -> Result<(), InvalidSetting> {
    if !range.contains(&value) {
        return Err(InvalidSetting::new(
            setting,
            format!("{value} is not in {}..={}", range.start(), range.end()),
        ));
    }
    Ok(())
}

/// Checks `keyint_max` (frames between automatic key frames; `None` = only forced ones):
/// 0 frames is refused.
pub fn check_keyint_max(keyint_max: Option<u32>) -> Result<(), InvalidSetting> {
    if keyint_max == Some(0) {
        return Err(InvalidSetting::new("keyint_max", "0 frames"));
    }
    Ok(())
}

/// The VBV every rate-controlled encoder here gets: an average bitrate in kbit/s, and a peak
/// rate (kbit/s) and buffer (kbit) where 0 means the default: the average bitrate, and one
/// second at the peak rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vbv {
    pub bitrate_kbps: u32,
    pub max_kbps: u32,
    pub buffer_kbits: u32,
}

impl Vbv {
    /// Checks the bitrate (1 kbit/s to 1 Gbit/s), the peak rate and the buffer.
    pub fn check(self) -> Result<(), InvalidSetting> {
        check_in_range("bitrate_kbps", self.bitrate_kbps, 1..=1_000_000)?;
        if self.max_kbps > 1_000_000 || self.buffer_kbits > 10_000_000 {
            return Err(InvalidSetting::new(
                "vbv",
                "peak rate or buffer out of range",
            ));
        }
        Ok(())
    }

    /// The peak rate in kbit/s, the default applied.
    pub fn peak_kbps(self) -> u32 {
        if self.max_kbps == 0 {
            self.bitrate_kbps
        } else {
            self.max_kbps
        }
    }

    /// The buffer in kbit, the default applied.
    pub fn buffer_kbits(self) -> u32 {
        if self.buffer_kbits == 0 {
            self.peak_kbps()
        } else {
            self.buffer_kbits
        }
    }
}

/// Implements `From<InvalidSetting>` and `From<FrameMismatch>` for a driver's error enum, so
/// `?` turns the shared checks into its own variants. The enum must have the variants
/// `InvalidSettings { setting, reason }`, `FrameSize { width, height, got_width, got_height }`
/// (the encoder's size, then the picture's) and `PlaneTooSmall { plane }`.
#[macro_export]
macro_rules! impl_encoder_error_from {
    ($error:ident) => {
        impl ::std::convert::From<$crate::encode::InvalidSetting> for $error {
            fn from(invalid: $crate::encode::InvalidSetting) -> Self {
                $error::InvalidSettings {
                    setting: invalid.setting,
                    reason: invalid.reason,
                }
            }
        }

        impl ::std::convert::From<$crate::encode::FrameMismatch> for $error {
            fn from(mismatch: $crate::encode::FrameMismatch) -> Self {
                match mismatch {
                    $crate::encode::FrameMismatch::Size {
                        expected: (width, height),
                        got: (got_width, got_height),
                    } => $error::FrameSize {
                        width,
                        height,
                        got_width,
                        got_height,
                    },
                    $crate::encode::FrameMismatch::PlaneTooSmall(plane) => {
                        $error::PlaneTooSmall { plane }
                    }
                }
            }
        }
    };
}

/// Why a picture does not fit the encoder it was submitted to. Each driver maps it into its
/// own error type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameMismatch {
    /// The picture is `got` (width, height), the encoder was opened for `expected`.
    Size {
        expected: (u32, u32),
        got: (u32, u32),
    },
    /// This plane (0 = Y, 1 = U, 2 = V) is shorter than its rows at its stride, or its stride
    /// is narrower than its width.
    PlaneTooSmall(usize),
}

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

    /// Copies plane `index` row by row into `target`, whose rows start `stride` bytes apart (a
    /// codec library's picture buffer, padded differently from ours); `Err(index)` when either
    /// side is too short to hold the plane.
    pub fn copy_plane_into(
        &self,
        index: usize,
        target: &mut [u8],
        stride: usize,
    ) -> Result<(), usize> {
        let (width, height) = self.plane_size(index);
        let (source, source_stride) = match (self.planes.get(index), self.strides.get(index)) {
            (Some(source), Some(source_stride)) => (*source, *source_stride),
            _ => return Err(index),
        };
        for row in 0..height {
            let (Some(from), Some(to)) = (
                source.get(row * source_stride..row * source_stride + width),
                target.get_mut(row * stride..row * stride + width),
            ) else {
                return Err(index);
            };
            to.copy_from_slice(from);
        }
        Ok(())
    }

    /// Checks that this picture is `width` x `height` (the encoder's size) and that its planes
    /// hold it ([`RawVideoFrame::check_planes`]): what every video encoder checks first.
    pub fn check_fits(&self, width: u32, height: u32) -> Result<(), FrameMismatch> {
        if (self.width, self.height) != (width, height) {
            return Err(FrameMismatch::Size {
                expected: (width, height),
                got: (self.width, self.height),
            });
        }
        self.check_planes().map_err(FrameMismatch::PlaneTooSmall)
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
    fn copy_plane_into_moves_rows_between_strides_and_refuses_short_targets() {
        // 3x2 luma at stride 4 (one padding byte per row), chroma 2x1 at stride 2.
        let y = [1, 2, 3, 0, 4, 5, 6, 0];
        let (u, v) = ([7, 8], [9, 10]);
        let frame = RawVideoFrame {
            width: 3,
            height: 2,
            pts: 0,
            planes: [&y[..], &u[..], &v[..]],
            strides: [4, 2, 2],
        };
        let mut target = [0xeeu8; 10];
        frame.copy_plane_into(0, &mut target, 5).expect("fits");
        assert_eq!(target, [1, 2, 3, 0xee, 0xee, 4, 5, 6, 0xee, 0xee]);
        let mut chroma = [0u8; 2];
        frame.copy_plane_into(2, &mut chroma, 2).expect("fits");
        assert_eq!(chroma, [9, 10]);
        assert_eq!(frame.copy_plane_into(0, &mut [0u8; 7], 5), Err(0));
        assert_eq!(frame.copy_plane_into(3, &mut target, 5), Err(3));
    }

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

    #[test]
    fn check_fits_names_a_size_mismatch_before_short_planes() {
        let (y, u, v) = (vec![0u8; 4 * 2], vec![0u8; 2], vec![0u8; 2]);
        let frame = RawVideoFrame {
            width: 4,
            height: 2,
            pts: 0,
            planes: [&y[..], &u[..], &v[..]],
            strides: [4, 2, 2],
        };
        assert_eq!(frame.check_fits(4, 2), Ok(()));
        assert_eq!(
            frame.check_fits(6, 2),
            Err(FrameMismatch::Size {
                expected: (6, 2),
                got: (4, 2)
            })
        );
        let short = RawVideoFrame {
            planes: [&y[..7], &u[..], &v[..]],
            ..frame
        };
        assert_eq!(short.check_fits(4, 2), Err(FrameMismatch::PlaneTooSmall(0)));
        let wrong_and_short = RawVideoFrame { width: 2, ..short };
        assert!(matches!(
            wrong_and_short.check_fits(4, 2),
            Err(FrameMismatch::Size { .. })
        ));
    }

    /// A driver error enum with the variants `impl_encoder_error_from!` maps into.
    #[derive(Debug, PartialEq)]
    enum DriverError {
        InvalidSettings {
            setting: &'static str,
            reason: String,
        },
        FrameSize {
            width: u32,
            height: u32,
            got_width: u32,
            got_height: u32,
        },
        PlaneTooSmall {
            plane: usize,
        },
    }

    crate::impl_encoder_error_from!(DriverError);

    #[test]
    fn shared_errors_map_into_a_driver_enum() {
        assert_eq!(
            DriverError::from(InvalidSetting::new("gpu", "64 is not in 0..=63")),
            DriverError::InvalidSettings {
                setting: "gpu",
                reason: "64 is not in 0..=63".into()
            }
        );
        let size = FrameMismatch::Size {
            expected: (320, 240),
            got: (640, 240),
        };
        assert_eq!(
            DriverError::from(size),
            DriverError::FrameSize {
                width: 320,
                height: 240,
                got_width: 640,
                got_height: 240
            }
        );
        assert_eq!(
            DriverError::from(FrameMismatch::PlaneTooSmall(2)),
            DriverError::PlaneTooSmall { plane: 2 }
        );
    }

    #[test]
    fn picture_size_must_be_even_and_inside_the_limits() {
        assert_eq!(check_picture_size(2, 16384, 2, 16384), Ok(()));
        assert_eq!(check_picture_size(64, 64, 64, 4096), Ok(()));
        let error = check_picture_size(321, 240, 2, 16384).unwrap_err();
        assert_eq!(
            error,
            InvalidSetting::new("width", "321 is not even in 2..=16384")
        );
        assert_eq!(
            check_picture_size(320, 62, 64, 4096).unwrap_err().setting,
            "height"
        );
        assert_eq!(
            check_picture_size(320, 4098, 2, 4096).unwrap_err().setting,
            "height"
        );
        assert_eq!(
            check_picture_size(2, 240, 4, 4096).unwrap_err().setting,
            "width"
        );
    }

    #[test]
    fn frame_rate_needs_both_parts_and_at_most_1000_fps() {
        assert_eq!(check_frame_rate(30, 1), Ok(()));
        assert_eq!(check_frame_rate(30_000, 1001), Ok(()));
        assert_eq!(check_frame_rate(1000, 1), Ok(()));
        assert_eq!(
            check_frame_rate(1001, 1),
            Err(InvalidSetting::new("fps", "1001/1 is not in (0, 1000]"))
        );
        assert!(check_frame_rate(0, 1).is_err());
        assert!(check_frame_rate(30, 0).is_err());
        // A denominator whose thousandfold overflows u32 is still compared correctly.
        assert_eq!(check_frame_rate(u32::MAX, u32::MAX), Ok(()));
    }

    #[test]
    fn in_range_and_keyint_checks_name_the_setting() {
        assert_eq!(check_in_range("threads", 1, 1..=16), Ok(()));
        assert_eq!(check_in_range("threads", 16, 1..=16), Ok(()));
        assert_eq!(
            check_in_range("threads", 0, 1..=16),
            Err(InvalidSetting::new("threads", "0 is not in 1..=16"))
        );
        assert_eq!(
            check_in_range("bitrate_kbps", 1_000_001, 1..=1_000_000)
                .unwrap_err()
                .reason,
            "1000001 is not in 1..=1000000"
        );
        let vbv = |bitrate_kbps, max_kbps, buffer_kbits| Vbv {
            bitrate_kbps,
            max_kbps,
            buffer_kbits,
        };
        assert_eq!(vbv(700, 0, 0).peak_kbps(), 700);
        assert_eq!(vbv(700, 0, 0).buffer_kbits(), 700);
        assert_eq!(vbv(700, 800, 0).buffer_kbits(), 800);
        assert_eq!(vbv(700, 800, 1600).buffer_kbits(), 1600);
        assert!(vbv(0, 0, 0).check().is_err());
        assert!(vbv(700, 1_000_001, 0).check().is_err());
        assert!(vbv(700, 0, 10_000_001).check().is_err());
        assert_eq!(vbv(700, 800, 1600).check(), Ok(()));
        assert_eq!(check_keyint_max(None), Ok(()));
        assert_eq!(check_keyint_max(Some(1)), Ok(()));
        assert_eq!(
            check_keyint_max(Some(0)),
            Err(InvalidSetting::new("keyint_max", "0 frames"))
        );
    }
}
