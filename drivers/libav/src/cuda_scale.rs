//! Scaling NVDEC's pictures on the GPU, so that a ladder decoded by NVDEC copies only its rung
//! sizes back to system memory and spends no CPU on scaling.
//!
//! Why our own kernel and not FFmpeg's `scale_cuda`: that filter lives in libavfilter, which
//! corecast does not link (it pulls in some 70 more shared libraries on Debian 12, speech
//! synthesis and OCR among them), and NPP is not in Debian. The kernel is small: a box (area
//! average) filter in integers, in `cuda/box_scale.cu`, so [`box_scale_reference`] computes the
//! same bytes on the CPU and the GPU check compares them exactly. Box averaging is what
//! downscaling by 1.5x to 6x needs to avoid aliasing; it is a little softer than swscale's
//! bicubic (docs/transcode.md has the PSNR of both against the source).
//!
//! The PTX is checked in (`cuda/box_scale.ptx`, built with `nvcc -ptx` on a GPU machine, as its
//! header says, and set to PTX ISA 6.0 for sm_52 so that drivers from CUDA 9 on can JIT it),
//! because the build machines have no CUDA toolkit. The CUDA driver API is loaded at run time
//! from `libcuda.so.1` like everything else of NVIDIA's, so the binary needs no driver to build
//! or start.
//!
//! One [`CudaScaler`] per rung: it owns the rung-size planes in GPU memory, runs the two kernels
//! (luma; interleaved chroma into separate U and V planes) on the CUDA stream FFmpeg decodes on,
//! and copies the three small planes into the caller's [`I420Picture`].

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Mutex, OnceLock, PoisonError};

use ffmpeg_next::ffi;
use libloading::Library;

use crate::LibavError;
use crate::nvdec::{CudaDevice, buffer_ref};
use crate::scale::I420Picture;

/// The kernels, as PTX (see the module docs).
const BOX_SCALE_PTX: &str = include_str!("../cuda/box_scale.ptx");
/// Threads per block in x and y (256 per block; enough blocks for any rung size).
const BLOCK: c_uint = 16;

type CuResult = c_int;
type CuContext = *mut c_void;
type CuModule = *mut c_void;
type CuFunction = *mut c_void;
type CuStream = *mut c_void;
type CuDevicePtr = u64;

/// `CU_MEMORYTYPE_HOST` / `CU_MEMORYTYPE_DEVICE` (cuda.h).
const MEMORY_HOST: c_uint = 1;
const MEMORY_DEVICE: c_uint = 2;

/// `CUDA_MEMCPY2D` (cuda.h, the `_v2` layout).
#[repr(C)]
struct Memcpy2d {
    src_x_in_bytes: usize,
    src_y: usize,
    src_memory_type: c_uint,
    src_host: *const c_void,
    src_device: CuDevicePtr,
    src_array: *mut c_void,
    src_pitch: usize,
    dst_x_in_bytes: usize,
    dst_y: usize,
    dst_memory_type: c_uint,
    dst_host: *mut c_void,
    dst_device: CuDevicePtr,
    dst_array: *mut c_void,
    dst_pitch: usize,
    width_in_bytes: usize,
    height: usize,
}

/// The CUDA driver API entry points the scaler calls, from `libcuda.so.1`.
struct CudaApi {
    _library: Library,
    push: unsafe extern "C" fn(CuContext) -> CuResult,
    pop: unsafe extern "C" fn(*mut CuContext) -> CuResult,
    load_module: unsafe extern "C" fn(*mut CuModule, *const c_void) -> CuResult,
    get_function: unsafe extern "C" fn(*mut CuFunction, CuModule, *const c_char) -> CuResult,
    #[allow(clippy::type_complexity)]
    launch: unsafe extern "C" fn(
        CuFunction,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        CuStream,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> CuResult,
    alloc_pitch:
        unsafe extern "C" fn(*mut CuDevicePtr, *mut usize, usize, usize, c_uint) -> CuResult,
    free: unsafe extern "C" fn(CuDevicePtr) -> CuResult,
    copy_2d_async: unsafe extern "C" fn(*const Memcpy2d, CuStream) -> CuResult,
    synchronize: unsafe extern "C" fn(CuStream) -> CuResult,
    error_name: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
}

impl CudaApi {
    /// The process's one copy, loaded at the first call; `Err` is why it cannot be.
    fn get() -> Result<&'static CudaApi, LibavError> {
        static API: OnceLock<Result<CudaApi, String>> = OnceLock::new();
        API.get_or_init(CudaApi::load)
            .as_ref()
            .map_err(|reason| LibavError::NvdecUnavailable {
                reason: reason.clone(),
            })
    }

