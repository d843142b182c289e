//! H.264 and HEVC decoding with libavcodec's native `h264` and `hevc` decoders.
//!
//! Input is our [`AccessUnit`] format: NAL units with 4-byte big-endian lengths (the `avc1` /
//! `hvc1` sample formats, ISO/IEC 14496-15 §5.3.4.2 and §8.3.4), parameter sets in the track's
//! [`TrackConfig`]. The `avcC` / `hvcC` record becomes the decoder's extradata, which puts
//! libavcodec in its length-prefixed mode (`is_avc` / `is_nalff`, NAL length size from
//! `lengthSizeMinusOne`), so payloads go in unchanged.
//!
//! Output is decoded pictures in presentation order as borrowed [`RawVideoFrame`]s (8-bit 4:2:0,
//! the format every encoder here takes), pts on the 90 kHz clock of the units they came from.
//! One `AVFrame` is reused for every picture: a frame borrowed from [`VideoDecoder::poll_frame`]
//! is valid until the next call into the decoder.
//!
//! Broken input (STYLE.md rule 6): a unit whose length prefixes do not cover its payload exactly,
//! or that libavcodec refuses, is [`LibavError::CorruptUnit`] for that unit alone, counted in
//! [`DecodeStats::corrupt_units`]; the decoder carries on with the next unit. Pictures that
//! libavcodec had to patch up (missing references after a dropped unit, damaged slices it
//! concealed) are still returned, and counted in [`DecodeStats::concealed_frames`]: a live
//! rendition with a smudge is better than one with a hole until the next IDR.
//!
//! Threads: `threads = 1` (the default) decodes inside `submit` on the caller's thread. More
//! turns on libavcodec's frame threading with exactly that many threads (the core plan's budget,
//! never "auto"); pictures then come out `threads - 1` units later, and an error is reported on
//! the unit being submitted when it surfaces, which may be a few units after the bad one.
//!
//! GPU decode: [`VideoDecoder::with_device`] with [`DecodeDevice::Nvdec`] decodes on an NVIDIA
//! GPU through libavcodec's CUDA hwaccel (`crate::nvdec` explains the choice);
//! [`VideoDecoder::poll_frame`] copies its pictures back to system memory as I420, so callers
//! see the same frames either way, and [`VideoDecoder::poll_picture`] leaves them on the GPU.
//! Where the driver is missing it is [`LibavError::NvdecUnavailable`] with the reason; the
//! caller decides whether to fall back ([`VideoDecoder::new`] is the CPU decoder).
//!
//! Pictures that are not 8-bit 4:2:0 (H.264 High 4:2:2, HEVC Main 10, 4:4:4, full-range 4:2:2)
//! are converted to 8-bit limited-range I420 with swscale (`DecodeStats::converted_frames`),
//! on the CPU; NVDEC is not asked for those streams (see `crate::nvdec`). A format swscale
//! cannot read is [`LibavError::UnsupportedPixelFormat`].
//!
//! Not done: AV1 input; colour-range conversion of full-range 4:2:0 (`yuvj420p`) sources,
//! which pass as they are.

use std::fmt;
use std::ptr;

use ffmpeg_next::ffi;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::{codec, decoder, frame};
use media::encode::RawVideoFrame;
use media::{AccessUnit, Codec, TrackConfig};

use crate::cuda_scale::GpuPicture;
use crate::nvdec::{CudaDevice, DownloadedPicture, download};
use crate::scale::ToI420;
use crate::{LibavError, ffmpeg_error_text, quiet_logging};

/// Decoder threads we allow at most (the same bound as the x264 driver's).
pub const MAX_DECODE_THREADS: u32 = 16;

/// How to open the decoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoDecoderSettings {
    /// libavcodec frame threads, 1..=[`MAX_DECODE_THREADS`]; 1 decodes on the caller's thread.
    pub threads: u32,
}

impl Default for VideoDecoderSettings {
    fn default() -> Self {
        VideoDecoderSettings { threads: 1 }
    }
}

/// Where the decoding happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeDevice {
    /// libavcodec's software decoders.
    Cpu,
    /// NVDEC on CUDA device `gpu`, through libavcodec's CUDA hwaccel.
    Nvdec { gpu: u32 },
}

