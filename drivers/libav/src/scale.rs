//! Picture scaling with libswscale: I420 of one size to I420 of another.
//!
//! One [`Scaler`] per (source size, rung size) pair, made once and reused for every picture.
//! Output goes into an [`I420Picture`], an aligned buffer allocated once by libavutil and
//! overwritten by each call, so scaling allocates nothing per frame. [`Scaler::scale`] writes
//! into the scaler's own picture; [`Scaler::scale_into`] into the caller's (the ladder keeps a
//! small pool of them per rung as its encode queue).
//!
//! Input is any [`RawVideoFrame`] of the scaler's source size: a decoded picture, a rendered
//! test pattern. Both sides are 8-bit 4:2:0 with the same (limited) range, so swscale only
//! resamples; no colour conversion happens.

use std::fmt;
use std::ptr::{self, NonNull};

use ffmpeg_next::ffi;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::frame;
use media::encode::RawVideoFrame;

use crate::LibavError;

/// The resampling filter (swscale's `SWS_*` flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScaleFilter {
    /// Cheapest that still looks right for downscaling by up to 2x per axis.
    Bilinear,
    /// Sharper, about 1.5x the cost of bilinear; the default, as in ffmpeg's `scale` filter.
    #[default]
    Bicubic,
}

impl ScaleFilter {
    fn flags(self) -> i32 {
        match self {
            ScaleFilter::Bilinear => ffi::SWS_BILINEAR,
            ScaleFilter::Bicubic => ffi::SWS_BICUBIC,
        }
    }
}

/// An owned I420 picture in memory that libavutil allocated (rows aligned for SIMD), with a
/// presentation time. Reused from frame to frame.
pub struct I420Picture {
    frame: frame::Video,
}

impl fmt::Debug for I420Picture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("I420Picture")
            .field("width", &self.frame.width())
            .field("height", &self.frame.height())
            .field("pts", &self.frame.pts())
            .finish()
    }
}

impl I420Picture {
    /// Allocates a `width` x `height` picture (both even, at most 16384).
    pub fn new(width: u32, height: u32) -> Result<Self, LibavError> {
        check_size("picture", width, height)?;
        let frame = frame::Video::new(Pixel::YUV420P, width, height);
        // SAFETY: `frame` owns a valid AVFrame; reading its first data pointer tells whether
        // av_frame_get_buffer (whose result ffmpeg-next ignores) allocated the planes.
        let allocated = unsafe { !(*frame.as_ptr()).data[0].is_null() };
        if !allocated {
            return Err(LibavError::Ffmpeg {
                call: "av_frame_get_buffer",
                source: ffmpeg_next::Error::from(ffi::AVERROR(ffi::ENOMEM)),
            });
        }
        Ok(I420Picture { frame })
    }

    pub fn width(&self) -> u32 {
        self.frame.width()
    }

    pub fn height(&self) -> u32 {
        self.frame.height()
    }

    pub fn pts(&self) -> i64 {
        self.frame.pts().unwrap_or(0)
    }

    pub fn set_pts(&mut self, pts: i64) {
        self.frame.set_pts(Some(pts));
    }

    /// Plane `index` (0 = Y, 1 = U, 2 = V) to write into: its first byte and its stride. It
    /// holds the plane's rows (`width`, or `ceil(width / 2)` for chroma, bytes each) at that
    /// stride.
    pub(crate) fn plane_mut(&mut self, index: usize) -> (*mut u8, usize) {
        let stride = self.frame.stride(index);
        (self.frame.data_mut(index).as_mut_ptr(), stride)
    }

    /// The underlying AVFrame (yuv420p, system memory), for FFmpeg calls in this crate.
    pub(crate) fn frame_ptr(&self) -> *const ffi::AVFrame {
        // SAFETY: only the pointer is taken; the frame it points to lives as long as `self`.
        unsafe { self.frame.as_ptr() }
    }

