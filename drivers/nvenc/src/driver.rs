//! Is there an NVIDIA driver and a GPU that can encode? Checked before libavcodec's
//! `h264_nvenc` is opened, so that "not here" comes back as a typed reason an operator can act
//! on instead of one generic FFmpeg error.
//!
//! The two libraries FFmpeg's NVENC encoders load at run time (nv-codec-headers'
//! `dynlink_loader.h`) are loaded here the same way, with `dlopen` through `libloading`:
//! `libcuda.so.1` (the CUDA driver API) and `libnvidia-encode.so.1` (the NVENC API). Then the
//! CUDA driver is asked for its devices (`cuInit`, `cuDeviceGetCount`, `cuDeviceGetName`,
//! `cuDeviceGetAttribute`), and the NVENC library for the newest API version it implements
//! (`NvEncodeAPIGetMaxSupportedVersion`). Whether a GPU has an NVENC engine at all is only known
//! when an encode session is opened, which libavcodec does; see `crate::open_failure_reason`.

use std::ffi::{CStr, c_char, c_int, c_uint};
use std::sync::OnceLock;

use libloading::Library;

use crate::NvencError;

/// `CUDA_ERROR_NO_DEVICE` (cuda.h): the driver is installed but sees no GPU.
const CUDA_ERROR_NO_DEVICE: c_int = 100;
/// `CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR` / `_MINOR` (cuda.h).
const ATTRIBUTE_CC_MAJOR: c_int = 75;
const ATTRIBUTE_CC_MINOR: c_int = 76;
/// FFmpeg skips GPUs below compute capability 3.0 (`NVENC_CAP` in libavcodec/nvenc.c).
const NVENC_MIN_CC: (i32, i32) = (3, 0);
/// The NVENC API version Debian's FFmpeg 5.1 was built against (nv-codec-headers 11.1.5.2, the
/// `libffmpeg-nvenc-dev` package): libavcodec refuses a driver that implements less.
pub const FFMPEG_NVENC_API: (u32, u32) = (11, 1);

/// The shared objects to load. `Default` is what the NVIDIA driver installs and FFmpeg loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverLibraries {
    pub cuda: String,
    pub encode: String,
}

impl Default for DriverLibraries {
    fn default() -> Self {
        DriverLibraries {
            cuda: "libcuda.so.1".to_owned(),
            encode: "libnvidia-encode.so.1".to_owned(),
        }
    }
}

/// What the driver says about the GPU an encoder will use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    /// CUDA device ordinal, as in FFmpeg's `gpu` option.
    pub index: u32,
    pub name: String,
    pub compute_capability: (i32, i32),
    /// CUDA devices the driver sees.
    pub device_count: u32,
    /// `cuDriverGetVersion`: 12040 is CUDA 12.4.
    pub cuda_driver_version: i32,
    /// The newest NVENC API the driver implements (major, minor).
    pub nvenc_api: (u32, u32),
}

/// The two driver libraries, loaded, with the entry points we call.
struct Driver {
    // Field order is drop order: the function pointers below point into these libraries.
    cuda: Library,
    encode: Library,
}

type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
type CuIntOut = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
type NvEncMaxVersion = unsafe extern "C" fn(*mut u32) -> c_int;

fn unavailable(reason: String) -> NvencError {
    NvencError::Unavailable { reason }
}

impl Driver {
    fn load(libraries: &DriverLibraries) -> Result<Driver, NvencError> {
        // SAFETY: loading the CUDA driver library runs its initialisers, which have no
        // preconditions we could break; the NVIDIA driver is made to be dlopened this way
        // (FFmpeg, PyTorch and the CUDA runtime all do).
        let cuda = unsafe { Library::new(&libraries.cuda) }.map_err(|e| {
            unavailable(format!(
                "{} not found (no NVIDIA driver installed?): {e}",
                libraries.cuda
            ))
        })?;
        // SAFETY: as above, for the NVENC library of the same driver.
        let encode = unsafe { Library::new(&libraries.encode) }.map_err(|e| {
            unavailable(format!(
                "{} not found (the NVIDIA driver is installed without its video encode \
                 library, e.g. Debian's libnvidia-encode1 is missing): {e}",
                libraries.encode
            ))
        })?;
        Ok(Driver { cuda, encode })
    }

    /// A function of `library` by name, or the reason it is missing.
    ///
    /// # Safety
    /// `T` must be the function's true C signature.
    unsafe fn function<T: Copy>(
        library: &Library,
        file: &str,
        name: &str,
    ) -> Result<T, NvencError> {
        let mut symbol = name.as_bytes().to_vec();
        symbol.push(0);
        // SAFETY: the caller guarantees `T` is the symbol's signature; the pointer is used only
        // while `library` is loaded (the `Driver` owns both).
        unsafe { library.get::<T>(&symbol) }
            .map(|f| *f)
            .map_err(|e| unavailable(format!("{file} has no {name}: {e}")))
    }