/// A decoded picture from [`VideoDecoder::poll_picture`]: in system memory, or still on the GPU.
#[derive(Debug)]
pub enum DecodedPicture<'a> {
    System(RawVideoFrame<'a>),
    Gpu(GpuPicture<'a>),
}

/// Counters of one decoder since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Units handed to libavcodec (corrupt ones included).
    pub units: u64,
    /// Units refused: bad framing, or libavcodec reported an error for them.
    pub corrupt_units: u64,
    /// Pictures returned by `poll_frame`.
    pub frames: u64,
    /// Returned pictures that libavcodec flagged as concealed or corrupt.
    pub concealed_frames: u64,
    /// Returned pictures that were not 8-bit 4:2:0 (4:2:2, 4:4:4, 10-bit) and were converted
    /// to it with swscale.
    pub converted_frames: u64,
    /// Returned pictures that NVDEC decoded (copied from GPU memory); the rest were decoded
    /// in software, e.g. a profile the GPU cannot take.
    pub gpu_frames: u64,
}

/// An open H.264 or HEVC decoder. See the module docs for formats, errors and threading.
pub struct VideoDecoder {
    decoder: decoder::Video,
    /// The codec of the track it was opened for; units of any other are refused.
    codec: Codec,
    /// Reused by every `avcodec_receive_frame`.
    frame: frame::Video,
    settings: VideoDecoderSettings,
    stats: DecodeStats,
    flushing: bool,
    device: DecodeDevice,
    /// A GPU picture copied to system memory, and the NV12 frame it went through.
    downloaded: DownloadedPicture,
    download_staging: frame::Video,
    /// Converts pictures that are not 8-bit 4:2:0 (made at the first one).
    to_i420: Option<ToI420>,
    /// The picture just received was converted: read it from `to_i420`.
    converted: bool,
}