    /// The picture as an encoder input.
    pub fn as_raw(&self) -> RawVideoFrame<'_> {
        let frame = &self.frame;
        RawVideoFrame {
            width: frame.width(),
            height: frame.height(),
            pts: self.pts(),
            // Allocated as YUV420P in `new`: three planes, so `data` stays in bounds.
            planes: [frame.data(0), frame.data(1), frame.data(2)],
            strides: [frame.stride(0), frame.stride(1), frame.stride(2)],
        }
    }
}

/// An owned swscale context, freed when dropped.
struct SwsHandle(NonNull<ffi::SwsContext>);

// SAFETY: an SwsContext has no thread affinity; it may be used from any thread as long as calls
// are not concurrent, which `&mut self` on the only owner (Scaler) guarantees.
unsafe impl Send for SwsHandle {}

impl Drop for SwsHandle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from sws_getContext and is freed exactly once, here.
        unsafe { ffi::sws_freeContext(self.0.as_ptr()) };
    }
}

/// Scales I420 pictures of one size to another. See the module docs.
pub struct Scaler {
    context: SwsHandle,
    source: (u32, u32),
    output: I420Picture,
    filter: ScaleFilter,
}

impl fmt::Debug for Scaler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scaler")
            .field("source", &self.source)
            .field("target", &(self.output.width(), self.output.height()))
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl Scaler {
    pub fn new(
        source: (u32, u32),
        target: (u32, u32),
        filter: ScaleFilter,
    ) -> Result<Self, LibavError> {
        check_size("source", source.0, source.1)?;
        let output = I420Picture::new(target.0, target.1)?;
        // SAFETY: sizes are checked positive and far inside c_int; both formats are valid pixel
        // formats; null filters and params select swscale's defaults.
        let context = unsafe {
            ffi::sws_getContext(
                source.0 as i32,
                source.1 as i32,
                ffi::AVPixelFormat::AV_PIX_FMT_YUV420P,
                target.0 as i32,
                target.1 as i32,
                ffi::AVPixelFormat::AV_PIX_FMT_YUV420P,
                filter.flags(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null(),
            )
        };
        let context = NonNull::new(context)
            .map(SwsHandle)
            .ok_or(LibavError::Ffmpeg {
                call: "sws_getContext",
                source: ffmpeg_next::Error::InvalidData,
            })?;
        Ok(Scaler {
            context,
            source,
            output,
            filter,
        })
    }

    pub fn source_size(&self) -> (u32, u32) {
        self.source
    }

    pub fn target_size(&self) -> (u32, u32) {
        (self.output.width(), self.output.height())
    }

    /// Scales `input` into the scaler's own picture and returns it (valid until the next call).
    pub fn scale(&mut self, input: &RawVideoFrame<'_>) -> Result<RawVideoFrame<'_>, LibavError> {
        scale_frame(&mut self.context, self.source, input, &mut self.output)?;
        Ok(self.output.as_raw())
    }

    /// Scales `input` into `output`, which must have the scaler's target size; the pts is
    /// carried over.
    pub fn scale_into(
        &mut self,
        input: &RawVideoFrame<'_>,
        output: &mut I420Picture,
    ) -> Result<(), LibavError> {
        let target = self.target_size();
        if (output.width(), output.height()) != target {
            return Err(LibavError::FrameSize {
                what: "scaler output",
                expected: target,
                got: (output.width(), output.height()),
            });
        }
        scale_frame(&mut self.context, self.source, input, output)
    }
}

fn scale_frame(
    context: &mut SwsHandle,
    source: (u32, u32),
    input: &RawVideoFrame<'_>,
    output: &mut I420Picture,
) -> Result<(), LibavError> {
    if (input.width, input.height) != source {
        return Err(LibavError::FrameSize {
            what: "scaler input",
            expected: source,
            got: (input.width, input.height),
        });
    }
    input
        .check_planes()
        .map_err(|plane| LibavError::PlaneTooSmall { plane })?;
    let mut in_strides = [0i32; 4];
    for (slot, stride) in in_strides.iter_mut().zip(input.strides) {
        *slot = i32::try_from(stride).map_err(|_| LibavError::PlaneTooSmall { plane: 0 })?;
    }
    let in_planes: [*const u8; 4] = [
        input.planes[0].as_ptr(),
        input.planes[1].as_ptr(),
        input.planes[2].as_ptr(),
        ptr::null(),
    ];
    // SAFETY: `check_planes` proved each input plane holds its rows at its stride for the
    // scaler's source size, which is what the context reads; the output frame was allocated by
    // av_frame_get_buffer for the context's target size and format, and `&mut I420Picture`
    // means nothing else reads or writes it meanwhile (the encoder copies its input before
    // returning, so no earlier submit still points into it).
    let rows = unsafe {
        let out = output.frame.as_mut_ptr();
        ffi::sws_scale(
            context.0.as_ptr(),
            in_planes.as_ptr(),
            in_strides.as_ptr(),
            0,
            source.1 as i32,
            (*out).data.as_ptr(),
            (*out).linesize.as_ptr(),
        )
    };
    if rows <= 0 {
        return Err(LibavError::Ffmpeg {
            call: "sws_scale",
            source: ffmpeg_next::Error::from(rows),
        });
    }
    output.set_pts(input.pts);
    Ok(())
}

/// Converts decoded pictures of another YUV layout (4:2:2, 4:4:4, 10- or 12-bit, full range)
/// to 8-bit limited-range I420 of the same size, which is what the ladder's scalers and
/// encoders take. Made at the first such picture and again when the layout or size changes.
pub(crate) struct ToI420 {
    context: SwsHandle,
    /// Source format (`AVPixelFormat` as an int), width, height.
    from: (i32, u32, u32),
    output: I420Picture,
}

impl ToI420 {
    /// Converts `frame` (a decoded software picture) through `slot`'s converter, made or
    /// remade for its layout, and returns the I420 picture (pts not set).
    pub(crate) fn convert<'a>(
        slot: &'a mut Option<ToI420>,
        frame: &frame::Video,
    ) -> Result<&'a I420Picture, LibavError> {
        // SAFETY: `frame` holds a decoded picture; these are plain fields.
        let (format, width, height) = unsafe {
            let raw = &*frame.as_ptr();
            (raw.format, raw.width, raw.height)
        };
        let unsupported = || {
            LibavError::UnsupportedPixelFormat(format!(
                "{:?} {width}x{height} (swscale cannot convert it to 8-bit 4:2:0)",
                frame.format()
            ))
        };
        let (w, h) = (
            u32::try_from(width).map_err(|_| unsupported())?,
            u32::try_from(height).map_err(|_| unsupported())?,
        );
        if slot.as_ref().is_none_or(|c| c.from != (format, w, h)) {
            check_size("decoded picture", w, h).map_err(|_| unsupported())?;
            // SAFETY: plain arguments; a format swscale cannot read gives a null context.
            let context = unsafe {
                ffi::sws_getContext(
                    width,
                    height,
                    frame.format().into(),
                    width,
                    height,
                    ffi::AVPixelFormat::AV_PIX_FMT_YUV420P,
                    ffi::SWS_BILINEAR,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    ptr::null(),
                )
            };
            let context = NonNull::new(context).ok_or_else(unsupported)?;
            *slot = Some(ToI420 {
                context: SwsHandle(context),
                from: (format, w, h),
                output: I420Picture::new(w, h)?,
            });
        }
        let Some(converter) = slot.as_mut() else {
            unreachable!("made above")
        };
        // SAFETY: the context was made for this frame's format and size; the frame's planes
        // and line sizes come from the decoder for that format, and the output was allocated
        // for the context's target size and format, borrowed mutably.
        let rows = unsafe {
            let input = &*frame.as_ptr();
            let out = converter.output.frame.as_mut_ptr();
            ffi::sws_scale(
                converter.context.0.as_ptr(),
                input.data.as_ptr() as *const *const u8,
                input.linesize.as_ptr(),
                0,
                height,
                (*out).data.as_ptr(),
                (*out).linesize.as_ptr(),
            )
        };
        if rows <= 0 {
            return Err(LibavError::Ffmpeg {
                call: "sws_scale (to 8-bit 4:2:0)",
                source: ffmpeg_next::Error::from(rows),
            });
        }
        Ok(&converter.output)
    }

    pub(crate) fn output(&self) -> &I420Picture {
        &self.output
    }
}

