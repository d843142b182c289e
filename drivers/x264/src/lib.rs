//! H.264 encoding with libx264 (through the raw `x264-sys` bindings) behind
//! [`media::encode::VideoEncoder`].
//!
//! Why raw FFI and not the safe `x264` crate: that crate builds the `x264_picture_t` itself and
//! cannot set `i_type`, so it cannot force an IDR, and every rendition of a ladder must cut IDRs
//! at the same pts (DESIGN.md). This wrapper is small: open with our settings, read the parameter
//! sets once, encode borrowed I420 pictures, close in `Drop`.
//!
//! Output format: x264 is opened with `b_annexb = 0`, so each NAL unit comes with a 4-byte
//! big-endian length in front instead of a start code: exactly the `avc1` sample format of
//! ISO/IEC 14496-15 §5.3.4.2 that [`media::AccessUnit`] carries. `b_repeat_headers = 0` keeps
//! SPS/PPS out of the samples; they are read once from `x264_encoder_headers` into the track's
//! [`AvcConfig`] (ITU-T H.264 §7.3.2.1 / §7.3.2.2). Scene-cut detection is off, so IDRs come only
//! where the caller forces them (`i_type = X264_TYPE_IDR`) or every `keyint_max` frames.
//!
//! Timestamps: pictures go in with pts on the 90 kHz clock; x264 hands them back (reordered, with
//! a dts) on the same clock. With `zerolatency` (the default) there are no B-frames and no
//! lookahead, so each submitted picture comes out at once and dts equals pts.
//!
//! Not done here: run-time reconfiguration (`x264_encoder_reconfig`), intra refresh, interlace,
//! high bit depth, and routing x264's own log lines into `tracing` (x264 writes warnings and
//! errors to stderr; its per-encode info summary is turned off).

use std::collections::VecDeque;
use std::ffi::{CStr, c_int};
use std::fmt;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};

use bytes::BytesMut;
use media::encode::{
    RawVideoFrame, Vbv, VideoEncoder, check_frame_rate, check_in_range, check_keyint_max,
    check_picture_size,
};
use media::{AccessUnit, AvcConfig, Codec, MediaError, TrackConfig};
use x264_sys as sys;

/// NAL unit types (ITU-T H.264 Table 7-1) that we look for in x264's header output.
const NAL_SPS: c_int = 7;
const NAL_PPS: c_int = 8;
/// x264's `X264_KEYINT_MAX_INFINITE`: never place an IDR on its own.
const KEYINT_INFINITE: c_int = 1 << 30;
/// Encoder threads we allow at most: the core plan gives a transcode worker one or two cores.
pub const MAX_THREADS: u32 = 16;

/// Errors from the x264 driver; each says which setting, call or plane was at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum X264Error {
    #[error("x264 setting {setting}: {reason}")]
    InvalidSettings {
        setting: &'static str,
        reason: String,
    },
    #[error("x264 rejected the {call} call (returned {code})")]
    Rejected { call: &'static str, code: i32 },
    #[error("x264_encoder_open failed for {width}x{height} ({preset}, {profile})")]
    OpenFailed {
        width: u32,
        height: u32,
        preset: &'static str,
        profile: &'static str,
    },
    #[error("x264 headers hold no {0} NAL unit")]
    MissingParameterSet(&'static str),
    #[error("x264 parameter sets do not parse: {0}")]
    Config(#[from] MediaError),
    #[error("x264 got a {got_width}x{got_height} picture, it was opened for {width}x{height}")]
    FrameSize {
        width: u32,
        height: u32,
        got_width: u32,
        got_height: u32,
    },
    #[error("x264 picture plane {plane} is shorter than its rows at its stride")]
    PlaneTooSmall { plane: usize },
    #[error("x264 picture submitted after flush")]
    SubmitAfterFlush,
}

media::impl_encoder_error_from!(X264Error);

/// x264's speed/quality presets, fastest first (`x264 --fullhelp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X264Preset {
    Ultrafast,
    Superfast,
    Veryfast,
    Faster,
    Fast,
    Medium,
    Slow,
}

impl X264Preset {
    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or("?")
    }

    fn c_name(self) -> &'static CStr {
        match self {
            X264Preset::Ultrafast => c"ultrafast",
            X264Preset::Superfast => c"superfast",
            X264Preset::Veryfast => c"veryfast",
            X264Preset::Faster => c"faster",
            X264Preset::Fast => c"fast",
            X264Preset::Medium => c"medium",
            X264Preset::Slow => c"slow",
        }
    }
}

