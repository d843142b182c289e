//! AV1 encoding with SVT-AV1 through libavcodec's `libsvtav1` wrapper (Debian: FFmpeg 5.1 over
//! libSvtAv1Enc 1.4.1).
//!
//! Low-delay configuration: `pred-struct=1` (low-delay prediction: no reordering, every temporal
//! unit one shown frame, dts = pts), `scd=0` (no scene-cut key frames), `keyint=-1` (no
//! periodic key frame unless [`SvtAv1Settings::keyint_max`] asks), CBR at the rung's bitrate
//! (low delay supports nothing else), `lp` = [`SvtAv1Settings::threads`] (SVT-AV1's "logical
//! processors": it sizes its thread pools from this).
//!
//! Forced key frames: FFmpeg 5.1's wrapper never passes `AVFrame.pict_type` on to SVT-AV1 (that
//! arrived in FFmpeg 6.0 together with `force_key_frames = 1`), and `svtav1-params` cannot
//! reach the per-picture `pic_type` either; tried with the ffmpeg command line and
//! `-force_key_frames`, SVT-AV1 keeps its own GOP. So a forced key frame restarts the encoder:
//! drain it to end of stream (low delay holds only a few pictures), open a fresh one with the
//! same settings, whose first picture is a key frame. The sequence header is the same (same
//! settings), so the track config does not change. The cost is one encoder open per segment
//! (an open, one picture and a close take about 9 ms at 360p and
//! 25 ms at 720p here: the `av1_compare` example's "open" lines) and rate control starting
//! afresh each segment. We still set `pict_type = I` on the picture so a newer FFmpeg honours
//! it without the restart.
//!
//! Output: units are temporal units without the temporal delimiter OBU
//! ([`media::av1::temporal_unit_payload`]); key frames carry the sequence header in band. The
//! track config is built from that in-band sequence header, learnt at open by encoding one grey
//! picture in a throw-away instance. Not from the extradata that `AV_CODEC_FLAG_GLOBAL_HEADER`
//! gives (`svt_av1_enc_stream_header`): in SVT-AV1 1.4.1 that header differs from the in-band
//! one in its last bytes (coding-tool flags), and decoders follow the in-band one.
//!
//! SVT-AV1 logs to stderr on its own (not through FFmpeg's log), several lines per open; its
//! `SVT_LOG` environment variable (1 = errors) quiets it, see [`quiet_svt_av1_logging`].

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::{Dictionary, Packet, Rational, codec, encoder, frame, picture};
use media::av1::temporal_unit_payload;
use media::encode::{
    InvalidSetting, RawVideoFrame, VideoEncoder, check_frame_rate, check_in_range,
    check_keyint_max, check_picture_size,
};
use media::{AccessUnit, Av1Config, Codec, TrackConfig, VIDEO_TIMESCALE};

use crate::{LibavError, ffmpeg_error, quiet_logging};

/// Threads (SVT-AV1 `lp`) we allow at most.
pub const MAX_SVT_AV1_THREADS: u32 = 16;
/// SVT-AV1's fastest preset in 1.4 (0 is the slowest).
pub const SVT_AV1_FASTEST_PRESET: u8 = 13;

/// How to open the SVT-AV1 encoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SvtAv1Settings {
    /// Picture size in pixels; both even (4:2:0 chroma).
    pub width: u32,
    pub height: u32,
    pub fps_num: u32,
    pub fps_den: u32,
    /// CBR target, kbit/s.
    pub bitrate_kbps: u32,
    /// Rate-control buffer in kbit; 0 means one second at the bitrate.
    pub buffer_kbits: u32,
    /// Preset 0 (slowest, best) ..= [`SVT_AV1_FASTEST_PRESET`].
    pub preset: u8,
    /// SVT-AV1 `lp`, 1..=[`MAX_SVT_AV1_THREADS`].
    pub threads: u32,
    /// SVT-AV1 places a key frame on its own every this many frames; `None` leaves key frames
    /// to `force_idr`.
    pub keyint_max: Option<u32>,
}

