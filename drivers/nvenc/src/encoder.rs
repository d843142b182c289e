//! [`NvencEncoder`]: libavcodec's `h264_nvenc` or `hevc_nvenc` behind [`VideoEncoder`]. The crate docs describe
//! the output format and how IDRs are forced.

use std::collections::VecDeque;
use std::fmt;

use ffmpeg_next::format::Pixel;
use ffmpeg_next::picture;
use ffmpeg_next::{Dictionary, codec, encoder, ffi, frame};
use media::encode::{RawVideoFrame, VideoEncoder};
use media::hevc::nal_unit_type;
use media::{AccessUnit, AvcConfig, Codec, HevcConfig, TrackConfig, VIDEO_TIMESCALE, annex_b};

use crate::{
    GpuInfo, NvencCodec, NvencError, NvencSettings, check_gpu, log_capture, open_failure_reason,
};

const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
/// FFmpeg's `gop_size` is a C int; nvenc.c copies it into `gopLength` and `idrPeriod`. This
/// is about two years of 30 fps video: in practice IDRs come only where they are forced.
const GOP_FRAMES: u32 = i32::MAX as u32;

/// An open `h264_nvenc` or `hevc_nvenc` encoder on one GPU. `Send`, not `Sync`.
pub struct NvencEncoder {
    encoder: encoder::Video,
    settings: NvencSettings,
    codec: NvencCodec,
    /// `avcC` or `hvcC` source, from the encoder's global header.
    config: TrackConfig,
    /// The picture handed to libavcodec; reused (made writable before each fill).
    staging: frame::Video,
    packet: ffmpeg_next::Packet,
    ready: VecDeque<AccessUnit>,
    flushing: bool,
    /// Opened for CUDA frames ([`NvencEncoder::with_cuda_frames`]).
    cuda_input: bool,
}

impl fmt::Debug for NvencEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvencEncoder")
            .field("settings", &self.settings)
            .field("codec", &self.config.codec_string())
            .field("encoder", &self.codec.ffmpeg_name())
            .field("ready", &self.ready.len())
            .field("flushing", &self.flushing)
            .finish_non_exhaustive()
    }
}

fn ffmpeg_error(call: &'static str) -> impl FnOnce(ffmpeg_next::Error) -> NvencError {
    move |source| NvencError::Ffmpeg { call, source }
}

/// Checks the driver, configures and opens `codec` with `settings`. Every failure to find or
/// open the encoder is [`NvencError::Unavailable`] with the reason.
pub(crate) fn open_context(
    codec: NvencCodec,
    settings: &NvencSettings,
) -> Result<encoder::Video, NvencError> {
    open_context_after(codec, settings, |gpu| check_gpu(gpu).map(Some), None)
}