/// H.264 profiles (ITU-T H.264 Annex A.2) x264 can restrict itself to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X264Profile {
    Baseline,
    Main,
    High,
}

impl X264Profile {
    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or("?")
    }

    fn c_name(self) -> &'static CStr {
        match self {
            X264Profile::Baseline => c"baseline",
            X264Profile::Main => c"main",
            X264Profile::High => c"high",
        }
    }
}

/// How to open the encoder. Rate control is ABR with a VBV cap, which is what HLS/DASH
/// renditions advertise as BANDWIDTH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X264Settings {
    /// Picture size in pixels; both even (4:2:0 chroma).
    pub width: u32,
    pub height: u32,
    /// Frame rate as numerator / denominator, written into the SPS VUI timing.
    pub fps_num: u32,
    pub fps_den: u32,
    /// Average bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// VBV peak rate in kbit/s; 0 means the average bitrate.
    pub vbv_max_kbps: u32,
    /// VBV buffer in kbit; 0 means one second at the peak rate.
    pub vbv_buffer_kbits: u32,
    pub preset: X264Preset,
    /// `tune=zerolatency`: no lookahead, no B-frames, no frame threads, so every picture comes
    /// out of the encoder before the next one goes in.
    pub zerolatency: bool,
    pub profile: X264Profile,
    /// x264 places an IDR on its own after this many frames without one; `None` leaves IDRs
    /// entirely to `force_idr` (scene cuts are always off).
    pub keyint_max: Option<u32>,
    /// Encoder threads, 1..=[`MAX_THREADS`]. With zerolatency these are slice threads.
    pub threads: u32,
}

impl Default for X264Settings {
    fn default() -> Self {
        X264Settings {
            width: 1280,
            height: 720,
            fps_num: 30,
            fps_den: 1,
            bitrate_kbps: 2000,
            vbv_max_kbps: 0,
            vbv_buffer_kbits: 0,
            preset: X264Preset::Veryfast,
            zerolatency: true,
            profile: X264Profile::High,
            keyint_max: None,
            threads: 1,
        }
    }
}

impl X264Settings {
    /// The rate control's bitrate, peak rate and buffer.
    fn vbv(&self) -> Vbv {
        Vbv {
            bitrate_kbps: self.bitrate_kbps,
            max_kbps: self.vbv_max_kbps,
            buffer_kbits: self.vbv_buffer_kbits,
        }
    }

    fn check(&self) -> Result<(), X264Error> {
        // x264 takes sizes as C ints and needs even sizes for 4:2:0; 16384 is past level 6.2.
        check_picture_size(self.width, self.height, 2, 16384)?;
        check_frame_rate(self.fps_num, self.fps_den)?;
        self.vbv().check()?;
        check_in_range("threads", self.threads, 1..=MAX_THREADS)?;
        check_keyint_max(self.keyint_max)?;
        Ok(())
    }
}

/// An owned libx264 encoder handle, closed when dropped.
struct Handle(NonNull<sys::x264_t>);

impl Handle {
    fn as_ptr(&self) -> *mut sys::x264_t {
        self.0.as_ptr()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from x264_encoder_open and is closed exactly once, here.
        unsafe { sys::x264_encoder_close(self.0.as_ptr()) };
    }
}

/// An open libx264 encoder. See the crate docs for the output format.
pub struct X264Encoder {
    handle: Handle,
    settings: X264Settings,
    config: AvcConfig,
    /// Encoded units not yet polled. With zerolatency it holds at most one.
    ready: VecDeque<AccessUnit>,
    flushing: bool,
}

