//! NVDEC: H.264 and HEVC decoding on an NVIDIA GPU through libavcodec's CUDA hwaccel, for
//! [`crate::VideoDecoder`].
//!
//! Why the hwaccel and not the `h264_cuvid` / `hevc_cuvid` decoders (Debian's FFmpeg 5.1 has
//! both): the hwaccel runs inside the same native `h264` / `hevc` decoders the CPU path uses, so
//! our length-prefixed units, the `avcC` / `hvcC` extradata, pts handling, error concealment and
//! the corrupt-unit accounting are the same code on both paths, and a stream the GPU cannot take
//! (a profile NVDEC lacks) falls back to software decode inside libavcodec instead of failing.
//! The `*_cuvid` decoders are separate decoders with their own parser, bitstream filter and
//! frame queue (`surfaces`, `extra_hw_frames`), whose failures and timestamps we would have to
//! learn anew.
//!
//! Set-up, once per decoder: the two driver libraries FFmpeg loads at run time
//! (nv-codec-headers' `dynlink_loader.h`: `libcuda.so.1`, and `libnvcuvid.so.1` for NVDEC) are
//! loaded here first with `dlopen`, so a machine without them gets a reason an operator can act
//! on; then `av_hwdevice_ctx_create(AV_HWDEVICE_TYPE_CUDA)` opens a CUDA context on the GPU, and
//! a `get_format` callback picks `AV_PIX_FMT_CUDA` when libavcodec offers it (it does not for
//! streams the hwaccel cannot decode, which then decode in software).
//!
//! Frames: NVDEC writes NV12 surfaces in GPU memory. `VideoDecoder::poll_picture` hands them
//! out as they are (for `crate::CudaScaler`, which scales them on the GPU); `poll_frame`
//! copies them to system memory with `av_hwframe_transfer_data` and de-interleaves them into
//! I420 here ([`download`]). docs/transcode.md, "GPU decode (NVDEC) and GPU scaling", has the
//! whole picture.

use std::ffi::c_int;
use std::ptr;
use std::sync::{Mutex, OnceLock, PoisonError};

use ffmpeg_next::ffi;
use libloading::Library;

use crate::{LibavError, ffmpeg_error_text};

/// The CUDA driver library and the NVDEC (CUVID) library, as FFmpeg loads them.
pub const NVDEC_LIBRARIES: [&str; 2] = ["libcuda.so.1", "libnvcuvid.so.1"];

/// Loads the driver libraries once per process and keeps them loaded (unloading libcuda after
/// FFmpeg initialised it is not safe); `Err` is the reason they are not there.
fn driver_libraries() -> Result<(), String> {
    static LOADED: OnceLock<Result<Vec<Library>, String>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        NVDEC_LIBRARIES
            .iter()
            .map(|name| {
                // SAFETY: loading the NVIDIA driver's libraries runs their initialisers, which
                // have no preconditions we could break; they are made to be dlopened (FFmpeg
                // does exactly this).
                unsafe { Library::new(name) }.map_err(|e| missing_library_reason(name, &e))
            })
            .collect()
    });
    loaded.as_ref().map(|_| ()).map_err(Clone::clone)
}

fn missing_library_reason(name: &str, error: &dyn std::fmt::Display) -> String {
    if name.starts_with("libcuda") {
        format!("{name} not found (no NVIDIA driver installed?): {error}")
    } else {
        format!(
            "{name} not found (the NVIDIA driver is installed without its video decode \
             library, e.g. Debian's libnvcuvid1 is missing): {error}"
        )
    }
}

/// A new reference to the buffer `reference` holds (`av_buffer_ref`); `call` names it in the
/// error if there is no memory for one.
///
/// # Safety
/// `reference` must be a live `AVBufferRef`.
pub(crate) unsafe fn buffer_ref(
    reference: *mut ffi::AVBufferRef,
    call: &'static str,
) -> Result<*mut ffi::AVBufferRef, LibavError> {
    // SAFETY: the caller's guarantee; av_buffer_ref returns a new reference or null.
    let new = unsafe { ffi::av_buffer_ref(reference) };
    if new.is_null() {
        return Err(LibavError::Ffmpeg {
            call,
            source: ffmpeg_next::Error::from(ffi::AVERROR(ffi::ENOMEM)),
        });
    }
    Ok(new)
}

/// A CUDA device context (`AVHWDeviceContext` of type CUDA) for GPU `gpu`, owned.
pub(crate) struct CudaDevice {
    reference: *mut ffi::AVBufferRef,
}

// SAFETY: an AVBufferRef to a CUDA device context may be used and freed from any thread (FFmpeg
// ref-counts it atomically, and the CUDA context is pushed per call); the shared device is only
// touched under its mutex (to take another reference).
unsafe impl Send for CudaDevice {}