    fn load() -> Result<CudaApi, String> {
        // SAFETY: loading the NVIDIA driver library runs its initialisers, which have no
        // preconditions we could break (FFmpeg dlopens it the same way).
        let library = unsafe { Library::new("libcuda.so.1") }
            .map_err(|e| format!("libcuda.so.1 not found (no NVIDIA driver installed?): {e}"))?;
        macro_rules! function {
            ($name:literal) => {
                // SAFETY: each field's type is that function's signature in cuda.h; the pointer
                // is used only while `_library` (kept in the same struct) is loaded.
                *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("libcuda.so.1 has no {}: {e}", $name))?
            };
        }
        Ok(CudaApi {
            push: function!("cuCtxPushCurrent_v2"),
            pop: function!("cuCtxPopCurrent_v2"),
            load_module: function!("cuModuleLoadData"),
            get_function: function!("cuModuleGetFunction"),
            launch: function!("cuLaunchKernel"),
            alloc_pitch: function!("cuMemAllocPitch_v2"),
            free: function!("cuMemFree_v2"),
            copy_2d_async: function!("cuMemcpy2DAsync_v2"),
            synchronize: function!("cuStreamSynchronize"),
            error_name: function!("cuGetErrorName"),
            _library: library,
        })
    }

    /// `Ok` for `CUDA_SUCCESS`, else the call and the driver's name for the code.
    fn check(&self, call: &'static str, code: CuResult) -> Result<(), LibavError> {
        if code == 0 {
            return Ok(());
        }
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: cuGetErrorName writes a pointer to a static string (or leaves it null).
        unsafe { (self.error_name)(code, &mut name) };
        let name = if name.is_null() {
            format!("error {code}")
        } else {
            // SAFETY: a NUL-terminated static string of the driver's.
            unsafe { std::ffi::CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned()
        };
        Err(LibavError::Cuda { call, error: name })
    }
}

/// The CUDA context of FFmpeg's device, current on this thread while it lives.
struct ContextGuard<'a> {
    api: &'a CudaApi,
}

impl<'a> ContextGuard<'a> {
    fn push(api: &'a CudaApi, context: CuContext) -> Result<Self, LibavError> {
        // SAFETY: `context` is a live context owned by FFmpeg's device, which the caller holds.
        api.check("cuCtxPushCurrent", unsafe { (api.push)(context) })?;
        Ok(ContextGuard { api })
    }
}

impl Drop for ContextGuard<'_> {
    fn drop(&mut self) {
        let mut popped: CuContext = std::ptr::null_mut();
        // SAFETY: pops exactly the context this guard pushed.
        unsafe { (self.api.pop)(&mut popped) };
    }
}

/// The two kernels in one context.
#[derive(Clone, Copy)]
struct Kernels {
    plane: CuFunction,
    uv_pairs: CuFunction,
}

// SAFETY: CUfunction handles are plain handles, valid from any thread while their module (never
// unloaded) and context live.
unsafe impl Send for Kernels {}

impl Kernels {
    /// The kernels of `context`, loaded (JIT-compiled from PTX by the driver) the first time.
    fn of(api: &CudaApi, context: CuContext) -> Result<Kernels, LibavError> {
        // The module is never unloaded: it lives as long as the shared CUDA device, which is
        // the process.
        static LOADED: Mutex<Vec<(usize, Kernels)>> = Mutex::new(Vec::new());
        let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, kernels)) = loaded.iter().find(|(at, _)| *at == context as usize) {
            return Ok(*kernels);
        }
        let _current = ContextGuard::push(api, context)?;
        let ptx = std::ffi::CString::new(BOX_SCALE_PTX).map_err(|_| LibavError::Cuda {
            call: "cuModuleLoadData",
            error: "the PTX has a NUL byte".into(),
        })?;
        let mut module: CuModule = std::ptr::null_mut();
        // SAFETY: a NUL-terminated PTX text; the driver copies what it needs.
        api.check("cuModuleLoadData", unsafe {
            (api.load_module)(&mut module, ptx.as_ptr().cast())
        })?;
        let function = |name: &std::ffi::CStr| {
            let mut function: CuFunction = std::ptr::null_mut();
            // SAFETY: `module` was just loaded; `name` is NUL-terminated.
            api.check("cuModuleGetFunction", unsafe {
                (api.get_function)(&mut function, module, name.as_ptr())
            })
            .map(|()| function)
        };
        let kernels = Kernels {
            plane: function(c"box_scale_plane")?,
            uv_pairs: function(c"box_scale_uv_pairs")?,
        };
        // alloc: once per CUDA context per process.
        loaded.push((context as usize, kernels));
        Ok(kernels)
    }
}

/// A decoded picture still in GPU memory: NVDEC's NV12 surface, borrowed from the decoder
/// until its next poll (`VideoDecoder::poll_picture`).
#[derive(Clone, Copy)]
pub struct GpuPicture<'a> {
    pub width: u32,
    pub height: u32,
    /// Presentation time on the 90 kHz clock.
    pub pts: i64,
    pub(crate) luma: (CuDevicePtr, usize),
    pub(crate) chroma: (CuDevicePtr, usize),
    pub(crate) context: CuContext,
    pub(crate) stream: CuStream,
    pub(crate) _frame: PhantomData<&'a ffi::AVFrame>,
}