impl fmt::Debug for VideoDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoDecoder")
            .field("codec", &self.codec)
            .field("settings", &self.settings)
            .field("stats", &self.stats)
            .field("flushing", &self.flushing)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl VideoDecoder {
    /// Opens libavcodec's decoder for the track's codec (`h264` or `hevc`) with its
    /// configuration record (`avcC` / `hvcC`) as extradata.
    pub fn new(config: &TrackConfig, settings: VideoDecoderSettings) -> Result<Self, LibavError> {
        Self::with_device(config, settings, DecodeDevice::Cpu)
    }

    /// As [`Self::new`], decoding on `device`. For [`DecodeDevice::Nvdec`], a machine without
    /// the NVIDIA driver or the GPU is [`LibavError::NvdecUnavailable`] with the reason.
    pub fn with_device(
        config: &TrackConfig,
        settings: VideoDecoderSettings,
        device: DecodeDevice,
    ) -> Result<Self, LibavError> {
        quiet_logging();
        if !(1..=MAX_DECODE_THREADS).contains(&settings.threads) {
            return Err(LibavError::InvalidSettings {
                setting: "threads",
                reason: format!("{} is not in 1..={MAX_DECODE_THREADS}", settings.threads),
            });
        }
        let (id, name, record) = match config {
            TrackConfig::Avc(avc) => (codec::Id::H264, "h264", &avc.record),
            TrackConfig::Hevc(hevc) => (codec::Id::HEVC, "hevc", &hevc.record),
            other => {
                return Err(LibavError::WrongCodec {
                    expected: "H.264 or HEVC",
                    got: other.codec(),
                });
            }
        };
        let found = decoder::find(id).ok_or(LibavError::DecoderNotFound(name))?;
        let mut context = codec::context::Context::new_with_codec(found);
        set_extradata(&mut context, record)?;
        if let DecodeDevice::Nvdec { gpu } = device {
            // SAFETY: the context is allocated and not open yet.
            unsafe { CudaDevice::shared(gpu)?.attach(context.as_mut_ptr()) };
        }
        // err_recognition stays at its default (no AV_EF_EXPLODE): with it, one damaged slice
        // also fails the units that reference it, up to the next IDR (seen in the tests), so a
        // single bad unit would cost a run of frames instead of one concealed picture.
        context.set_threading(codec::threading::Config {
            kind: if settings.threads > 1 {
                codec::threading::Type::Frame
            } else {
                codec::threading::Type::None
            },
            count: settings.threads as usize,
            ..Default::default()
        });
        let mut video = context
            .decoder()
            .video()
            .map_err(|source| LibavError::Ffmpeg {
                call: if id == codec::Id::HEVC {
                    "avcodec_open2 (hevc)"
                } else {
                    "avcodec_open2 (h264)"
                },
                source,
            })?;
        video.set_packet_time_base((1, media::VIDEO_TIMESCALE as i32));
        Ok(VideoDecoder {
            decoder: video,
            codec: config.codec(),
            frame: frame::Video::empty(),
            settings,
            stats: DecodeStats::default(),
            flushing: false,
            device,
            downloaded: DownloadedPicture::default(),
            download_staging: frame::Video::empty(),
            to_i420: None,
            converted: false,
        })
    }

    /// The device it was opened on.
    pub fn device(&self) -> DecodeDevice {
        self.device
    }

    pub fn settings(&self) -> &VideoDecoderSettings {
        &self.settings
    }

    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// Hands one unit (decode order) to the decoder. After it, drain [`Self::poll_frame`] until
    /// `Ok(None)`. [`LibavError::CorruptUnit`] means this unit was dropped and counted; the
    /// decoder is still usable.
    pub fn submit(&mut self, unit: &AccessUnit) -> Result<(), LibavError> {
        if self.flushing {
            return Err(LibavError::SubmitAfterFlush);
        }
        if unit.codec != self.codec {
            return Err(LibavError::WrongCodec {
                expected: if self.codec == Codec::H265 {
                    "HEVC"
                } else {
                    "H.264"
                },
                got: unit.codec,
            });
        }
        self.stats.units += 1;
        if let Err(reason) = check_length_prefixed(&unit.payload) {
            self.stats.corrupt_units += 1;
            return Err(LibavError::CorruptUnit {
                pts: unit.pts,
                reason,
            });
        }
        let size = i32::try_from(unit.payload.len()).map_err(|_| {
            self.stats.corrupt_units += 1;
            LibavError::CorruptUnit {
                pts: unit.pts,
                reason: format!("{} bytes is too large for a packet", unit.payload.len()),
            }
        })?;
        // SAFETY: an all-zero AVPacket is a valid blank packet (what av_packet_unref leaves).
        let mut packet: ffi::AVPacket = unsafe { std::mem::zeroed() };
        packet.data = unit.payload.as_ptr().cast_mut();
        packet.size = size;
        packet.pts = unit.pts;
        packet.dts = unit.dts;
        packet.pos = -1;
        if unit.keyframe {
            packet.flags = ffi::AV_PKT_FLAG_KEY;
        }
        // SAFETY: the context is open. The packet has no `buf`, so libavcodec copies `size`
        // bytes from `data` (which `unit.payload` keeps alive for this call) into its own padded,
        // ref-counted buffer before returning and never writes through `data`.
        let code = unsafe { ffi::avcodec_send_packet(self.decoder.as_mut_ptr(), &packet) };
        if code == ffi::AVERROR(ffi::EAGAIN) {
            // Only a caller that did not drain poll_frame gets here; the unit was not taken.
            self.stats.units -= 1;
            return Err(LibavError::Ffmpeg {
                call: "avcodec_send_packet (frames not drained)",
                source: ffmpeg_next::Error::from(code),
            });
        }
        if code < 0 {
            self.stats.corrupt_units += 1;
            return Err(LibavError::CorruptUnit {
                pts: unit.pts,
                reason: format!("libavcodec: {}", ffmpeg_error_text(code.into())),
            });
        }
        Ok(())
    }

    /// The next decoded picture in presentation order, `Ok(None)` when none is ready. The frame
    /// borrows the decoder's buffer until the next call. A picture NVDEC decoded is copied to
    /// system memory first; [`Self::poll_picture`] leaves it on the GPU.
    pub fn poll_frame(&mut self) -> Result<Option<RawVideoFrame<'_>>, LibavError> {
        let Some((on_gpu, pts)) = self.receive()? else {
            return Ok(None);
        };
        if on_gpu {
            // SAFETY: a decoded CUDA frame, and our own staging frame that nothing else holds.
            unsafe {
                download(
                    self.frame.as_ptr(),
                    self.download_staging.as_mut_ptr(),
                    &mut self.downloaded,
                )?;
            }
            let picture = &self.downloaded;
            let (width, chroma_width) =
                (picture.width as usize, picture.width.div_ceil(2) as usize);
            return Ok(Some(RawVideoFrame {
                width: picture.width,
                height: picture.height,
                pts,
                planes: [&picture.planes[0], &picture.planes[1], &picture.planes[2]],
                strides: [width, chroma_width, chroma_width],
            }));
        }
        Ok(Some(self.system_frame(pts)))
    }

    /// As [`Self::poll_frame`], but a picture NVDEC decoded stays in GPU memory
    /// ([`DecodedPicture::Gpu`], for [`crate::CudaScaler`]); one decoded in software (a stream
    /// the GPU cannot take, or a CPU decoder) is [`DecodedPicture::System`].
    pub fn poll_picture(&mut self) -> Result<Option<DecodedPicture<'_>>, LibavError> {
        let Some((on_gpu, pts)) = self.receive()? else {
            return Ok(None);
        };
        if on_gpu {
            // SAFETY: a decoded CUDA frame with its frames context, left untouched until the next
            // receive, which needs `&mut self` and so ends this borrow.
            let picture = unsafe { GpuPicture::of_frame(self.frame.as_ptr(), pts)? };
            return Ok(Some(DecodedPicture::Gpu(picture)));
        }
        Ok(Some(DecodedPicture::System(self.system_frame(pts))))
    }

    /// The frame just received, decoded in software, as an I420 picture.
    fn system_frame(&self, pts: i64) -> RawVideoFrame<'_> {
        if let Some(converted) = self.to_i420_output() {
            let mut raw = converted.as_raw();
            raw.pts = pts;
            return raw;
        }
        let frame = &self.frame;
        RawVideoFrame {
            width: frame.width(),
            height: frame.height(),
            pts,
            // `receive` checked the format: three planes, so `data` cannot go out of bounds.
            planes: [frame.data(0), frame.data(1), frame.data(2)],
            strides: [frame.stride(0), frame.stride(1), frame.stride(2)],
        }
    }

    /// The converted picture, when the one just received needed converting.
    fn to_i420_output(&self) -> Option<&crate::I420Picture> {
        self.to_i420
            .as_ref()
            .filter(|_| self.converted)
            .map(ToI420::output)
    }

    /// Receives the next picture into `self.frame`, checks its format and counts it: whether
    /// it is on the GPU, and its pts.
    fn receive(&mut self) -> Result<Option<(bool, i64)>, LibavError> {
        match self.decoder.receive_frame(&mut self.frame) {
            Ok(()) => {}
            Err(ffmpeg_next::Error::Eof) => return Ok(None),
            Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::error::EAGAIN => {
                return Ok(None);
            }
            Err(source) => {
                // Frame threading reports a failed picture here rather than on its unit.
                self.stats.corrupt_units += 1;
                return Err(LibavError::CorruptUnit {
                    pts: -1,
                    reason: format!("libavcodec (frame thread): {source}"),
                });
            }
        }
        // SAFETY: receive_frame succeeded, so the frame points to a valid AVFrame.
        let on_gpu =
            unsafe { (*self.frame.as_ptr()).format } == ffi::AVPixelFormat::AV_PIX_FMT_CUDA as i32;
        let format = self.frame.format();
        self.converted = !on_gpu && !matches!(format, Pixel::YUV420P | Pixel::YUVJ420P);
        if self.converted {
            ToI420::convert(&mut self.to_i420, &self.frame)?;
            self.stats.converted_frames += 1;
        }
        // SAFETY: receive_frame succeeded, so the frame points to a valid AVFrame.
        let (flags, error_flags, best_effort) = unsafe {
            let raw = &*self.frame.as_ptr();
            (raw.flags, raw.decode_error_flags, raw.best_effort_timestamp)
        };
        if flags & ffi::AV_FRAME_FLAG_CORRUPT != 0 || error_flags != 0 {
            self.stats.concealed_frames += 1;
        }
        self.stats.frames += 1;
        if on_gpu {
            self.stats.gpu_frames += 1;
        }
        let pts = self
            .frame
            .pts()
            .filter(|&pts| pts != ffi::AV_NOPTS_VALUE)
            .unwrap_or(best_effort);
        Ok(Some((on_gpu, pts)))
    }

    /// No more units: later [`Self::poll_frame`] calls return the pictures still held back for
    /// reordering.
    pub fn flush(&mut self) -> Result<(), LibavError> {
        if self.flushing {
            return Ok(());
        }
        self.flushing = true;
        self.decoder
            .send_eof()
            .map_err(|source| LibavError::Ffmpeg {
                call: "avcodec_send_packet (eof)",
                source,
            })
    }
}