impl Default for SvtAv1Settings {
    fn default() -> Self {
        SvtAv1Settings {
            width: 640,
            height: 360,
            fps_num: 30,
            fps_den: 1,
            bitrate_kbps: 500,
            buffer_kbits: 0,
            preset: 12,
            threads: 1,
            keyint_max: None,
        }
    }
}

impl SvtAv1Settings {
    fn check(&self) -> Result<(), InvalidSetting> {
        // SVT-AV1 refuses pictures under 64 pixels on a side.
        check_picture_size(self.width, self.height, 64, 16384)?;
        check_frame_rate(self.fps_num, self.fps_den)?;
        if !(1..=100_000).contains(&self.bitrate_kbps) || self.buffer_kbits > 10_000_000 {
            return Err(InvalidSetting::new(
                "bitrate_kbps",
                format!(
                    "{} kbit/s (1..=100000) with a {} kbit buffer",
                    self.bitrate_kbps, self.buffer_kbits
                ),
            ));
        }
        check_in_range(
            "preset",
            u32::from(self.preset),
            0..=u32::from(SVT_AV1_FASTEST_PRESET),
        )?;
        check_in_range("threads", self.threads, 1..=MAX_SVT_AV1_THREADS)?;
        check_keyint_max(self.keyint_max)
    }

    /// The `svtav1-params` string (SVT-AV1's own parameter names, `:`-separated).
    pub fn svt_params(&self) -> String {
        let keyint = self.keyint_max.map_or(-1, i64::from);
        format!(
            "pred-struct=1:scd=0:keyint={keyint}:lp={}:enable-tpl-la=0",
            self.threads
        )
    }
}

/// Sets `SVT_LOG=1` (errors only) unless the environment already sets it. SVT-AV1 reads it when
/// an encoder opens; without it every open prints a dozen info and warning lines to stderr.
///
/// # Safety
/// Changes the process environment: call it before any other thread runs (at the top of
/// `main`), as for [`std::env::set_var`].
pub unsafe fn quiet_svt_av1_logging() {
    if std::env::var_os("SVT_LOG").is_none() {
        // SAFETY: the caller guarantees no other thread reads or writes the environment now.
        unsafe { std::env::set_var("SVT_LOG", "1") };
    }
}

/// An SVT-AV1 encoder. See the module docs. The libsvtav1 instance opens at the first picture
/// (and again after each forced key frame): SVT-AV1 1.4.1 hangs closing an instance that never
/// got a picture, so none is opened before one is there.
pub struct SvtAv1Encoder {
    /// The current instance; `None` before the first picture, between a drained instance and
    /// the next picture, and after the end of stream.
    encoder: Option<encoder::Video>,
    settings: SvtAv1Settings,
    config: Av1Config,
    /// The picture handed to libavcodec; reused while libavcodec holds no reference to it.
    staging: frame::Video,
    packet: Packet,
    ready: VecDeque<AccessUnit>,
    /// Instances opened so far.
    opens: u64,
    flushing: bool,
}

impl fmt::Debug for SvtAv1Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvtAv1Encoder")
            .field("settings", &self.settings)
            .field("codec", &self.config.codec_string())
            .field("ready", &self.ready.len())
            .field("opens", &self.opens)
            .finish_non_exhaustive()
    }
}

impl SvtAv1Encoder {
    /// Checks `settings` and learns the sequence header (one throw-away instance, see the
    /// module docs); the encoding instance opens at the first picture.
    pub fn new(settings: SvtAv1Settings) -> Result<Self, LibavError> {
        settings.check()?;
        quiet_logging();
        let config = probe_sequence_header(&settings)?;
        let staging = frame::Video::new(Pixel::YUV420P, settings.width, settings.height);
        Ok(SvtAv1Encoder {
            encoder: None,
            settings,
            config,
            staging,
            packet: Packet::empty(),
            ready: VecDeque::new(),
            opens: 0,
            flushing: false,
        })
    }