impl fmt::Debug for GpuPicture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuPicture")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("pts", &self.pts)
            .finish_non_exhaustive()
    }
}

impl GpuPicture<'_> {
    /// The picture of a decoded frame of format `AV_PIX_FMT_CUDA`; only NV12 surfaces (8-bit
    /// 4:2:0) are taken.
    ///
    /// # Safety
    /// `frame` must be a valid decoded CUDA frame with its `hw_frames_ctx`, and stay untouched
    /// for the lifetime the caller gives the result.
    pub(crate) unsafe fn of_frame<'a>(
        frame: *const ffi::AVFrame,
        pts: i64,
    ) -> Result<GpuPicture<'a>, LibavError> {
        // SAFETY: the caller's guarantee: a CUDA frame carries its frames context, whose device
        // context is a CUDA one (AVCUDADeviceContext as its hwctx).
        unsafe {
            let frame = &*frame;
            let frames = &*((*frame.hw_frames_ctx).data as *const ffi::AVHWFramesContext);
            if frames.sw_format != ffi::AVPixelFormat::AV_PIX_FMT_NV12 {
                return Err(LibavError::UnsupportedPixelFormat(format!(
                    "NVDEC surface format {:?} (only 8-bit NV12 is supported)",
                    frames.sw_format
                )));
            }
            let cuda = &*((*frames.device_ctx).hwctx as *const ffi::AVCUDADeviceContext);
            Ok(GpuPicture {
                width: frame.width as u32,
                height: frame.height as u32,
                pts,
                luma: (frame.data[0] as CuDevicePtr, frame.linesize[0] as usize),
                chroma: (frame.data[1] as CuDevicePtr, frame.linesize[1] as usize),
                context: cuda.cuda_ctx.cast(),
                stream: cuda.stream.cast(),
                _frame: PhantomData,
            })
        }
    }
}

/// A pool of CUDA frames of one size in I420 layout (FFmpeg's `AVHWFramesContext` with
/// `sw_format` yuv420p on the shared device): what an NVENC encoder opened for CUDA input
/// takes, so a rung's pictures never leave the GPU.
pub struct CudaFrames {
    reference: *mut ffi::AVBufferRef,
    size: (u32, u32),
    /// Keeps the device (and its CUDA context) alive as long as the pool.
    _device: CudaDevice,
}

// SAFETY: an AVBufferRef to a frames context may be used and freed from any thread (FFmpeg
// ref-counts it atomically and pushes the CUDA context per call); `&self` methods only take new
// references and frames.
unsafe impl Send for CudaFrames {}

impl fmt::Debug for CudaFrames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaFrames")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl CudaFrames {
    /// A pool of `size` (even) frames on GPU `gpu`. Without the driver or the GPU it is
    /// [`LibavError::NvdecUnavailable`].
    pub fn new(gpu: u32, size: (u32, u32)) -> Result<Self, LibavError> {
        crate::scale::check_size("CUDA frames", size.0, size.1)?;
        let device = CudaDevice::shared(gpu)?;
        // SAFETY: a live device reference; av_hwframe_ctx_alloc returns a new frames context
        // reference (or null).
        let mut reference = unsafe { ffi::av_hwframe_ctx_alloc(device.as_ptr()) };
        if reference.is_null() {
            return Err(LibavError::Ffmpeg {
                call: "av_hwframe_ctx_alloc",
                source: ffmpeg_next::Error::from(ffi::AVERROR(ffi::ENOMEM)),
            });
        }
        // SAFETY: a frames context just allocated and not initialised: its fields are ours to
        // set; av_hwframe_ctx_init then allocates the pool (CUDA pools grow on demand).
        let code = unsafe {
            let frames = &mut *((*reference).data as *mut ffi::AVHWFramesContext);
            frames.format = ffi::AVPixelFormat::AV_PIX_FMT_CUDA;
            frames.sw_format = ffi::AVPixelFormat::AV_PIX_FMT_YUV420P;
            frames.width = size.0 as i32;
            frames.height = size.1 as i32;
            ffi::av_hwframe_ctx_init(reference)
        };
        if code < 0 {
            // SAFETY: our reference, freed once.
            unsafe { ffi::av_buffer_unref(&mut reference) };
            return Err(LibavError::Ffmpeg {
                call: "av_hwframe_ctx_init (CUDA yuv420p)",
                source: ffmpeg_next::Error::from(code),
            });
        }
        Ok(CudaFrames {
            reference,
            size,
            _device: device,
        })
    }

    pub fn size(&self) -> (u32, u32) {
        self.size
    }

    /// A frame of the pool, for [`CudaScaler::scale_into_gpu`] to fill.
    pub fn picture(&self) -> Result<CudaPicture, LibavError> {
        // SAFETY: a live frames context reference.
        let frames = unsafe { buffer_ref(self.reference, "av_buffer_ref (CUDA frames)")? };
        let mut picture = CudaPicture {
            frame: ffmpeg_next::frame::Video::empty(),
            frames,
            size: self.size,
        };
        picture.get_buffer()?;
        Ok(picture)
    }
}

