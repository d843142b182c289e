//! Catches what FFmpeg logs while an NVENC encoder opens. libavcodec's nvenc reports why it
//! failed ("No capable devices found", "OpenEncodeSessionEx failed: unsupported device (2)")
//! only in its log; `avcodec_open2` returns a bare `AVERROR_EXTERNAL`. To turn that into a
//! reason, our callback is installed for the duration of the open: it prints every line as
//! FFmpeg's default callback would (same level filter, to stderr) and also keeps the lines
//! logged on this thread. Opens are serialised by a lock so two of them cannot swap callbacks
//! under each other; when done, FFmpeg's default callback is put back (corecast installs no
//! other one).
//!
//! The callback receives a C `va_list`, which it hands straight to `av_log_format_line2`; its
//! Rust type depends on the target's ABI, so capture exists on x86-64 Linux only. Elsewhere
//! [`capture`] returns no lines and failures are classified by their error code alone.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use std::cell::RefCell;
    use std::ffi::{CStr, c_char, c_int, c_void};
    use std::io::Write;
    use std::sync::{Mutex, PoisonError};

    use ffmpeg_next::ffi;

    /// Lines at this level or more severe are kept (AV_LOG_WARNING).
    const KEEP_LEVEL: c_int = 24;

    thread_local! {
        static LINES: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
    }

    static OPEN_LOCK: Mutex<()> = Mutex::new(());

    /// Runs `open` with FFmpeg's log captured; returns its result and the lines this thread
    /// logged meanwhile, at warning level or above.
    pub fn capture<T>(open: impl FnOnce() -> T) -> (T, Vec<String>) {
        let _serial = OPEN_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        LINES.with(|lines| *lines.borrow_mut() = Some(Vec::new()));
        // SAFETY: `log_line` has the callback signature FFmpeg declares and never unwinds.
        unsafe { ffi::av_log_set_callback(Some(log_line)) };
        let result = open();
        // SAFETY: the default callback is FFmpeg's own, valid for the life of the process.
        unsafe { ffi::av_log_set_callback(Some(ffi::av_log_default_callback)) };
        let lines = LINES.with(|lines| lines.borrow_mut().take().unwrap_or_default());
        (result, lines)
    }

    /// FFmpeg's log callback. It must not unwind into C, so nothing here can panic: thread
    /// locals and the RefCell are reached with their non-panicking forms.
    unsafe extern "C" fn log_line(
        avcl: *mut c_void,
        level: c_int,
        fmt: *const c_char,
        vl: *mut ffi::__va_list_tag,
    ) {
        // SAFETY: FFmpeg's level getter has no preconditions.
        let shown = level <= unsafe { ffi::av_log_get_level() };
        if !shown && level > KEEP_LEVEL {
            return;
        }
        let mut line = [0 as c_char; 1024];
        let mut print_prefix: c_int = 1;
        // SAFETY: `avcl`, `fmt` and `vl` come from av_log and are passed on unchanged, once;
        // the buffer's size is given, and av_log_format_line2 always NUL-terminates it.
        unsafe {
            ffi::av_log_format_line2(
                avcl,
                level,
                fmt,
                vl,
                line.as_mut_ptr(),
                line.len() as c_int,
                &mut print_prefix,
            )
        };
        // SAFETY: NUL-terminated by av_log_format_line2 (the buffer starts zeroed as well).
        let text = unsafe { CStr::from_ptr(line.as_ptr()) }.to_string_lossy();
        if shown {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
        if level <= KEEP_LEVEL {
            let _ = LINES.try_with(|lines| {
                if let Ok(mut lines) = lines.try_borrow_mut()
                    && let Some(lines) = lines.as_mut()
                {
                    let trimmed = text.trim();
                    if !trimmed.is_empty() {
                        lines.push(trimmed.to_owned());
                    }
                }
            });
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    pub fn capture<T>(open: impl FnOnce() -> T) -> (T, Vec<String>) {
        (open(), Vec::new())
    }
}

pub use imp::capture;