    pub fn settings(&self) -> &SvtAv1Settings {
        &self.settings
    }

    pub fn av1_config(&self) -> &Av1Config {
        &self.config
    }

    /// Encoding instances opened so far: 1 for the first picture, plus one per forced key frame
    /// after it (the restarts, see the module docs).
    pub fn opens(&self) -> u64 {
        self.opens
    }

    /// Collects every packet the current instance has ready; at its end of stream the instance
    /// is closed.
    fn receive(&mut self) -> Result<(), LibavError> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(());
        };
        loop {
            match encoder.receive_packet(&mut self.packet) {
                Ok(()) => {
                    let unit = unit(&self.packet, &self.config)?;
                    // alloc: the queue grows only while the caller does not poll.
                    self.ready.push_back(unit);
                }
                Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::error::EAGAIN => {
                    return Ok(());
                }
                Err(ffmpeg_next::Error::Eof) => {
                    self.encoder = None;
                    return Ok(());
                }
                Err(other) => return Err(ffmpeg_error("avcodec_receive_packet")(other)),
            }
        }
    }

    /// Sends the end of stream to the current instance and drains it (see the module docs).
    fn finish_instance(&mut self) -> Result<(), LibavError> {
        if let Some(encoder) = self.encoder.as_mut() {
            encoder
                .send_eof()
                .map_err(ffmpeg_error("avcodec_send_frame (eof)"))?;
            // With the end of stream sent, receive blocks until the instance is drained.
            self.receive()?;
        }
        Ok(())
    }

    fn fill_staging(&mut self, frame: &RawVideoFrame<'_>) -> Result<(), LibavError> {
        // SAFETY: `staging` owns a valid AVFrame; av_frame_is_writable only reads its buffer
        // references.
        let writable = unsafe { ffmpeg_next::ffi::av_frame_is_writable(self.staging.as_mut_ptr()) };
        if writable == 0 {
            // libavcodec still holds the previous picture: take a fresh buffer for this one.
            // alloc: only when the encoder kept a reference, which the wrapper does not do
            // once `receive` has run.
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

/// Turns one packet into a unit: temporal delimiter dropped, key frames checked against the
/// track's sequence header.
fn unit(packet: &Packet, config: &Av1Config) -> Result<AccessUnit, LibavError> {
    let pts = packet.pts().unwrap_or(0);
    // alloc (inside): one buffer per temporal unit; the unit outlives the packet.
    let (payload, shown_key_frame) = temporal_unit_payload(packet.data().unwrap_or_default())?;
    let keyframe = packet.is_key() && shown_key_frame;
    if keyframe && Av1Config::from_sequence_header_obu(&payload)? != *config {
        return Err(LibavError::InvalidSettings {
            setting: "sequence header",
            reason: format!("SVT-AV1 changed its sequence header at pts {pts}"),
        });
    }
    Ok(AccessUnit {
        codec: Codec::Av1,
        pts,
        // Low-delay prediction: decode order is presentation order.
        dts: pts,
        keyframe,
        payload: Bytes::from(payload),
    })
}

impl Drop for SvtAv1Encoder {
    /// SVT-AV1 closes cleanly only once drained to end of stream: a close with pictures still
    /// queued blocks in `svt_av1_enc_deinit`.
    fn drop(&mut self) {
        if let Some(mut encoder) = self.encoder.take() {
            if !self.flushing {
                let _ = encoder.send_eof();
            }
            while encoder.receive_packet(&mut self.packet).is_ok() {}
        }
    }
}

impl VideoEncoder for SvtAv1Encoder {
    type Error = LibavError;

    fn submit(&mut self, frame: &RawVideoFrame<'_>, force_idr: bool) -> Result<(), LibavError> {
        if self.flushing {
            return Err(LibavError::SubmitAfterFlush);
        }
        frame.check_fits(self.settings.width, self.settings.height)?;
        if force_idr {
            // A fresh instance starts with a key frame (see the module docs).
            self.finish_instance()?;
        }
        self.fill_staging(frame)?;
        self.staging.set_pts(Some(frame.pts));
        self.staging.set_kind(if force_idr {
            picture::Type::I
        } else {
            picture::Type::None
        });
        let encoder = match self.encoder.as_mut() {
            Some(encoder) => encoder,
            None => {
                self.opens += 1;
                self.encoder.insert(open(&self.settings)?)
            }
        };
        encoder
            .send_frame(&self.staging)
            .map_err(ffmpeg_error("avcodec_send_frame"))?;
        self.receive()
    }

    fn poll_packet(&mut self) -> Result<Option<AccessUnit>, LibavError> {
        if self.ready.is_empty() {
            self.receive()?;
        }
        Ok(self.ready.pop_front())
    }

    fn flush(&mut self) -> Result<(), LibavError> {
        if self.flushing {
            return Ok(());
        }
        self.flushing = true;
        match self.encoder.as_mut() {
            Some(encoder) => encoder
                .send_eof()
                .map_err(ffmpeg_error("avcodec_send_frame (eof)")),
            None => Ok(()),
        }
    }

    fn track_config(&self) -> TrackConfig {
        TrackConfig::Av1(self.config.clone())
    }
}

/// Opens one `libsvtav1` instance.
fn open(settings: &SvtAv1Settings) -> Result<encoder::Video, LibavError> {
    let svt = encoder::find_by_name("libsvtav1").ok_or(LibavError::EncoderNotFound("libsvtav1"))?;
    let mut video = codec::context::Context::new_with_codec(svt)
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
    let bitrate = settings.bitrate_kbps as usize * 1000;
    video.set_bit_rate(bitrate);
    // Peak = average selects SVT-AV1's CBR, the one mode low delay has.
    video.set_max_bit_rate(bitrate);
    let buffer_kbits = if settings.buffer_kbits == 0 {
        settings.bitrate_kbps
    } else {
        settings.buffer_kbits
    };
    // ffmpeg-next has no setter for the VBV/CBR buffer size.
    // SAFETY: the context is allocated and not yet open; rc_buffer_size is a plain int field
    // that avcodec_open2 reads.
    unsafe {
        (*video.as_mut_ptr()).rc_buffer_size =
            i32::try_from(u64::from(buffer_kbits) * 1000).unwrap_or(i32::MAX);
    }
    let mut options = Dictionary::new();
    options.set("preset", &settings.preset.to_string());
    options.set("svtav1-params", &settings.svt_params());
    video
        .open_as_with(svt, options)
        .map_err(ffmpeg_error("avcodec_open2 (libsvtav1)"))
}

/// Encodes one mid-grey picture in a throw-away instance with `settings` and reads the sequence
/// header of the key frame it makes.
fn probe_sequence_header(settings: &SvtAv1Settings) -> Result<Av1Config, LibavError> {
    let mut encoder = open(settings)?;
    let mut picture = frame::Video::new(Pixel::YUV420P, settings.width, settings.height);
    for index in 0..3 {
        picture.data_mut(index).fill(128);
    }
    picture.set_pts(Some(0));
    encoder
        .send_frame(&picture)
        .map_err(ffmpeg_error("avcodec_send_frame"))?;
    encoder
        .send_eof()
        .map_err(ffmpeg_error("avcodec_send_frame (eof)"))?;
    let mut packet = Packet::empty();
    encoder
        .receive_packet(&mut packet)
        .map_err(ffmpeg_error("avcodec_receive_packet"))?;
    let config = Av1Config::from_sequence_header_obu(packet.data().unwrap_or_default())?;
    // SVT-AV1 complains on close about an instance that was not drained to its end.
    while encoder.receive_packet(&mut packet).is_ok() {}
    Ok(config)
}

#[cfg(test)]
#[path = "svtav1_tests.rs"]
mod tests;