impl Drop for CudaFrames {
    fn drop(&mut self) {
        // SAFETY: our reference, freed once; frames and encoders hold their own.
        unsafe { ffi::av_buffer_unref(&mut self.reference) };
    }
}

/// One picture in GPU memory (a frame of a [`CudaFrames`] pool), I420 layout, reused from
/// picture to picture: before each fill it gets a fresh buffer from the pool if an encoder
/// still holds the old one.
pub struct CudaPicture {
    frame: ffmpeg_next::frame::Video,
    /// The pool it takes buffers from (own reference).
    frames: *mut ffi::AVBufferRef,
    size: (u32, u32),
}

// SAFETY: as for CudaFrames; the frame is owned.
unsafe impl Send for CudaPicture {}

impl fmt::Debug for CudaPicture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaPicture")
            .field("size", &self.size)
            .field("pts", &self.frame.pts())
            .finish_non_exhaustive()
    }
}

impl CudaPicture {
    pub fn pts(&self) -> i64 {
        self.frame.pts().unwrap_or(0)
    }

    /// The frame (a CUDA frame of its pool): a sample for opening an encoder on the pool.
    pub fn frame(&self) -> &ffmpeg_next::frame::Video {
        &self.frame
    }

    /// The frame, for an encoder opened with this pool's frames context.
    pub fn frame_mut(&mut self) -> &mut ffmpeg_next::frame::Video {
        &mut self.frame
    }

    /// Copies the picture to system memory as I420 (for checks; the ladder never does).
    pub fn download(&self, out: &mut I420Picture) -> Result<(), LibavError> {
        if (out.width(), out.height()) != self.size {
            return Err(LibavError::FrameSize {
                what: "download target",
                expected: self.size,
                got: (out.width(), out.height()),
            });
        }
        let mut staging = ffmpeg_next::frame::Video::empty();
        // SAFETY: a CUDA frame with a buffer; the transfer allocates `staging` in yuv420p.
        let code =
            unsafe { ffi::av_hwframe_transfer_data(staging.as_mut_ptr(), self.frame.as_ptr(), 0) };
        if code < 0 {
            return Err(LibavError::Ffmpeg {
                call: "av_hwframe_transfer_data",
                source: ffmpeg_next::Error::from(code),
            });
        }
        for plane in 0..3 {
            let (rows, width) = if plane == 0 {
                (self.size.1 as usize, self.size.0 as usize)
            } else {
                (self.size.1 as usize / 2, self.size.0 as usize / 2)
            };
            let (target, stride) = out.plane_mut(plane);
            let source_stride = staging.stride(plane);
            let source = staging.data(plane);
            for row in 0..rows {
                // SAFETY: `target` holds `rows` rows of `stride` >= `width` bytes (an
                // I420Picture of this size, borrowed mutably).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        source[row * source_stride..][..width].as_ptr(),
                        target.add(row * stride),
                        width,
                    );
                }
            }
        }
        out.set_pts(self.pts());
        Ok(())
    }

    /// Copies `picture` (system memory, this picture's size) into GPU memory, pts included:
    /// for a picture that was decoded in software on its way to a rung that takes CUDA
    /// frames.
    pub fn upload(&mut self, picture: &I420Picture) -> Result<(), LibavError> {
        if (picture.width(), picture.height()) != self.size {
            return Err(LibavError::FrameSize {
                what: "upload source",
                expected: self.size,
                got: (picture.width(), picture.height()),
            });
        }
        self.make_writable()?;
        // SAFETY: a CUDA frame with its own buffer and a yuv420p system frame of the same size;
        // the transfer copies the planes up and reads nothing else.
        let code = unsafe {
            ffi::av_hwframe_transfer_data(self.frame.as_mut_ptr(), picture.frame_ptr(), 0)
        };
        if code < 0 {
            return Err(LibavError::Ffmpeg {
                call: "av_hwframe_transfer_data (upload)",
                source: ffmpeg_next::Error::from(code),
            });
        }
        self.frame.set_pts(Some(picture.pts()));
        Ok(())
    }

    /// Makes sure the frame has a buffer nobody else references.
    fn make_writable(&mut self) -> Result<(), LibavError> {
        // SAFETY: an owned frame; av_frame_is_writable only reads its buffer references.
        if unsafe { ffi::av_frame_is_writable(self.frame.as_mut_ptr()) } != 0 {
            return Ok(());
        }
        self.get_buffer()
    }

    fn get_buffer(&mut self) -> Result<(), LibavError> {
        // SAFETY: an owned frame and a live frames context reference; unref leaves the frame
        // blank, then the pool gives it a buffer of its size and format.
        let code = unsafe {
            ffi::av_frame_unref(self.frame.as_mut_ptr());
            ffi::av_hwframe_get_buffer(self.frames, self.frame.as_mut_ptr(), 0)
        };
        if code < 0 {
            return Err(LibavError::Ffmpeg {
                call: "av_hwframe_get_buffer",
                source: ffmpeg_next::Error::from(code),
            });
        }
        Ok(())
    }
}