// SAFETY: libx264 keeps no thread-local state for an encoder handle; one handle may be used from
// any thread as long as calls are not concurrent, which `&mut self` on every call of the only
// owner (X264Encoder) guarantees.
unsafe impl Send for Handle {}

impl fmt::Debug for X264Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X264Encoder")
            .field("settings", &self.settings)
            .field("codec", &self.config.codec_string())
            .field("ready", &self.ready.len())
            .field("flushing", &self.flushing)
            .finish_non_exhaustive()
    }
}

impl X264Encoder {
    /// Opens libx264 with `settings` and reads its SPS/PPS into the track config.
    pub fn new(settings: X264Settings) -> Result<Self, X264Error> {
        settings.check()?;
        let mut param = MaybeUninit::<sys::x264_param_t>::uninit();
        let tune: Option<&CStr> = settings.zerolatency.then_some(c"zerolatency");
        // SAFETY: `param` is valid writable storage for one x264_param_t, which
        // x264_param_default_preset fills completely; the preset and tune are NUL-terminated
        // static strings (a null tune means none).
        let code = unsafe {
            sys::x264_param_default_preset(
                param.as_mut_ptr(),
                settings.preset.c_name().as_ptr(),
                tune.map_or(ptr::null(), CStr::as_ptr),
            )
        };
        if code < 0 {
            return Err(X264Error::Rejected {
                call: "x264_param_default_preset",
                code,
            });
        }
        // SAFETY: x264_param_default_preset returned 0, so every field has been initialised.
        let mut param = unsafe { param.assume_init() };
        apply_settings(&mut param, &settings);
        // SAFETY: `param` is an initialised parameter struct and the profile name a static
        // NUL-terminated string.
        let code = unsafe {
            sys::x264_param_apply_profile(&mut param, settings.profile.c_name().as_ptr())
        };
        if code < 0 {
            return Err(X264Error::Rejected {
                call: "x264_param_apply_profile",
                code,
            });
        }
        // SAFETY: `param` is fully initialised; x264 copies it and keeps no pointer to it.
        let handle = NonNull::new(unsafe { sys::x264_encoder_open(&mut param) })
            .map(Handle)
            .ok_or(X264Error::OpenFailed {
                width: settings.width,
                height: settings.height,
                preset: settings.preset.name(),
                profile: settings.profile.name(),
            })?;
        // From here on `handle` closes the encoder when dropped, also on the error path below.
        let config = read_headers(&handle)?;
        Ok(X264Encoder {
            handle,
            settings,
            config,
            ready: VecDeque::new(),
            flushing: false,
        })
    }

    pub fn settings(&self) -> &X264Settings {
        &self.settings
    }

    /// The parameter sets of this encoder, as an `avcC` record and parsed fields.
    pub fn avc_config(&self) -> &AvcConfig {
        &self.config
    }

    /// Runs one `x264_encoder_encode` call (a picture, or `None` to drain) and queues what comes
    /// out.
    fn encode(&mut self, picture: Option<&mut sys::x264_picture_t>) -> Result<(), X264Error> {
        let mut nals: *mut sys::x264_nal_t = ptr::null_mut();
        let mut count: c_int = 0;
        let mut out = MaybeUninit::<sys::x264_picture_t>::zeroed();
        let input = picture.map_or(ptr::null_mut(), |p| p as *mut sys::x264_picture_t);
        // SAFETY: the handle is open; `input` is null (drain) or a picture whose planes point to
        // memory that outlives this call (x264 copies the picture into its own frame before
        // returning); `out` is writable storage for one picture.
        let size = unsafe {
            sys::x264_encoder_encode(
                self.handle.as_ptr(),
                &mut nals,
                &mut count,
                input,
                out.as_mut_ptr(),
            )
        };
        if size < 0 {
            return Err(X264Error::Rejected {
                call: "x264_encoder_encode",
                code: size,
            });
        }
        if size == 0 {
            return Ok(());
        }
        // SAFETY: a positive return means x264 filled `out` for the frame it emitted.
        let out = unsafe { out.assume_init() };
        // SAFETY: on success `nals` points to `count` descriptors valid until the next call.
        let nals = unsafe { nal_slice(nals, count) };
        // alloc: one buffer per encoded frame; the unit outlives x264's internal buffer, which
        // the next encode call overwrites.
        let mut payload = BytesMut::with_capacity(size as usize);
        for nal in nals {
            // SAFETY: each descriptor's payload points to `i_payload` bytes in x264's buffer.
            payload.extend_from_slice(unsafe { nal_payload(nal) });
        }
        // alloc: the queue grows only while the caller does not poll; steady state reuses it.
        self.ready.push_back(AccessUnit {
            codec: Codec::H264,
            pts: out.i_pts,
            dts: out.i_dts,
            keyframe: out.b_keyframe != 0,
            payload: payload.freeze(),
        });
        Ok(())
    }