/// [`open_context`] with the driver check given (tests skip it to see FFmpeg's own failure).
pub(crate) fn open_context_after(
    codec: NvencCodec,
    settings: &NvencSettings,
    driver_check: impl FnOnce(u32) -> Result<Option<GpuInfo>, NvencError>,
    cuda_frames: Option<*mut ffi::AVBufferRef>,
) -> Result<encoder::Video, NvencError> {
    settings.check()?;
    let name = codec.ffmpeg_name();
    let Some(found) = encoder::find_by_name(name) else {
        let version = ffmpeg_next::codec::version();
        let hint = if codec == NvencCodec::Av1 {
            " (av1_nvenc arrived in FFmpeg 6.0)"
        } else {
            ""
        };
        return Err(NvencError::Unavailable {
            reason: format!(
                "the linked FFmpeg (libavcodec {}.{}.{}) has no {name}{hint}",
                version >> 16,
                (version >> 8) & 0xff,
                version & 0xff
            ),
        });
    };
    if codec == NvencCodec::Av1 {
        return Err(NvencError::Unavailable {
            reason: "the linked FFmpeg has av1_nvenc, but corecast does not drive it yet".into(),
        });
    }
    let gpu = driver_check(settings.gpu)?;

    let mut video = codec::context::Context::new_with_codec(found)
        .encoder()
        .video()
        .map_err(ffmpeg_error("avcodec_alloc_context3"))?;
    video.set_width(settings.width);
    video.set_height(settings.height);
    match cuda_frames {
        None => video.set_format(Pixel::YUV420P),
        Some(frames) => {
            video.set_format(Pixel::CUDA);
            // SAFETY: the caller's frames context reference is live (with_cuda_frames's
            // contract); the context takes a reference of its own and frees it when closed.
            let reference = unsafe { ffi::av_buffer_ref(frames) };
            if reference.is_null() {
                return Err(NvencError::Ffmpeg {
                    call: "av_buffer_ref (CUDA frames)",
                    source: ffmpeg_next::Error::from(ffi::AVERROR(ffi::ENOMEM)),
                });
            }
            // SAFETY: the context is allocated and not open; it owns the reference from now.
            unsafe { (*video.as_mut_ptr()).hw_frames_ctx = reference };
        }
    }
    // pts go in and come out on our 90 kHz clock.
    video.set_time_base((1, VIDEO_TIMESCALE as i32));
    // In range: `check` bounds fps to (0, 1000] with non-zero parts that fit an i32.
    video.set_frame_rate(Some((settings.fps_num as i32, settings.fps_den as i32)));
    video.set_bit_rate(settings.bitrate_kbps as usize * 1000);
    video.set_max_bit_rate(settings.vbv().peak_kbps() as usize * 1000);
    video.set_gop(GOP_FRAMES);
    video.set_max_b_frames(0);
    video.set_flags(codec::Flags::GLOBAL_HEADER);
    // SAFETY: the context is allocated and not yet open; rc_buffer_size is a plain int field
    // that avcodec_open2 reads. `check` keeps the value far below i32::MAX.
    unsafe {
        (*video.as_mut_ptr()).rc_buffer_size = (settings.vbv().buffer_kbits() * 1000) as i32;
    }

    let mut options = Dictionary::new();
    options.set("preset", settings.preset.name());
    options.set("tune", settings.tune.name());
    options.set(
        "profile",
        match codec {
            NvencCodec::H264 => settings.profile.name(),
            // 8-bit 4:2:0, what every decoder of an `hvc1` rendition takes.
            NvencCodec::Hevc | NvencCodec::Av1 => "main",
        },
    );
    options.set("rc", "vbr");
    options.set("forced-idr", "1");
    options.set("no-scenecut", "1");
    options.set("zerolatency", "1");
    // No frames held in the output queue: one packet out per picture in.
    options.set("delay", "0");
    options.set("gpu", &settings.gpu.to_string());

    let (opened, log) = log_capture::capture(|| video.open_as_with(found, options));
    opened.map_err(|error| NvencError::Unavailable {
        reason: open_failure_reason(name, error, &log, gpu.as_ref()),
    })
}

impl NvencEncoder {
    /// Checks the NVIDIA driver and GPU, opens `h264_nvenc` with `settings` and reads its
    /// parameter sets. Without a usable NVENC this is [`NvencError::Unavailable`].
    pub fn new(settings: NvencSettings) -> Result<Self, NvencError> {
        Self::with_codec(NvencCodec::H264, settings)
    }

    /// As [`Self::new`] for either codec: `hevc_nvenc` makes HEVC Main (8-bit 4:2:0) with the
    /// same rate control, forced IDRs and output rules (VPS, SPS and PPS go to the `hvcC`).
    pub fn with_codec(codec: NvencCodec, settings: NvencSettings) -> Result<Self, NvencError> {
        let encoder = open_context(codec, &settings)?;
        Self::opened(encoder, codec, settings, false)
    }

    /// As [`Self::with_codec`], taking pictures that are already in GPU memory: CUDA frames of
    /// the same frames context as `sample` (yuv420p layout, the settings' size, on the GPU
    /// `settings.gpu` names), given to [`Self::submit_cuda_frame`]. The pictures then never
    /// pass through system memory. The encoder takes its own reference to the frames context.
    pub fn with_cuda_frames(
        codec: NvencCodec,
        settings: NvencSettings,
        sample: &frame::Video,
    ) -> Result<Self, NvencError> {
        // SAFETY: `sample` is a valid AVFrame (ffmpeg-next owns it); we read two fields.
        let (format, frames) = unsafe {
            let raw = &*sample.as_ptr();
            (raw.format, raw.hw_frames_ctx)
        };
        if format != ffi::AVPixelFormat::AV_PIX_FMT_CUDA as i32 || frames.is_null() {
            return Err(NvencError::InputKind {
                opened: "CUDA",
                got: "a sample that is not a CUDA frame",
            });
        }
        let encoder = open_context_after(
            codec,
            &settings,
            |gpu| check_gpu(gpu).map(Some),
            Some(frames),
        )?;
        Self::opened(encoder, codec, settings, true)
    }