impl Drop for CudaPicture {
    fn drop(&mut self) {
        // SAFETY: our own reference to the pool, freed once (the frame frees its buffer).
        unsafe { ffi::av_buffer_unref(&mut self.frames) };
    }
}

/// One plane of the scaler's output in GPU memory.
struct DevicePlane {
    at: CuDevicePtr,
    pitch: usize,
    width: usize,
    height: usize,
}

/// Scales NVDEC pictures of one size to I420 of another on the GPU. See the module docs.
pub struct CudaScaler {
    api: &'static CudaApi,
    /// Keeps FFmpeg's CUDA device (and with it the context) alive.
    _device: CudaDevice,
    context: CuContext,
    kernels: Kernels,
    source: (u32, u32),
    target: (u32, u32),
    planes: [DevicePlane; 3],
}

// SAFETY: the scaler's handles (context, device memory, kernels) may be used from any thread
// with the context pushed, which every call does; `&mut self` keeps calls apart.
unsafe impl Send for CudaScaler {}

impl fmt::Debug for CudaScaler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaScaler")
            .field("source", &self.source)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl CudaScaler {
    /// A scaler on GPU `gpu` (the device NVDEC decodes on) from `source` to `target` (both
    /// even). Without the driver or the GPU it is [`LibavError::NvdecUnavailable`].
    pub fn new(gpu: u32, source: (u32, u32), target: (u32, u32)) -> Result<Self, LibavError> {
        crate::scale::check_size("GPU scaler source", source.0, source.1)?;
        crate::scale::check_size("GPU scaler target", target.0, target.1)?;
        let api = CudaApi::get()?;
        let device = CudaDevice::shared(gpu)?;
        let context = device.cuda_context();
        let kernels = Kernels::of(api, context)?;
        let _current = ContextGuard::push(api, context)?;
        let (width, height) = (target.0 as usize, target.1 as usize);
        let mut planes = Vec::with_capacity(3);
        for (plane_width, plane_height) in [
            (width, height),
            (width / 2, height / 2),
            (width / 2, height / 2),
        ] {
            let (mut at, mut pitch) = (0, 0);
            // SAFETY: out-pointers are valid; the context is current.
            let allocated = api.check("cuMemAllocPitch", unsafe {
                (api.alloc_pitch)(&mut at, &mut pitch, plane_width, plane_height, 4)
            });
            if let Err(error) = allocated {
                for plane in &planes {
                    free_plane(api, plane);
                }
                return Err(error);
            }
            planes.push(DevicePlane {
                at,
                pitch,
                width: plane_width,
                height: plane_height,
            });
        }
        let planes: [DevicePlane; 3] = planes
            .try_into()
            .unwrap_or_else(|_| unreachable!("three planes were pushed"));
        let scaler = CudaScaler {
            api,
            _device: device,
            context,
            kernels,
            source,
            target,
            planes,
        };
        Ok(scaler)
    }

    /// Scales `input` into `output`, a CUDA frame of the scaler's target size: the picture
    /// stays in GPU memory, for NVENC. Returns when the kernels have finished.
    pub fn scale_into_gpu(
        &mut self,
        input: &GpuPicture<'_>,
        output: &mut CudaPicture,
    ) -> Result<(), LibavError> {
        self.check(input, output.size)?;
        output.make_writable()?;
        let api = self.api;
        let _current = ContextGuard::push(api, self.context)?;
        // SAFETY: a CUDA frame with its own buffer (made writable above), allocated by its
        // pool for the target size in yuv420p: three planes at these line sizes.
        let planes = unsafe {
            let frame = &*output.frame.as_ptr();
            std::array::from_fn(|plane| {
                (
                    frame.data[plane] as CuDevicePtr,
                    usize::try_from(frame.linesize[plane]).unwrap_or(0),
                )
            })
        };
        // SAFETY: as above; run_kernels checks that U and V share a pitch.
        unsafe { self.run_kernels(input, planes)? };
        // NVENC reads the frame on its own engine: the kernels must be done first.
        // SAFETY: the stream of FFmpeg's device, context pushed.
        api.check("cuStreamSynchronize", unsafe {
            (api.synchronize)(input.stream)
        })?;
        output.frame.set_pts(Some(input.pts));
        Ok(())
    }

    /// The input is of the source size and on this scaler's device, the output of the target
    /// size.
    fn check(&self, input: &GpuPicture<'_>, output: (u32, u32)) -> Result<(), LibavError> {
        if (input.width, input.height) != self.source {
            return Err(LibavError::FrameSize {
                what: "GPU scaler input",
                expected: self.source,
                got: (input.width, input.height),
            });
        }
        if output != self.target {
            return Err(LibavError::FrameSize {
                what: "GPU scaler output",
                expected: self.target,
                got: output,
            });
        }
        if input.context != self.context {
            return Err(LibavError::Cuda {
                call: "scale",
                error: "the picture was decoded on another CUDA device".into(),
            });
        }
        Ok(())
    }

    /// Runs the luma and chroma kernels from `input` into the Y, U and V planes `output`
    /// (device address and pitch each) on the decoder's stream; does not wait for them.
    ///
    /// # Safety
    /// Each output plane must be device memory of the target plane size at its pitch, not
    /// used by anything else until the stream has run the kernels; the context is current.
    unsafe fn run_kernels(
        &self,
        input: &GpuPicture<'_>,
        [y, u, v]: [(CuDevicePtr, usize); 3],
    ) -> Result<(), LibavError> {
        if u.1 != v.1 {
            return Err(LibavError::Cuda {
                call: "scale",
                error: format!(
                    "U and V planes have different pitches ({} and {})",
                    u.1, v.1
                ),
            });
        }
        let api = self.api;
        let int = |value: usize| value as c_int;
        let (width, height) = (self.target.0 as usize, self.target.1 as usize);
        let (source_width, source_height) =
            (int(self.source.0 as usize), int(self.source.1 as usize));
        // Luma: the whole source plane into Y.
        {
            let (mut src, mut src_pitch, mut src_w, mut src_h) =
                (input.luma.0, int(input.luma.1), source_width, source_height);
            let (mut dst, mut dst_pitch, mut dst_w, mut dst_h) =
                (y.0, int(y.1), int(width), int(height));
            let mut arguments: [*mut c_void; 8] = [
                (&raw mut src).cast(),
                (&raw mut src_pitch).cast(),
                (&raw mut src_w).cast(),
                (&raw mut src_h).cast(),
                (&raw mut dst).cast(),
                (&raw mut dst_pitch).cast(),
                (&raw mut dst_w).cast(),
                (&raw mut dst_h).cast(),
            ];
            // SAFETY: the arguments match box_scale_plane's parameters in order and type; the
            // source plane is the decoder's live surface (the borrow in GpuPicture), the
            // destination the caller's (its guarantee).
            unsafe {
                launch(
                    api,
                    self.kernels.plane,
                    (width, height),
                    input.stream,
                    &mut arguments,
                )?
            };
        }
        // Chroma: NV12's U/V pairs into U and V, which share a pitch.
        {
            let (mut src, mut src_pitch, mut src_w, mut src_h) = (
                input.chroma.0,
                int(input.chroma.1),
                source_width / 2,
                source_height / 2,
            );
            let (mut dst_u, mut dst_v, mut dst_pitch, mut dst_w, mut dst_h) =
                (u.0, v.0, int(u.1), int(width / 2), int(height / 2));
            let mut arguments: [*mut c_void; 9] = [
                (&raw mut src).cast(),
                (&raw mut src_pitch).cast(),
                (&raw mut src_w).cast(),
                (&raw mut src_h).cast(),
                (&raw mut dst_u).cast(),
                (&raw mut dst_v).cast(),
                (&raw mut dst_pitch).cast(),
                (&raw mut dst_w).cast(),
                (&raw mut dst_h).cast(),
            ];
            // SAFETY: as for luma, with box_scale_uv_pairs's parameters.
            unsafe {
                launch(
                    api,
                    self.kernels.uv_pairs,
                    (width / 2, height / 2),
                    input.stream,
                    &mut arguments,
                )?
            };
        }
        Ok(())
    }

    pub fn source_size(&self) -> (u32, u32) {
        self.source
    }

    pub fn target_size(&self) -> (u32, u32) {
        self.target
    }

    /// Scales `input` into `output` (of the scaler's target size) and carries the pts over.
    /// Returns when the planes are in `output`.
    pub fn scale_into(
        &mut self,
        input: &GpuPicture<'_>,
        output: &mut I420Picture,
    ) -> Result<(), LibavError> {
        self.check(input, (output.width(), output.height()))?;
        let api = self.api;
        let _current = ContextGuard::push(api, self.context)?;
        let [y, u, v] = &self.planes;
        let planes = [(y.at, y.pitch), (u.at, u.pitch), (v.at, v.pitch)];
        // SAFETY: our own planes, allocated for the target size at these pitches.
        unsafe { self.run_kernels(input, planes)? };
        for (index, plane) in self.planes.iter().enumerate() {
            let (host, stride) = output.plane_mut(index);
            let copy = Memcpy2d {
                src_x_in_bytes: 0,
                src_y: 0,
                src_memory_type: MEMORY_DEVICE,
                src_host: std::ptr::null(),
                src_device: plane.at,
                src_array: std::ptr::null_mut(),
                src_pitch: plane.pitch,
                dst_x_in_bytes: 0,
                dst_y: 0,
                dst_memory_type: MEMORY_HOST,
                dst_host: host.cast(),
                dst_device: 0,
                dst_array: std::ptr::null_mut(),
                dst_pitch: stride,
                width_in_bytes: plane.width,
                height: plane.height,
            };
            // SAFETY: the host plane holds `height` rows of `stride` >= `width` bytes (an
            // I420Picture of the target size, borrowed mutably until the synchronize below);
            // the device plane is ours.
            api.check("cuMemcpy2DAsync", unsafe {
                (api.copy_2d_async)(&copy, input.stream)
            })?;
        }
        // SAFETY: the stream of FFmpeg's device, current context pushed.
        api.check("cuStreamSynchronize", unsafe {
            (api.synchronize)(input.stream)
        })?;
        output.set_pts(input.pts);
        Ok(())
    }
}