pub(crate) fn check_size(what: &'static str, width: u32, height: u32) -> Result<(), LibavError> {
    let valid = |v: u32| (2..=16384).contains(&v) && v.is_multiple_of(2);
    if valid(width) && valid(height) {
        Ok(())
    } else {
        Err(LibavError::InvalidSettings {
            setting: what,
            reason: format!("{width}x{height} is not even in 2..=16384"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture whose luma is a horizontal ramp and chroma flat, from our own buffers with
    /// strides wider than the rows (as a decoder's are).
    fn ramp(width: u32, height: u32) -> (Vec<u8>, Vec<u8>, usize, usize) {
        let (w, h) = (width as usize, height as usize);
        let (y_stride, c_stride) = (w + 16, w / 2 + 8);
        let mut y = vec![0u8; y_stride * h];
        for row in y.chunks_mut(y_stride) {
            for (x, pixel) in row.iter_mut().take(w).enumerate() {
                *pixel = (16 + x * 219 / (w - 1)) as u8;
            }
        }
        let c = vec![128u8; c_stride * h / 2];
        (y, c, y_stride, c_stride)
    }

    #[test]
    fn halves_a_ramp_and_keeps_its_levels() {
        let (y, c, ys, cs) = ramp(64, 32);
        let input = RawVideoFrame {
            width: 64,
            height: 32,
            pts: 4242,
            planes: [&y, &c, &c],
            strides: [ys, cs, cs],
        };
        for filter in [ScaleFilter::Bilinear, ScaleFilter::Bicubic] {
            let mut scaler = Scaler::new((64, 32), (32, 16), filter).unwrap();
            let out = scaler.scale(&input).unwrap();
            assert_eq!((out.width, out.height, out.pts), (32, 16, 4242));
            assert_eq!(out.check_planes(), Ok(()));
            let row = &out.planes[0][..32];
            // Left edge dark, right edge bright, rising left to right.
            assert!(row[0] < 30 && row[31] > 220, "{filter:?}: {row:?}");
            assert!(
                row.windows(2).all(|p| p[1] + 2 >= p[0]),
                "{filter:?}: {row:?}"
            );
            // Every row the same but for swscale's ordered dither (±1); flat chroma stays flat.
            let last = &out.planes[0][out.strides[0] * 15..][..32];
            assert!(
                row.iter().zip(last).all(|(a, b)| a.abs_diff(*b) <= 1),
                "{last:?}"
            );
            assert!(out.planes[1][..16].iter().all(|&v| v.abs_diff(128) <= 1));
        }
    }

    #[test]
    fn wrong_sizes_are_typed_errors() {
        let (y, c, ys, cs) = ramp(64, 32);
        let input = RawVideoFrame {
            width: 64,
            height: 32,
            pts: 0,
            planes: [&y, &c, &c],
            strides: [ys, cs, cs],
        };
        let mut scaler = Scaler::new((320, 180), (160, 90), ScaleFilter::Bilinear).unwrap();
        assert!(matches!(
            scaler.scale(&input),
            Err(LibavError::FrameSize {
                what: "scaler input",
                ..
            })
        ));
        let mut scaler = Scaler::new((64, 32), (32, 16), ScaleFilter::Bilinear).unwrap();
        let mut wrong = I420Picture::new(16, 16).unwrap();
        assert!(matches!(
            scaler.scale_into(&input, &mut wrong),
            Err(LibavError::FrameSize { .. })
        ));
        let short = RawVideoFrame {
            planes: [&y[..100], &c, &c],
            ..input
        };
        assert!(matches!(
            scaler.scale(&short),
            Err(LibavError::PlaneTooSmall { plane: 0 })
        ));
        assert!(Scaler::new((63, 32), (32, 16), ScaleFilter::Bicubic).is_err());
    }

    #[test]
    fn scaler_and_pictures_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Scaler>();
        assert_send::<I420Picture>();
    }
}