/// Copies `record` into the context's extradata (libavcodec wants it in its own allocation,
/// with zeroed padding after it, and frees it with the context).
fn set_extradata(context: &mut codec::context::Context, record: &[u8]) -> Result<(), LibavError> {
    let size = i32::try_from(record.len()).map_err(|_| LibavError::InvalidSettings {
        setting: "avcC record",
        reason: format!("{} bytes", record.len()),
    })?;
    let padded = record.len() + ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: av_mallocz returns null or `padded` zeroed bytes.
    let buffer = unsafe { ffi::av_mallocz(padded) }.cast::<u8>();
    if buffer.is_null() {
        return Err(LibavError::Ffmpeg {
            call: "av_mallocz (extradata)",
            source: ffmpeg_next::Error::from(ffi::AVERROR(ffi::ENOMEM)),
        });
    }
    // SAFETY: `buffer` holds at least `record.len()` bytes and does not overlap `record`; the
    // context is not open yet and has no extradata (a fresh context), so handing it the buffer
    // leaks nothing, and avcodec_free_context frees it.
    unsafe {
        ptr::copy_nonoverlapping(record.as_ptr(), buffer, record.len());
        let raw = context.as_mut_ptr();
        (*raw).extradata = buffer;
        (*raw).extradata_size = size;
    }
    Ok(())
}