    fn check(&self, libraries: &DriverLibraries, gpu: u32) -> Result<GpuInfo, NvencError> {
        let cuda = &libraries.cuda;
        // SAFETY: each type is that function's signature in the CUDA driver API (cuda.h).
        let (cu_init, cu_count, cu_get, cu_name, cu_attribute, cu_version) = unsafe {
            (
                Self::function::<CuInit>(&self.cuda, cuda, "cuInit")?,
                Self::function::<CuIntOut>(&self.cuda, cuda, "cuDeviceGetCount")?,
                Self::function::<CuDeviceGet>(&self.cuda, cuda, "cuDeviceGet")?,
                Self::function::<CuDeviceGetName>(&self.cuda, cuda, "cuDeviceGetName")?,
                Self::function::<CuDeviceGetAttribute>(&self.cuda, cuda, "cuDeviceGetAttribute")?,
                Self::function::<CuIntOut>(&self.cuda, cuda, "cuDriverGetVersion")?,
            )
        };
        // SAFETY: the type is `NvEncodeAPIGetMaxSupportedVersion` from nvEncodeAPI.h.
        let nvenc_max = unsafe {
            Self::function::<NvEncMaxVersion>(
                &self.encode,
                &libraries.encode,
                "NvEncodeAPIGetMaxSupportedVersion",
            )?
        };

        let mut cuda_driver_version: c_int = 0;
        // SAFETY: cuDriverGetVersion writes one int through a valid pointer; it may be called
        // before cuInit.
        unsafe { cu_version(&mut cuda_driver_version) };
        // SAFETY: cuInit takes flags (must be 0) and may be called any number of times.
        let code = unsafe { cu_init(0) };
        if code == CUDA_ERROR_NO_DEVICE {
            return Err(unavailable(
                "no CUDA device (the driver sees no GPU)".into(),
            ));
        }
        if code != 0 {
            return Err(unavailable(format!(
                "cuInit failed with CUDA error {code} (driver {})",
                driver_version_text(cuda_driver_version)
            )));
        }
        let mut count: c_int = 0;
        // SAFETY: cuInit succeeded; one int is written through a valid pointer.
        let code = unsafe { cu_count(&mut count) };
        if code != 0 || count <= 0 {
            return Err(unavailable(
                "no CUDA device (the driver sees no GPU)".into(),
            ));
        }
        let ordinal = c_int::try_from(gpu).unwrap_or(c_int::MAX);
        if ordinal >= count {
            return Err(unavailable(format!(
                "GPU {gpu} does not exist: the driver sees {count} CUDA device(s)"
            )));
        }
        let mut device: c_int = 0;
        // SAFETY: the ordinal is below the device count; one int is written.
        let code = unsafe { cu_get(&mut device, ordinal) };
        if code != 0 {
            return Err(unavailable(format!(
                "cuDeviceGet({gpu}) failed with CUDA error {code}"
            )));
        }
        let mut name = [0 as c_char; 128];
        // SAFETY: the buffer holds `len` bytes and the driver NUL-terminates within them.
        let code = unsafe { cu_name(name.as_mut_ptr(), name.len() as c_int, device) };
        let name = if code == 0 {
            // SAFETY: on success the buffer holds a NUL-terminated string (zeroed beforehand,
            // and the last byte is never written past `len`).
            unsafe { CStr::from_ptr(name.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        } else {
            "unknown GPU".to_owned()
        };
        let (mut major, mut minor): (c_int, c_int) = (0, 0);
        // SAFETY: valid device handle and out-pointers; failures leave 0.
        unsafe {
            cu_attribute(&mut major, ATTRIBUTE_CC_MAJOR, device);
            cu_attribute(&mut minor, ATTRIBUTE_CC_MINOR, device);
        }
        let mut api: u32 = 0;
        // SAFETY: writes one u32 through a valid pointer.
        let code = unsafe { nvenc_max(&mut api) };
        if code != 0 {
            return Err(unavailable(format!(
                "NvEncodeAPIGetMaxSupportedVersion failed with NVENC status {code}"
            )));
        }
        let info = GpuInfo {
            index: gpu,
            name,
            compute_capability: (major, minor),
            device_count: count as u32,
            cuda_driver_version,
            nvenc_api: (api >> 4, api & 0xf),
        };
        if info.nvenc_api < FFMPEG_NVENC_API {
            return Err(unavailable(format!(
                "NVIDIA driver too old: it implements NVENC API {}.{}, FFmpeg's encoder needs \
                 {}.{} (driver 470.57.02 or newer)",
                info.nvenc_api.0, info.nvenc_api.1, FFMPEG_NVENC_API.0, FFMPEG_NVENC_API.1
            )));
        }
        if info.compute_capability < NVENC_MIN_CC {
            return Err(unavailable(format!(
                "GPU {gpu} ({}) has no NVENC engine (compute capability {}.{})",
                info.name, major, minor
            )));
        }
        Ok(info)
    }
}

fn driver_version_text(version: c_int) -> String {
    if version <= 0 {
        return "version unknown".into();
    }
    format!("CUDA {}.{}", version / 1000, version % 1000 / 10)
}

/// Checks the installed NVIDIA driver and GPU `gpu`. The libraries are loaded once per process
/// and stay loaded (unloading libcuda after `cuInit` is not safe); a failure to load them is
/// remembered too, so a driver installed later needs a restart.
pub fn check_gpu(gpu: u32) -> Result<GpuInfo, NvencError> {
    static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();
    let libraries = DriverLibraries::default();
    let driver = DRIVER.get_or_init(|| {
        Driver::load(&libraries).map_err(|e| match e {
            NvencError::Unavailable { reason } => reason,
            other => other.to_string(),
        })
    });
    match driver {
        Ok(driver) => driver.check(&libraries, gpu),
        Err(reason) => Err(unavailable(reason.clone())),
    }
}

/// [`check_gpu`] with other library files (tests use stand-ins), loaded for this call only.
pub fn check_gpu_with(libraries: &DriverLibraries, gpu: u32) -> Result<GpuInfo, NvencError> {
    Driver::load(libraries)?.check(libraries, gpu)
}

impl GpuInfo {
    /// One line for logs and `corecast probe`: `GPU 0: NVIDIA L4 (SM 8.9, CUDA 12.4, NVENC API 12.2)`.
    pub fn describe(&self) -> String {
        format!(
            "GPU {}: {} (SM {}.{}, {}, NVENC API {}.{})",
            self.index,
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            driver_version_text(self.cuda_driver_version),
            self.nvenc_api.0,
            self.nvenc_api.1
        )
    }
}
