//! HEVC (ITU-T H.265) encoding with x265 through libavcodec's `libx265` wrapper (Debian: FFmpeg
//! 5.1 over libx265 3.5). The CPU encoder of HEVC rungs, and what an HEVC NVENC rung falls back
//! to.
//!
//! Configuration: x265's `tune=zerolatency` (no B-frames, no look-ahead, no frame threads'
//! delay: one unit out per picture in, dts = pts), `keyint=-1` (one IDR at the start, then only
//! forced ones unless [`X265Settings::keyint_max`] asks), `scenecut=0`, closed GOPs, ABR at the
//! rung's bitrate with the VBV peak and buffer from libavcodec's `rc_max_rate` /
//! `rc_buffer_size`, and `pools` = [`X265Settings::threads`] so x265's thread pool stays inside
//! the core plan.
//!
//! Forced IDRs: with the wrapper's `forced-idr=1` a picture typed `AV_PICTURE_TYPE_I` becomes
//! an IDR (`X265_TYPE_IDR`) in FFmpeg 5.1's libx265.c, so the segment cuts of the ladder are
//! honoured picture by picture, without restarting the encoder.
//!
//! Output: `AV_CODEC_FLAG_GLOBAL_HEADER` puts VPS, SPS and PPS once in the extradata (Annex B),
//! which becomes the track's [`HevcConfig`] (`hvcC`, ISO/IEC 14496-15 §8.3.3); packets (Annex B)
//! are rewritten as 4-byte length-prefixed NAL units (§8.3.4) without AUDs or repeated
//! parameter sets.

use std::collections::VecDeque;
use std::fmt;

use ffmpeg_next::format::Pixel;
use ffmpeg_next::{Dictionary, Packet, Rational, codec, encoder, frame, picture};
use media::encode::{
    InvalidSetting, RawVideoFrame, Vbv, VideoEncoder, check_frame_rate, check_in_range,
    check_keyint_max, check_picture_size,
};
use media::hevc::{NAL_AUD, NAL_PPS, NAL_SPS, NAL_VPS, nal_unit_type};
use media::{AccessUnit, Codec, HevcConfig, TrackConfig, VIDEO_TIMESCALE, annex_b};

use crate::{LibavError, ffmpeg_error, quiet_logging};

/// x265 threads (`pools`) we allow at most.
pub const MAX_X265_THREADS: u32 = 16;
/// x265's presets, fastest first (the same names as x264's).
pub const X265_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// How to open the x265 encoder; mirrors the x264 driver's settings so a ladder rung can be
/// given to either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X265Settings {
    /// Picture size in pixels; both even (4:2:0 chroma).
    pub width: u32,
    pub height: u32,
    pub fps_num: u32,
    pub fps_den: u32,
    /// Average bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// VBV peak rate, kbit/s; 0 means the average bitrate.
    pub vbv_max_kbps: u32,
    /// VBV buffer, kbit; 0 means one second at the peak rate.
    pub vbv_buffer_kbits: u32,
    /// One of [`X265_PRESETS`].
    pub preset: &'static str,
    /// x265 threads (`pools`), 1..=[`MAX_X265_THREADS`].
    pub threads: u32,
    /// x265 places an IDR on its own every this many frames; `None` leaves IDRs to `force_idr`.
    pub keyint_max: Option<u32>,
}

impl Default for X265Settings {
    fn default() -> Self {
        X265Settings {
            width: 640,
            height: 360,
            fps_num: 30,
            fps_den: 1,
            bitrate_kbps: 500,
            vbv_max_kbps: 0,
            vbv_buffer_kbits: 0,
            preset: "ultrafast",
            threads: 1,
            keyint_max: None,
        }
    }
}

impl X265Settings {
    fn check(&self) -> Result<(), InvalidSetting> {
        // x265 needs at least one 8x8 coding block; HEVC level 6.2 tops out at 8192 a side.
        check_picture_size(self.width, self.height, 8, 8192)?;
        check_frame_rate(self.fps_num, self.fps_den)?;
        self.vbv().check()?;
        if !X265_PRESETS.contains(&self.preset) {
            return Err(InvalidSetting::new(
                "preset",
                format!("{:?} is not an x265 preset", self.preset),
            ));
        }
        check_in_range("threads", self.threads, 1..=MAX_X265_THREADS)?;
        check_keyint_max(self.keyint_max)
    }

