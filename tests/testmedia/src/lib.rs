//! Real test media for corecast's tests: H.264 (and AAC) made by the ffmpeg command line and
//! read back with ffprobe, turned into the `media::AccessUnit`s and codec configs ingest would
//! hand the rest of the appliance. One place for what the per-crate tests (libav, transcode,
//! package), the transcode examples and the end-to-end tests (corecast-e2e) all need.
//!
//! Tests only: it runs external programs, panics on any failure and never goes into the
//! appliance. It needs `ffmpeg` and `ffprobe` on PATH (`scripts/install-deps.sh --test`); a
//! missing tool fails the test with that instruction instead of skipping it (docs/testing.md).
//!
//! ffprobe is the reference reader here on purpose: the units come from its packet list
//! (times, flags, file positions) and the configs from its dump of the streams' extradata
//! (the `avcC` record, ISO/IEC 14496-15 §5.3.3.1, and the AudioSpecificConfig, ISO/IEC
//! 14496-3 §1.6.2.1), not from our own demuxers, so a test never checks our code against itself.

pub mod encoded;
mod source;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub use source::{SourceMedia, TestSource, TrackMedia};

/// What to run when ffmpeg, ffprobe or another test tool is missing.
pub const INSTALL_HINT: &str = "run scripts/install-deps.sh --test (make test does)";

/// Fails the test with the install hint when `name` (ffmpeg, ffprobe, gst-launch-1.0, …) does
/// not run.
pub fn require_tool(name: &str) {
    let found = Command::new(name)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(found, "`{name}` not found: {INSTALL_HINT}");
}

/// Runs `ffprobe -v error -of json <args> <input>` and returns its JSON; fails the test with
/// ffprobe's error output when it does not succeed. `input` is a path or a URL.
pub fn ffprobe_json(args: &[&str], input: impl AsRef<OsStr>) -> Value {
    require_tool("ffprobe");
    let input = input.as_ref();
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(input)
        .output()
        .expect("run ffprobe");
    assert!(
        output.status.success(),
        "ffprobe {args:?} {}: {}",
        input.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe writes JSON")
}

/// An integer from ffprobe's JSON, which writes some numbers as numbers and some (`pos`,
/// `size`, `nb_read_frames`) as strings.
pub fn ffprobe_int(value: &Value) -> i64 {
    match value {
        Value::Number(number) => number
            .as_i64()
            .unwrap_or_else(|| panic!("not an integer: {number}")),
        Value::String(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("not an integer: {text:?}")),
        other => panic!("not an integer: {other}"),
    }
}

/// The bytes of an ffprobe hex dump (`-show_data`: `00000000: 0164 001e ffe1 ...  .d....`),
/// lines of an offset, up to 8 groups of 4 hex digits, then the same bytes as text.
pub fn hexdump_bytes(dump: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in dump.lines() {
        // The hex groups sit between the 10-character offset and the text column at 49.
        let Some(hex) = line.get(10..49).or_else(|| line.get(10..)) else {
            continue;
        };
        for group in hex.split_whitespace() {
            for pair in group.as_bytes().chunks(2) {
                let text = std::str::from_utf8(pair).expect("hex dump is ASCII");
                out.push(u8::from_str_radix(text, 16).expect("hex byte"));
            }
        }
    }
    out
}

/// Decodes `input` (path or URL) fully with ffmpeg; returns what ffmpeg reported at level
/// error, plus its exit status when it failed. Empty means a clean decode.
pub fn ffmpeg_decode_errors(input: impl AsRef<OsStr>) -> String {
    ffmpeg_decode_errors_with(&[], input)
}

/// [`ffmpeg_decode_errors`] with input options (`-f obu`, `-c:v libdav1d`, …) before `-i`.
pub fn ffmpeg_decode_errors_with(input_options: &[&str], input: impl AsRef<OsStr>) -> String {
    require_tool("ffmpeg");
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(input_options)
        .arg("-i")
        .arg(input)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        text.push_str(&format!("\n(ffmpeg exit status {})", output.status));
    }
    text
}

/// A temporary directory, removed on drop unless `CORECAST_KEEP_OUTPUT` is set (then its path
/// is printed, to look at what a test wrote).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty `corecast-<label>-<pid>-<n>` under the system temp dir.
    pub fn new(label: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("corecast-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("CORECAST_KEEP_OUTPUT").is_some() {
            eprintln!("kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hexdump_bytes_reads_full_and_short_lines() {
        // ffprobe 5.1's dump of an avcC start (a full line) and of an AAC AudioSpecificConfig
        // (a short line, padded to the text column).
        let avcc = "\n00000000: 0164 001e ffe1 0019 6764 001e acd9 4050  .d......gd....@P\n";
        assert_eq!(
            hexdump_bytes(avcc),
            [
                0x01, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9,
                0x40, 0x50
            ]
        );
        let asc = "\n00000000: 1190 56e5 00                             ..V..\n";
        assert_eq!(hexdump_bytes(asc), [0x11, 0x90, 0x56, 0xe5, 0x00]);
        assert!(hexdump_bytes("").is_empty());
    }

    #[test]
    fn ffprobe_int_reads_numbers_and_strings() {
        let json: Value = serde_json::from_str(r#"{"pts": -1024, "pos": "6353"}"#).unwrap();
        assert_eq!(ffprobe_int(&json["pts"]), -1024);
        assert_eq!(ffprobe_int(&json["pos"]), 6353);
    }
}