    fn delayed_frames(&self) -> c_int {
        // SAFETY: the handle is open.
        unsafe { sys::x264_encoder_delayed_frames(self.handle.as_ptr()) }
    }
}

impl VideoEncoder for X264Encoder {
    type Error = X264Error;

    fn submit(&mut self, frame: &RawVideoFrame<'_>, force_idr: bool) -> Result<(), X264Error> {
        if self.flushing {
            return Err(X264Error::SubmitAfterFlush);
        }
        frame.check_fits(self.settings.width, self.settings.height)?;
        let mut picture = MaybeUninit::<sys::x264_picture_t>::uninit();
        // SAFETY: `picture` is writable storage that x264_picture_init fills with defaults.
        unsafe { sys::x264_picture_init(picture.as_mut_ptr()) };
        // SAFETY: x264_picture_init initialised every field.
        let mut picture = unsafe { picture.assume_init() };
        picture.i_type = if force_idr {
            sys::X264_TYPE_IDR as c_int
        } else {
            sys::X264_TYPE_AUTO as c_int
        };
        picture.i_pts = frame.pts;
        picture.img.i_csp = sys::X264_CSP_I420 as c_int;
        picture.img.i_plane = 3;
        for (index, (plane, stride)) in frame.planes.iter().zip(frame.strides).enumerate() {
            picture.img.i_stride[index] =
                c_int::try_from(stride).map_err(|_| X264Error::PlaneTooSmall { plane: index })?;
            // x264 only reads input planes; the field is `*mut` because the same struct also
            // describes x264's own output frames.
            picture.img.plane[index] = plane.as_ptr().cast_mut();
        }
        self.encode(Some(&mut picture))
    }

    fn poll_packet(&mut self) -> Result<Option<AccessUnit>, X264Error> {
        if let Some(unit) = self.ready.pop_front() {
            return Ok(Some(unit));
        }
        if self.flushing && self.delayed_frames() > 0 {
            self.encode(None)?;
        }
        Ok(self.ready.pop_front())
    }

    fn flush(&mut self) -> Result<(), X264Error> {
        self.flushing = true;
        Ok(())
    }

    fn track_config(&self) -> TrackConfig {
        TrackConfig::Avc(self.config.clone())
    }
}

/// Reads SPS and PPS from x264 (with `b_annexb = 0` each carries a 4-byte length prefix).
fn read_headers(handle: &Handle) -> Result<AvcConfig, X264Error> {
    let mut nals: *mut sys::x264_nal_t = ptr::null_mut();
    let mut count: c_int = 0;
    // SAFETY: the handle is open; x264 writes a pointer to its own NAL array and its length
    // into the two out-parameters.
    let code = unsafe { sys::x264_encoder_headers(handle.as_ptr(), &mut nals, &mut count) };
    if code < 0 {
        return Err(X264Error::Rejected {
            call: "x264_encoder_headers",
            code,
        });
    }
    // SAFETY: on success `nals` points to `count` NAL descriptors that stay valid until the
    // next call into this encoder; we copy what we need before returning.
    let nals = unsafe { nal_slice(nals, count) };
    let (mut sps, mut pps) = (None, None);
    for nal in nals {
        // SAFETY: each descriptor's payload points to `i_payload` bytes in x264's buffer.
        let bytes = unsafe { nal_payload(nal) };
        // Without Annex B each payload starts with its 4-byte length; the parameter sets
        // are wanted without it.
        let body = bytes.get(4..).unwrap_or_default();
        match nal.i_type {
            NAL_SPS if sps.is_none() => sps = Some(body.to_vec()),
            NAL_PPS if pps.is_none() => pps = Some(body.to_vec()),
            _ => {}
        }
    }
    let sps = sps.ok_or(X264Error::MissingParameterSet("SPS"))?;
    let pps = pps.ok_or(X264Error::MissingParameterSet("PPS"))?;
    Ok(AvcConfig::from_parameter_sets(&sps, &pps)?)
}