    /// The rate control's bitrate, peak rate and buffer.
    fn vbv(&self) -> Vbv {
        Vbv {
            bitrate_kbps: self.bitrate_kbps,
            max_kbps: self.vbv_max_kbps,
            buffer_kbits: self.vbv_buffer_kbits,
        }
    }

    /// The `x265-params` string (x265's own option names, `:`-separated).
    pub fn x265_params(&self) -> String {
        let keyint = self.keyint_max.map_or(-1, i64::from);
        format!(
            "keyint={keyint}:min-keyint=1:scenecut=0:open-gop=0:bframes=0:rc-lookahead=0:\
             frame-threads=1:pools={}:repeat-headers=0:aud=0:log-level=error",
            self.threads
        )
    }
}

/// An open `libx265` encoder. See the module docs. `Send`, not `Sync`.
pub struct X265Encoder {
    encoder: encoder::Video,
    settings: X265Settings,
    config: HevcConfig,
    /// The picture handed to libavcodec; reused while libavcodec holds no reference to it.
    staging: frame::Video,
    packet: Packet,
    ready: VecDeque<AccessUnit>,
    flushing: bool,
}

impl fmt::Debug for X265Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X265Encoder")
            .field("settings", &self.settings)
            .field("codec", &self.config.codec_string())
            .field("ready", &self.ready.len())
            .field("flushing", &self.flushing)
            .finish_non_exhaustive()
    }
}

impl X265Encoder {
    /// Checks `settings`, opens `libx265` and reads its parameter sets.
    pub fn new(settings: X265Settings) -> Result<Self, LibavError> {
        settings.check()?;
        quiet_logging();
        let found =
            encoder::find_by_name("libx265").ok_or(LibavError::EncoderNotFound("libx265"))?;
        let mut video = codec::context::Context::new_with_codec(found)
            .encoder()
            .video()
            .map_err(ffmpeg_error("avcodec_alloc_context3"))?;
        video.set_width(settings.width);
        video.set_height(settings.height);
        video.set_format(Pixel::YUV420P);
        video.set_time_base(Rational::new(1, VIDEO_TIMESCALE as i32));
        // Bounded by `check` to (0, 1000] fps, so both fit in i32.
        video.set_frame_rate(Some(Rational::new(
            settings.fps_num as i32,
            settings.fps_den as i32,
        )));
        video.set_bit_rate(settings.bitrate_kbps as usize * 1000);
        video.set_max_bit_rate(settings.vbv().peak_kbps() as usize * 1000);
        video.set_max_b_frames(0);
        video.set_flags(codec::Flags::GLOBAL_HEADER);
        // ffmpeg-next has no setter for the VBV buffer size.
        // SAFETY: the context is allocated and not yet open; rc_buffer_size is a plain int
        // field that avcodec_open2 reads. `check` keeps the value far below i32::MAX.
        unsafe {
            (*video.as_mut_ptr()).rc_buffer_size =
                i32::try_from(u64::from(settings.vbv().buffer_kbits()) * 1000).unwrap_or(i32::MAX);
        }
        let mut options = Dictionary::new();
        options.set("preset", settings.preset);
        options.set("tune", "zerolatency");
        options.set("forced-idr", "1");
        options.set("x265-params", &settings.x265_params());
        let encoder = video
            .open_as_with(found, options)
            .map_err(ffmpeg_error("avcodec_open2 (libx265)"))?;
        let config = parameter_sets(&encoder)?;
        let staging = frame::Video::new(Pixel::YUV420P, settings.width, settings.height);
        Ok(X265Encoder {
            encoder,
            settings,
            config,
            staging,
            packet: Packet::empty(),
            ready: VecDeque::new(),
            flushing: false,
        })
    }

    pub fn settings(&self) -> &X265Settings {
        &self.settings
    }