impl CudaDevice {
    /// A reference to the process's CUDA device for GPU `gpu`, opened at the first call and then
    /// shared: a CUDA context costs hundreds of MB of GPU memory and tens of ms, so every decoder
    /// and GPU scaler on one GPU uses the same one (and the scalers can read the decoders'
    /// surfaces).
    pub(crate) fn shared(gpu: u32) -> Result<CudaDevice, LibavError> {
        static DEVICES: Mutex<Vec<(u32, CudaDevice)>> = Mutex::new(Vec::new());
        let mut devices = DEVICES.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match devices.iter().position(|(index, _)| *index == gpu) {
            Some(index) => index,
            None => {
                // alloc: once per GPU per process.
                devices.push((gpu, CudaDevice::open(gpu)?));
                devices.len() - 1
            }
        };
        devices[index].1.new_reference()
    }

    /// The device reference (for a frames context on it).
    pub(crate) fn as_ptr(&self) -> *mut ffi::AVBufferRef {
        self.reference
    }

    /// Another owned reference to the same device.
    fn new_reference(&self) -> Result<CudaDevice, LibavError> {
        // SAFETY: `self.reference` is a live device reference.
        let reference = unsafe { buffer_ref(self.reference, "av_buffer_ref (CUDA device)")? };
        Ok(CudaDevice { reference })
    }

    /// The CUDA context FFmpeg created for the device (`AVCUDADeviceContext::cuda_ctx`).
    pub(crate) fn cuda_context(&self) -> *mut std::ffi::c_void {
        // SAFETY: a live reference to a device context of type CUDA, whose hwctx is an
        // AVCUDADeviceContext.
        unsafe {
            let device = &*((*self.reference).data as *const ffi::AVHWDeviceContext);
            (*(device.hwctx as *const ffi::AVCUDADeviceContext))
                .cuda_ctx
                .cast()
        }
    }

    /// Opens GPU `gpu`, or says why it cannot be used.
    pub(crate) fn open(gpu: u32) -> Result<CudaDevice, LibavError> {
        let unavailable = |reason: String| LibavError::NvdecUnavailable { reason };
        driver_libraries().map_err(unavailable)?;
        let name = std::ffi::CString::new(gpu.to_string())
            .map_err(|_| unavailable(format!("GPU {gpu} is not a device name FFmpeg takes")))?;
        let mut reference: *mut ffi::AVBufferRef = ptr::null_mut();
        // SAFETY: `reference` is a valid out-pointer; `name` is NUL-terminated and outlives the
        // call; no options, no flags.
        let code = unsafe {
            ffi::av_hwdevice_ctx_create(
                &mut reference,
                ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA,
                name.as_ptr(),
                ptr::null_mut(),
                0,
            )
        };
        if code < 0 || reference.is_null() {
            return Err(unavailable(format!(
                "CUDA device {gpu} did not open (av_hwdevice_ctx_create: {}): no such GPU, or \
                 the driver cannot use it",
                ffmpeg_error_text(code.into())
            )));
        }
        Ok(CudaDevice { reference })
    }

    /// Gives the decoder context this reference to the device and the callback that picks
    /// CUDA frames. Call before `avcodec_open2`.
    ///
    /// # Safety
    /// `context` must point to an allocated decoder context that is not open yet.
    pub(crate) unsafe fn attach(self, context: *mut ffi::AVCodecContext) {
        let reference = self.reference;
        std::mem::forget(self);
        // SAFETY: the caller guarantees an allocated, unopened context; it takes ownership of
        // the reference (forgotten above, so not unreferenced twice) and frees it with the
        // context. The callback has the exact C signature libavcodec calls.
        unsafe {
            (*context).hw_device_ctx = reference;
            (*context).get_format = Some(pick_cuda_format);
        }
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        // SAFETY: we own this reference; av_buffer_unref frees it and nulls the pointer. The
        // decoder context holds its own reference, so the device lives as long as either.
        unsafe { ffi::av_buffer_unref(&mut self.reference) };
    }
}