/// Launches `kernel` with one thread per pixel of a `width` x `height` output on `stream`.
///
/// # Safety
/// `arguments` must point to values of the kernel's parameter types, in order, and the memory
/// they name must be valid for the kernel's reads and writes; the context is current.
unsafe fn launch(
    api: &CudaApi,
    kernel: CuFunction,
    (width, height): (usize, usize),
    stream: CuStream,
    arguments: &mut [*mut c_void],
) -> Result<(), LibavError> {
    let grid_x = (width as c_uint).div_ceil(BLOCK);
    let grid_y = (height as c_uint).div_ceil(BLOCK);
    // SAFETY: the caller's guarantee; no shared memory, no extra options.
    api.check("cuLaunchKernel", unsafe {
        (api.launch)(
            kernel,
            grid_x,
            grid_y,
            1,
            BLOCK,
            BLOCK,
            1,
            0,
            stream,
            arguments.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    })
}

/// Fault injection for the GPU checks: makes the CUDA context every decoder, scaler and frames
/// pool on GPU `gpu` shares fail, the way a real GPU fault does (an Xid error): a kernel
/// stores to address 0, the launch fails with `CUDA_ERROR_ILLEGAL_ADDRESS`, and that error is
/// sticky, so every later call in the context fails too. Nothing on that GPU works in this
/// process afterwards. `Ok` is the error the faulting kernel got.
#[doc(hidden)]
pub fn poison_cuda_context_for_fault_tests(gpu: u32) -> Result<String, String> {
    const FAULT_PTX: &str = ".version 6.0\n.target sm_52\n.address_size 64\n\
        .visible .entry corecast_fault()\n{\n.reg .b64 %rd<2>;\n.reg .b32 %r<2>;\n\
        mov.u64 %rd1, 0;\nmov.u32 %r1, 1;\nst.global.u32 [%rd1], %r1;\nret;\n}\n\0";
    let api = CudaApi::get().map_err(|e| e.to_string())?;
    let device = CudaDevice::shared(gpu).map_err(|e| e.to_string())?;
    let _current = ContextGuard::push(api, device.cuda_context()).map_err(|e| e.to_string())?;
    let mut module: CuModule = std::ptr::null_mut();
    // SAFETY: a NUL-terminated PTX text; the context is current.
    api.check("cuModuleLoadData (fault)", unsafe {
        (api.load_module)(&mut module, FAULT_PTX.as_ptr().cast())
    })
    .map_err(|e| e.to_string())?;
    let mut kernel: CuFunction = std::ptr::null_mut();
    // SAFETY: the module was just loaded; the name is NUL-terminated.
    api.check("cuModuleGetFunction (fault)", unsafe {
        (api.get_function)(&mut kernel, module, c"corecast_fault".as_ptr())
    })
    .map_err(|e| e.to_string())?;
    // SAFETY: a kernel without parameters; its fault is the point, and the driver contains it.
    let launched = api.check("cuLaunchKernel (fault)", unsafe {
        (api.launch)(
            kernel,
            1,
            1,
            1,
            1,
            1,
            1,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    });
    // SAFETY: the legacy default stream of the current context.
    let finished = api.check("cuStreamSynchronize (fault)", unsafe {
        (api.synchronize)(std::ptr::null_mut())
    });
    match launched.and(finished) {
        Err(error) => Ok(error.to_string()),
        Ok(()) => Err("the faulting kernel ran without an error".into()),
    }
}

/// Whether GPU scaling can be set up on GPU `gpu` here: the driver loads, the device opens,
/// the driver JIT-compiles the kernels and a small scaler allocates. `Err` is the reason.
pub fn gpu_scale_check(gpu: u32) -> Result<(), String> {
    CudaScaler::new(gpu, (64, 64), (32, 32))
        .map(drop)
        .map_err(|e| match e {
            LibavError::NvdecUnavailable { reason } => reason,
            other => other.to_string(),
        })
}

fn free_plane(api: &CudaApi, plane: &DevicePlane) {
    // SAFETY: memory from cuMemAllocPitch, freed once, with its context current (callers).
    unsafe { (api.free)(plane.at) };
}

impl Drop for CudaScaler {
    fn drop(&mut self) {
        if let Ok(_current) = ContextGuard::push(self.api, self.context) {
            for plane in &self.planes {
                free_plane(self.api, plane);
            }
        }
    }
}

/// What the GPU kernels compute, on the CPU: plane `source` (`width` x `height` at `stride`)
/// box-averaged to `target` (`target_width` x `target_height` at `target_stride`). `step` is 1
/// for a plane of bytes and 2 for one component of interleaved U/V pairs (then `source` starts
/// at that component).
#[allow(clippy::too_many_arguments)]
pub fn box_scale_reference(
    source: &[u8],
    (width, height, stride): (usize, usize, usize),
    step: usize,
    target: &mut [u8],
    (target_width, target_height, target_stride): (usize, usize, usize),
) {
    let span = |i: usize, from: usize, to: usize| {
        let first = i * from / to;
        let end = (i + 1) * from / to;
        (first, end.max(first + 1))
    };
    for y in 0..target_height {
        let (y0, y1) = span(y, height, target_height);
        for x in 0..target_width {
            let (x0, x1) = span(x, width, target_width);
            let mut sum = 0u32;
            for row in y0..y1 {
                for column in x0..x1 {
                    sum += u32::from(source[row * stride + column * step]);
                }
            }
            let count = ((x1 - x0) * (y1 - y0)) as u32;
            target[y * target_stride + x] = ((sum + count / 2) / count) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_averages_boxes_and_rounds() {
        // 4x2 -> 2x1: each output is the mean of a 2x2 box.
        let source = [0, 2, 10, 11, 1, 3, 20, 21];
        let mut target = [0u8; 2];
        box_scale_reference(&source, (4, 2, 4), 1, &mut target, (2, 1, 2));
        assert_eq!(target, [2, 16]); // (0+2+1+3)/4 = 1.5 -> 2; (10+11+20+21)/4 = 15.5 -> 16
        // 3 -> 2 columns: boxes [0,1) and [1,3).
        let source = [9, 4, 7];
        let mut target = [0u8; 2];
        box_scale_reference(&source, (3, 1, 3), 1, &mut target, (2, 1, 2));
        assert_eq!(target, [9, 6]); // 11 / 2 = 5.5 -> 6
        // Same size is a copy; growing repeats the nearest pixel.
        let mut same = [0u8; 3];
        box_scale_reference(&source, (3, 1, 3), 1, &mut same, (3, 1, 3));
        assert_eq!(same, source);
        let mut grown = [0u8; 6];
        box_scale_reference(&source, (3, 1, 3), 1, &mut grown, (6, 1, 6));
        assert_eq!(grown, [9, 9, 4, 4, 7, 7]);
    }

    #[test]
    fn the_reference_reads_one_component_of_uv_pairs() {
        // Two rows of two U/V pairs, stride 5 (one padding byte).
        let pairs = [1, 100, 3, 102, 0, 5, 104, 7, 106, 0];
        let (mut u, mut v) = ([0u8; 1], [0u8; 1]);
        box_scale_reference(&pairs, (2, 2, 5), 2, &mut u, (1, 1, 1));
        box_scale_reference(&pairs[1..], (2, 2, 5), 2, &mut v, (1, 1, 1));
        assert_eq!((u[0], v[0]), (4, 103));
    }

    #[test]
    fn the_ptx_holds_both_kernels_for_old_drivers() {
        assert!(BOX_SCALE_PTX.contains(".entry box_scale_plane("));
        assert!(BOX_SCALE_PTX.contains(".entry box_scale_uv_pairs("));
        assert!(BOX_SCALE_PTX.contains("\n.version 6.0\n"));
        assert!(BOX_SCALE_PTX.contains("\n.target sm_52\n"));
    }

    #[test]
    fn without_the_driver_the_scaler_is_unavailable_with_the_reason() {
        // SAFETY: loading the real driver library, if present, has no preconditions.
        if unsafe { Library::new("libcuda.so.1") }.is_ok() {
            eprintln!("skipped: libcuda.so.1 is installed here");
            return;
        }
        let error = CudaScaler::new(0, (640, 360), (320, 180)).unwrap_err();
        assert!(
            error.to_string().contains("libcuda.so.1 not found"),
            "{error}"
        );
        assert!(CudaScaler::new(0, (641, 360), (320, 180)).is_err());
        let error = CudaFrames::new(0, (320, 180)).unwrap_err();
        assert!(
            error.to_string().contains("libcuda.so.1 not found"),
            "{error}"
        );
    }
}