    fn opened(
        encoder: encoder::Video,
        codec: NvencCodec,
        settings: NvencSettings,
        cuda_input: bool,
    ) -> Result<Self, NvencError> {
        let extradata = extradata(&encoder);
        let config = match codec {
            NvencCodec::H264 => TrackConfig::Avc(AvcConfig::from_annex_b(&extradata)?),
            NvencCodec::Hevc => TrackConfig::Hevc(HevcConfig::from_annex_b(&extradata)?),
            // open_context refuses AV1 before anything opens.
            NvencCodec::Av1 => {
                return Err(NvencError::Unavailable {
                    reason: "corecast does not drive av1_nvenc".into(),
                });
            }
        };
        let staging = frame::Video::new(Pixel::YUV420P, settings.width, settings.height);
        Ok(NvencEncoder {
            encoder,
            settings,
            codec,
            config,
            staging,
            packet: ffmpeg_next::Packet::empty(),
            ready: VecDeque::new(),
            flushing: false,
            cuda_input,
        })
    }

    /// Encodes one CUDA frame (of the frames context the encoder was opened with), an IDR if
    /// `force_idr`. The encoder keeps a reference to the frame's buffer until it is done with
    /// it, so the caller must not write into that buffer meanwhile (libav's `CudaPicture`
    /// takes a fresh one from the pool when it is still referenced).
    pub fn submit_cuda_frame(
        &mut self,
        frame: &mut frame::Video,
        force_idr: bool,
    ) -> Result<(), NvencError> {
        if self.flushing {
            return Err(NvencError::SubmitAfterFlush);
        }
        if !self.cuda_input {
            return Err(NvencError::InputKind {
                opened: "system-memory",
                got: "CUDA",
            });
        }
        frame.set_kind(if force_idr {
            picture::Type::I
        } else {
            picture::Type::None
        });
        self.encoder
            .send_frame(frame)
            .map_err(ffmpeg_error("avcodec_send_frame (CUDA frame)"))?;
        self.receive()
    }

    /// Whether the encoder takes CUDA frames ([`Self::with_cuda_frames`]).
    pub fn takes_cuda_frames(&self) -> bool {
        self.cuda_input
    }

    pub fn settings(&self) -> &NvencSettings {
        &self.settings
    }

    pub fn codec(&self) -> NvencCodec {
        self.codec
    }

    /// The parameter sets of an H.264 encoder, as an `avcC` record and parsed fields (`None`
    /// for HEVC: see [`VideoEncoder::track_config`]).
    pub fn avc_config(&self) -> Option<&AvcConfig> {
        match &self.config {
            TrackConfig::Avc(avc) => Some(avc),
            _ => None,
        }
    }

    fn receive(&mut self) -> Result<(), NvencError> {
        loop {
            match self.encoder.receive_packet(&mut self.packet) {
                Ok(()) => {
                    let data = self.packet.data().unwrap_or_default();
                    // alloc: one buffer per encoded frame; the unit outlives the reused packet.
                    let mut payload = Vec::with_capacity(data.len() + 16);
                    let codec = self.codec;
                    annex_b::append_length_prefixed(data, &mut payload, |nal| {
                        !is_header_nal(codec, nal)
                    });
                    let pts = self.packet.pts().unwrap_or(0);
                    // No B-frames: decode order is presentation order.
                    let dts = self.packet.dts().map_or(pts, |dts| dts.min(pts));
                    // alloc: the queue grows only while the caller does not poll.
                    self.ready.push_back(AccessUnit {
                        codec: match self.codec {
                            NvencCodec::H264 => Codec::H264,
                            NvencCodec::Hevc => Codec::H265,
                            NvencCodec::Av1 => Codec::Av1,
                        },
                        pts,
                        dts,
                        keyframe: self.packet.is_key(),
                        payload: payload.into(),
                    });
                }
                Err(ffmpeg_next::Error::Eof) => return Ok(()),
                Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::error::EAGAIN => {
                    return Ok(());
                }
                Err(source) => {
                    return Err(NvencError::Ffmpeg {
                        call: "avcodec_receive_packet",
                        source,
                    });
                }
            }
        }
    }