/// libavcodec's `get_format`: CUDA frames when the hwaccel offers them for an 8-bit 4:2:0
/// stream, else what libavcodec would pick by default: software decode of a stream the GPU
/// cannot take, and of 10-bit, 4:2:2 and 4:4:4 streams, whose NVDEC surfaces (P010, and so on)
/// neither the GPU scaler nor the download takes; the CPU path converts those to 8-bit 4:2:0.
unsafe extern "C" fn pick_cuda_format(
    _context: *mut ffi::AVCodecContext,
    formats: *const ffi::AVPixelFormat,
) -> ffi::AVPixelFormat {
    // The list holds the hwaccel formats first and ends with the software format the stream
    // decodes to. Return that one rather than libavcodec's default choice, which picks CUDA
    // whenever a CUDA device is attached (a Main 10 stream then came out as P010 surfaces on
    // an H100).
    let (mut cuda_offered, mut software) = (false, ffi::AVPixelFormat::AV_PIX_FMT_NONE);
    let mut at = formats;
    // SAFETY: libavcodec passes a list terminated by AV_PIX_FMT_NONE; we read up to and
    // including the terminator only.
    unsafe {
        while !at.is_null() && *at != ffi::AVPixelFormat::AV_PIX_FMT_NONE {
            cuda_offered |= *at == ffi::AVPixelFormat::AV_PIX_FMT_CUDA;
            software = *at;
            at = at.add(1);
        }
    }
    let eight_bit_420 = matches!(
        software,
        ffi::AVPixelFormat::AV_PIX_FMT_YUV420P | ffi::AVPixelFormat::AV_PIX_FMT_YUVJ420P
    );
    if cuda_offered && eight_bit_420 {
        ffi::AVPixelFormat::AV_PIX_FMT_CUDA
    } else {
        software
    }
}

/// A decoded picture copied out of GPU memory, as I420 in buffers reused from picture to
/// picture.
#[derive(Default)]
pub(crate) struct DownloadedPicture {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) planes: [Vec<u8>; 3],
}

/// Copies the CUDA `frame` to system memory through `staging` (reused) and de-interleaves its
/// NV12 into `out`.
///
/// # Safety
/// `frame` must be a valid decoded frame of format `AV_PIX_FMT_CUDA`, and `staging` a valid
/// frame not referenced elsewhere.
pub(crate) unsafe fn download(
    frame: *const ffi::AVFrame,
    staging: *mut ffi::AVFrame,
    out: &mut DownloadedPicture,
) -> Result<(), LibavError> {
    // SAFETY: both frames are valid (caller); unref leaves `staging` blank, and transfer then
    // allocates it in the hw frames context's software format (NV12 for 8-bit 4:2:0).
    let code = unsafe {
        ffi::av_frame_unref(staging);
        ffi::av_hwframe_transfer_data(staging, frame, 0)
    };
    if code < 0 {
        return Err(LibavError::Ffmpeg {
            call: "av_hwframe_transfer_data",
            source: ffmpeg_next::Error::from(code),
        });
    }
    // SAFETY: the transfer succeeded, so `staging` holds a software picture with its planes.
    let staged = unsafe { &*staging };
    if staged.format != ffi::AVPixelFormat::AV_PIX_FMT_NV12 as c_int {
        return Err(LibavError::UnsupportedPixelFormat(format!(
            "NVDEC surface format {} (only 8-bit NV12 is supported)",
            staged.format
        )));
    }
    let (width, height) = (
        usize::try_from(staged.width).unwrap_or(0),
        usize::try_from(staged.height).unwrap_or(0),
    );
    let (luma_stride, chroma_stride) = (
        usize::try_from(staged.linesize[0]).unwrap_or(0),
        usize::try_from(staged.linesize[1]).unwrap_or(0),
    );
    if width == 0 || height == 0 || luma_stride < width || chroma_stride < width {
        return Err(LibavError::PlaneTooSmall { plane: 0 });
    }
    let (chroma_width, chroma_height) = (width.div_ceil(2), height.div_ceil(2));
    // SAFETY: an NV12 picture from av_hwframe_transfer_data has `height` rows of `linesize[0]`
    // bytes in plane 0 and `ceil(height / 2)` rows of `linesize[1]` bytes in plane 1; the last
    // row is only guaranteed `width` bytes, so each slice ends there.
    let (luma, chroma) = unsafe {
        (
            std::slice::from_raw_parts(staged.data[0], luma_stride * (height - 1) + width),
            std::slice::from_raw_parts(
                staged.data[1],
                chroma_stride * (chroma_height - 1) + chroma_width * 2,
            ),
        )
    };
    nv12_to_i420(
        (luma, luma_stride),
        (chroma, chroma_stride),
        (width, height),
        out,
    );
    out.width = width as u32;
    out.height = height as u32;
    Ok(())
}