    pub fn hevc_config(&self) -> &HevcConfig {
        &self.config
    }

    fn receive(&mut self) -> Result<(), LibavError> {
        loop {
            match self.encoder.receive_packet(&mut self.packet) {
                Ok(()) => {
                    let unit = unit(&self.packet);
                    // alloc: the queue grows only while the caller does not poll.
                    self.ready.push_back(unit);
                }
                Err(ffmpeg_next::Error::Eof) => return Ok(()),
                Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::error::EAGAIN => {
                    return Ok(());
                }
                Err(other) => return Err(ffmpeg_error("avcodec_receive_packet")(other)),
            }
        }
    }

    /// Copies the caller's planes into the staging frame, row by row (strides differ).
    fn fill_staging(&mut self, frame: &RawVideoFrame<'_>) -> Result<(), LibavError> {
        // SAFETY: `staging` owns a valid AVFrame; av_frame_is_writable only reads its buffer
        // references.
        let writable = unsafe { ffmpeg_next::ffi::av_frame_is_writable(self.staging.as_mut_ptr()) };
        if writable == 0 {
            // alloc: only when libavcodec kept a reference to the last picture (libx265 copies
            // the picture into its own, so in practice never).
            self.staging = frame::Video::new(Pixel::YUV420P, frame.width, frame.height);
        }
        for index in 0..3 {
            let stride = self.staging.stride(index);
            frame
                .copy_plane_into(index, self.staging.data_mut(index), stride)
                .map_err(|plane| LibavError::PlaneTooSmall { plane })?;
        }
        Ok(())
    }
}

/// One packet as a length-prefixed unit without AUDs or parameter sets (they are in the track's
/// `hvcC`).
fn unit(packet: &Packet) -> AccessUnit {
    let data = packet.data().unwrap_or_default();
    // alloc: one buffer per encoded frame; the unit outlives the reused packet.
    let mut payload = Vec::with_capacity(data.len() + 16);
    annex_b::append_length_prefixed(data, &mut payload, |nal| {
        !matches!(
            nal_unit_type(nal),
            Some(NAL_VPS | NAL_SPS | NAL_PPS | NAL_AUD)
        )
    });
    let pts = packet.pts().unwrap_or(0);
    AccessUnit {
        codec: Codec::H265,
        pts,
        // No B-frames: decode order is presentation order.
        dts: packet.dts().map_or(pts, |dts| dts.min(pts)),
        keyframe: packet.is_key(),
        payload: payload.into(),
    }
}

impl VideoEncoder for X265Encoder {
    type Error = LibavError;

    fn submit(&mut self, frame: &RawVideoFrame<'_>, force_idr: bool) -> Result<(), LibavError> {
        if self.flushing {
            return Err(LibavError::SubmitAfterFlush);
        }
        frame.check_fits(self.settings.width, self.settings.height)?;
        self.fill_staging(frame)?;
        self.staging.set_pts(Some(frame.pts));
        // With `forced-idr=1`, libx265.c turns a picture typed I into an IDR.
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

    fn poll_packet(&mut self) -> Result<Option<AccessUnit>, LibavError> {
        Ok(self.ready.pop_front())
    }

    fn flush(&mut self) -> Result<(), LibavError> {
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
        TrackConfig::Hevc(self.config.clone())
    }
}

/// VPS, SPS and PPS from the extradata the encoder wrote at open (Annex B, global headers).
fn parameter_sets(encoder: &encoder::Video) -> Result<HevcConfig, LibavError> {
    // SAFETY: the context is open; avcodec_open2 set `extradata` to `extradata_size` bytes (or
    // left it null), owned by the context, which outlives this borrow; we copy what we need.
    let extradata = unsafe {
        let context = &*encoder.as_ptr();
        match (
            context.extradata.is_null(),
            usize::try_from(context.extradata_size),
        ) {
            (false, Ok(len)) => std::slice::from_raw_parts(context.extradata, len).to_vec(),
            _ => Vec::new(),
        }
    };
    Ok(HevcConfig::from_annex_b(&extradata)?)
}

#[cfg(test)]
#[path = "x265_tests.rs"]
mod tests;