    /// Copies the caller's planes into the staging frame, row by row (strides differ).
    fn fill_staging(&mut self, frame: &RawVideoFrame<'_>) -> Result<(), NvencError> {
        // SAFETY: `staging` owns a valid AVFrame with allocated buffers; av_frame_make_writable
        // only swaps in private copies when libavcodec still holds a reference to them.
        let code = unsafe { ffmpeg_next::ffi::av_frame_make_writable(self.staging.as_mut_ptr()) };
        if code < 0 {
            return Err(NvencError::Ffmpeg {
                call: "av_frame_make_writable",
                source: ffmpeg_next::Error::from(code),
            });
        }
        for index in 0..3 {
            let stride = self.staging.stride(index);
            frame
                .copy_plane_into(index, self.staging.data_mut(index), stride)
                .map_err(|plane| NvencError::PlaneTooSmall { plane })?;
        }
        Ok(())
    }
}

impl VideoEncoder for NvencEncoder {
    type Error = NvencError;

    fn submit(&mut self, frame: &RawVideoFrame<'_>, force_idr: bool) -> Result<(), NvencError> {
        if self.flushing {
            return Err(NvencError::SubmitAfterFlush);
        }
        if self.cuda_input {
            return Err(NvencError::InputKind {
                opened: "CUDA",
                got: "system-memory",
            });
        }
        frame.check_fits(self.settings.width, self.settings.height)?;
        self.fill_staging(frame)?;
        self.staging.set_pts(Some(frame.pts));
        // With `forced-idr=1`, nvenc.c turns a picture typed I into an IDR.
        self.staging.set_kind(if force_idr {
            picture::Type::I
        } else {
            picture::Type::None
        });
        self.encoder
            .send_frame(&self.staging)
            .map_err(ffmpeg_error("avcodec_send_frame"))?;
        self.receive()
    }

    fn poll_packet(&mut self) -> Result<Option<AccessUnit>, NvencError> {
        Ok(self.ready.pop_front())
    }

    fn flush(&mut self) -> Result<(), NvencError> {
        if self.flushing {
            return Ok(());
        }
        self.flushing = true;
        self.encoder
            .send_eof()
            .map_err(ffmpeg_error("avcodec_send_frame (eof)"))?;
        self.receive()
    }

    fn track_config(&self) -> TrackConfig {
        self.config.clone()
    }
}

/// Parameter sets and AUDs, which stay out of the units (they are in the track's record).
fn is_header_nal(codec: NvencCodec, nal: &[u8]) -> bool {
    match codec {
        NvencCodec::H264 | NvencCodec::Av1 => matches!(
            nal.first().map(|b| b & 0x1f),
            Some(NAL_SPS | NAL_PPS | NAL_AUD)
        ),
        NvencCodec::Hevc => matches!(
            nal_unit_type(nal),
            Some(media::hevc::NAL_VPS | media::hevc::NAL_SPS | media::hevc::NAL_PPS)
                | Some(media::hevc::NAL_AUD)
        ),
    }
}

/// The extradata the encoder wrote at open (Annex B with global headers).
fn extradata(encoder: &encoder::Video) -> Vec<u8> {
    // SAFETY: the context is open; avcodec_open2 set `extradata` to `extradata_size` bytes (or
    // left it null), owned by the context, which outlives this borrow; we copy what we need.
    unsafe {
        let context = &*encoder.as_ptr();
        match (
            context.extradata.is_null(),
            usize::try_from(context.extradata_size),
        ) {
            (false, Ok(len)) => std::slice::from_raw_parts(context.extradata, len).to_vec(),
            _ => Vec::new(),
        }
    }
}