/// De-interleaves an NV12 picture (Y plane, then one plane of U/V pairs) into tightly packed
/// I420 planes.
pub(crate) fn nv12_to_i420(
    (luma, luma_stride): (&[u8], usize),
    (chroma, chroma_stride): (&[u8], usize),
    (width, height): (usize, usize),
    out: &mut DownloadedPicture,
) {
    let (chroma_width, chroma_height) = (width.div_ceil(2), height.div_ceil(2));
    let [y, u, v] = &mut out.planes;
    // alloc: only when the picture size grows; the buffers are reused after that.
    y.resize(width * height, 0);
    u.resize(chroma_width * chroma_height, 0);
    v.resize(chroma_width * chroma_height, 0);
    for (row, target) in y.chunks_exact_mut(width).enumerate() {
        if let Some(source) = luma.get(row * luma_stride..row * luma_stride + width) {
            target.copy_from_slice(source);
        }
    }
    for row in 0..chroma_height {
        let Some(pairs) = chroma.get(row * chroma_stride..row * chroma_stride + chroma_width * 2)
        else {
            break;
        };
        let u_row = &mut u[row * chroma_width..(row + 1) * chroma_width];
        let v_row = &mut v[row * chroma_width..(row + 1) * chroma_width];
        for ((pair, u), v) in pairs.chunks_exact(2).zip(u_row).zip(v_row) {
            *u = pair[0];
            *v = pair[1];
        }
    }
}

/// Whether NVDEC can be set up on GPU `gpu` here: the driver libraries load and a CUDA device
/// opens. `Err` is the reason. Whether the GPU's NVDEC takes a given codec and profile is only
/// known at the first picture (libavcodec then decodes in software if it does not).
pub fn nvdec_check(gpu: u32) -> Result<(), String> {
    CudaDevice::open(gpu).map(drop).map_err(|e| match e {
        LibavError::NvdecUnavailable { reason } => reason,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nv12_is_deinterleaved_into_i420() {
        // 4x2 picture: luma rows padded to stride 6, one chroma row of U/V pairs (stride 8).
        let luma = [1, 2, 3, 4, 0, 0, 5, 6, 7, 8];
        let chroma = [10, 20, 11, 21, 0, 0, 0, 0];
        let mut out = DownloadedPicture::default();
        nv12_to_i420((&luma, 6), (&chroma, 8), (4, 2), &mut out);
        assert_eq!(out.planes[0], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(out.planes[1], [10, 11]);
        assert_eq!(out.planes[2], [20, 21]);
        // Odd sizes round the chroma planes up.
        let luma = [9u8; 9];
        let chroma = [1, 2, 3, 4, 5, 6, 7, 8];
        nv12_to_i420((&luma, 3), (&chroma, 4), (3, 3), &mut out);
        assert_eq!(out.planes[0].len(), 9);
        assert_eq!(out.planes[1], [1, 3, 5, 7]);
        assert_eq!(out.planes[2], [2, 4, 6, 8]);
    }

    #[test]
    fn without_the_driver_nvdec_is_unavailable_with_the_library_reason() {
        // SAFETY: loading the real driver library, if present, has no preconditions.
        if unsafe { Library::new("libcuda.so.1") }.is_ok() {
            eprintln!("skipped: libcuda.so.1 is installed here");
            return;
        }
        let reason = nvdec_check(0).unwrap_err();
        assert!(
            reason.starts_with("libcuda.so.1 not found (no NVIDIA driver installed?)"),
            "{reason}"
        );
        // Remembered, not retried into a different answer.
        assert_eq!(nvdec_check(0).unwrap_err(), reason);
    }

    #[test]
    fn cuda_frames_only_for_8_bit_4_2_0_streams() {
        use ffi::AVPixelFormat::*;
        let pick = |list: &[ffi::AVPixelFormat]| {
            let mut list = list.to_vec();
            list.push(AV_PIX_FMT_NONE);
            // SAFETY: a NONE-terminated list; the context is not read.
            unsafe { pick_cuda_format(ptr::null_mut(), list.as_ptr()) }
        };
        assert_eq!(
            pick(&[AV_PIX_FMT_CUDA, AV_PIX_FMT_YUV420P]),
            AV_PIX_FMT_CUDA
        );
        assert_eq!(
            pick(&[AV_PIX_FMT_CUDA, AV_PIX_FMT_YUVJ420P]),
            AV_PIX_FMT_CUDA
        );
        // HEVC Main 10, 4:2:2: the software format, although CUDA is offered.
        assert_eq!(
            pick(&[AV_PIX_FMT_CUDA, AV_PIX_FMT_YUV420P10LE]),
            AV_PIX_FMT_YUV420P10LE
        );
        assert_eq!(pick(&[AV_PIX_FMT_YUV422P]), AV_PIX_FMT_YUV422P);
        // A profile the GPU cannot take: no CUDA offered.
        assert_eq!(pick(&[AV_PIX_FMT_YUV420P]), AV_PIX_FMT_YUV420P);
    }

    #[test]
    fn missing_library_reasons_name_the_package() {
        let error = "cannot open shared object file";
        assert!(missing_library_reason("libnvcuvid.so.1", &error).contains("libnvcuvid1"));
        assert!(missing_library_reason("libcuda.so.1", &error).contains("no NVIDIA driver"));
    }
}