/// Checks that `payload` is a sequence of 4-byte-length-prefixed NAL units that covers it
/// exactly, each non-empty with its forbidden_zero_bit clear (ITU-T H.264 §7.4.1). A unit that
/// fails is truncated or damaged and would only feed the decoder garbage.
pub fn check_length_prefixed(payload: &[u8]) -> Result<(), String> {
    if payload.is_empty() {
        return Err("empty payload".to_owned());
    }
    let mut rest = payload;
    let mut offset = 0usize;
    while !rest.is_empty() {
        let Some((len, body)) = rest.split_first_chunk::<4>() else {
            return Err(format!(
                "{} stray bytes at offset {offset} where a NAL length should be",
                rest.len()
            ));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some((nal, tail)) = body.split_at_checked(len) else {
            return Err(format!(
                "NAL at offset {offset} claims {len} bytes, {} remain (truncated)",
                body.len()
            ));
        };
        match nal.first() {
            None => return Err(format!("empty NAL at offset {offset}")),
            Some(header) if header & 0x80 != 0 => {
                return Err(format!(
                    "NAL at offset {offset} has forbidden_zero_bit set (header {header:#04x})"
                ));
            }
            Some(_) => {}
        }
        offset += 4 + len;
        rest = tail;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefix_check_accepts_whole_units_and_names_the_fault() {
        let good = [0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x06];
        assert_eq!(check_length_prefixed(&good), Ok(()));
        let truncated = &good[..good.len() - 1];
        let error = check_length_prefixed(truncated).unwrap_err();
        assert!(
            error.contains("offset 6") && error.contains("truncated"),
            "{error}"
        );
        assert!(
            check_length_prefixed(&good[..8])
                .unwrap_err()
                .contains("stray")
        );
        let forbidden = [0, 0, 0, 1, 0xe5];
        assert!(
            check_length_prefixed(&forbidden)
                .unwrap_err()
                .contains("forbidden_zero_bit")
        );
        assert!(
            check_length_prefixed(&[0, 0, 0, 0])
                .unwrap_err()
                .contains("empty NAL")
        );
        assert!(check_length_prefixed(&[]).is_err());
    }
}