fn apply_settings(param: &mut sys::x264_param_t, settings: &X264Settings) {
    // The casts below are in range: `X264Settings::check` bounds every value well inside c_int.
    param.i_width = settings.width as c_int;
    param.i_height = settings.height as c_int;
    param.i_csp = sys::X264_CSP_I420 as c_int;
    param.i_fps_num = settings.fps_num;
    param.i_fps_den = settings.fps_den;
    // Constant frame rate: rate control and the SPS timing use fps; pts pass through untouched.
    param.b_vfr_input = 0;
    param.i_threads = settings.threads as c_int;
    param.i_lookahead_threads = 1;
    param.i_log_level = sys::X264_LOG_WARNING as c_int;
    param.b_annexb = 0;
    param.b_repeat_headers = 0;
    param.b_aud = 0;
    param.i_scenecut_threshold = 0;
    param.b_open_gop = 0;
    param.i_keyint_max = settings
        .keyint_max
        .map_or(KEYINT_INFINITE, |frames| frames as c_int);
    param.rc.i_rc_method = sys::X264_RC_ABR as c_int;
    param.rc.i_bitrate = settings.bitrate_kbps as c_int;
    let vbv = settings.vbv();
    param.rc.i_vbv_max_bitrate = vbv.peak_kbps() as c_int;
    param.rc.i_vbv_buffer_size = vbv.buffer_kbits() as c_int;
}

/// Borrows x264's NAL descriptor array.
///
/// # Safety
/// `nals` must point to `count` initialised descriptors (or `count` must be 0) that stay valid
/// and unchanged for the returned lifetime.
unsafe fn nal_slice<'a>(nals: *const sys::x264_nal_t, count: c_int) -> &'a [sys::x264_nal_t] {
    match usize::try_from(count) {
        Ok(len) if len > 0 && !nals.is_null() => {
            // SAFETY: the caller guarantees `len` valid descriptors at `nals`.
            unsafe { std::slice::from_raw_parts(nals, len) }
        }
        _ => &[],
    }
}

/// Borrows the bytes of one NAL unit as x264 wrote them (4-byte length prefix included).
///
/// # Safety
/// `nal.p_payload` must point to `nal.i_payload` bytes that stay valid for the returned lifetime.
unsafe fn nal_payload(nal: &sys::x264_nal_t) -> &[u8] {
    match usize::try_from(nal.i_payload) {
        Ok(len) if len > 0 && !nal.p_payload.is_null() => {
            // SAFETY: the caller guarantees `len` readable bytes at `p_payload`.
            unsafe { std::slice::from_raw_parts(nal.p_payload, len) }
        }
        _ => &[],
    }
}

/// Appends `payload` (4-byte length-prefixed NAL units, the [`AccessUnit`] format) to `out` as
/// an Annex B byte stream (ITU-T H.264 Annex B.1: a 4-byte start code before each NAL unit), for
/// raw `.h264` dumps that ffmpeg can read. Returns false, leaving the NALs before the fault
/// appended, if a length runs past the end.
pub fn append_annex_b(payload: &[u8], out: &mut Vec<u8>) -> bool {
    let mut rest = payload;
    while !rest.is_empty() {
        let Some((len, body)) = rest.split_first_chunk::<4>() else {
            return false;
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some((nal, tail)) = body.split_at_checked(len) else {
            return false;
        };
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        rest = tail;
    }
    true
}

#[cfg(test)]
mod tests;
