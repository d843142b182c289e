//! Compares the two AV1 encoders of the ladder (rav1e, SVT-AV1) on the same input at the same
//! bitrate, with x264 beside them for scale: encode speed (frames per second of wall time, one
//! encoder at a time) and quality (PSNR computed by ffmpeg against the raw input).
//!
//! cargo run --release -p corecast-transcode --example av1_compare [SECONDS THREADS SIZE...]
//!
//! Defaults: 4 s of ffmpeg `testsrc2` at 30 fps, 1 thread, sizes 320x180 and 640x360 at 300
//! and 700 kbit/s. Every encoder gets a forced key frame every 60 frames, as the ladder forces
//! them at 2 s segment boundaries, and the settings the ladder gives it (rav1e speed 10,
//! low latency; SVT-AV1 preset 12, low delay, restart per key frame; x264 veryfast
//! zerolatency). PSNR: `ffmpeg -f obu -i enc.obu -f rawvideo ... -i ref.yuv -lavfi psnr -f
//! null -` (the encoded side decoded by libdav1d, or ffmpeg's h264 decoder for x264). Results go
//! into docs/transcode.md ("AV1 encoders") and docs/capacity.md.
#![allow(clippy::disallowed_methods)] // A benchmark reads the real clock by design.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use corecast_rav1e::{Rav1eEncoder, Rav1eSettings};
use libav::{SvtAv1Encoder, SvtAv1Settings};
use media::AccessUnit;
use media::encode::{RawVideoFrame, VideoEncoder};
use testmedia::TempDir;
use x264::{X264Encoder, X264Settings};

const FPS: u32 = 30;
const KEY_EVERY: u32 = 60;

/// Makes `seconds` of raw I420 `testsrc2` at `width`x`height` with the ffmpeg command line.
fn raw_input(dir: &Path, width: u32, height: u32, seconds: u32) -> Vec<u8> {
    let path = dir.join(format!("ref-{width}x{height}.yuv"));
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={width}x{height}:rate={FPS}"))
        .args([
            "-t",
            &seconds.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-f",
            "rawvideo",
        ])
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg testsrc2");
    std::fs::read(&path).expect("read raw input")
}

/// CPU time (user + system) this process has used, from /proc/self/stat (clock ticks of
/// 1/100 s, which is what Linux reports to user space).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / 100.0
}

/// Runs `encoder` over every picture of `raw`, returning the units, the wall time and the CPU
/// time (every thread of the process: SVT-AV1 and rav1e work on their own threads).
fn run<E: VideoEncoder>(
    encoder: &mut E,
    raw: &[u8],
    width: u32,
    height: u32,
) -> (Vec<AccessUnit>, f64, f64) {
    let (w, h) = (width as usize, height as usize);
    let frame_len = w * h * 3 / 2;
    let mut units = Vec::new();
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    for (index, picture) in raw.chunks_exact(frame_len).enumerate() {
        let (y, chroma) = picture.split_at(w * h);
        let (u, v) = chroma.split_at(w * h / 4);
        let frame = RawVideoFrame {
            width,
            height,
            pts: index as i64 * 3000,
            planes: [y, u, v],
            strides: [w, w / 2, w / 2],
        };
        let force = (index as u32).is_multiple_of(KEY_EVERY);
        encoder.submit(&frame, force).expect("submit");
        while let Some(unit) = encoder.poll_packet().expect("poll") {
            units.push(unit);
        }
    }
    encoder.flush().expect("flush");
    while let Some(unit) = encoder.poll_packet().expect("poll") {
        units.push(unit);
    }
    (
        units,
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu_before,
    )
}

/// PSNR (average over Y, U, V as ffmpeg's psnr filter prints it) of `encoded` against `raw`.
fn psnr(encoded: &Path, format: &str, raw: &Path, width: u32, height: u32) -> f64 {
    let output = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-r",
            &FPS.to_string(),
            "-f",
            format,
            "-i",
        ])
        .arg(encoded)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s"])
        .arg(format!("{width}x{height}"))
        .args(["-r", &FPS.to_string(), "-i"])
        .arg(raw)
        .args(["-lavfi", "psnr", "-f", "null", "-"])
        .output()
        .expect("run ffmpeg psnr");
    let text = String::from_utf8_lossy(&output.stderr);
    text.lines()
        .find_map(|line| line.split("average:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no PSNR in ffmpeg's output:\n{text}"))
}

fn write_obu(path: &Path, units: &[AccessUnit]) {
    let mut stream = Vec::new();
    for unit in units {
        // Temporal delimiters go back in front of each temporal unit for the `obu` demuxer.
        stream.extend_from_slice(&[0x12, 0x00]);
        stream.extend_from_slice(&unit.payload);
    }
    std::fs::write(path, stream).expect("write obu");
}

fn write_h264(path: &Path, units: &[AccessUnit], encoder: &X264Encoder) {
    let config = encoder.avc_config();
    let mut stream = Vec::new();
    for unit in units {
        if unit.keyframe {
            for set in config.sps.iter().chain(&config.pps) {
                stream.extend_from_slice(&[0, 0, 0, 1]);
                stream.extend_from_slice(set);
            }
        }
        x264::append_annex_b(&unit.payload, &mut stream);
    }
    std::fs::write(path, stream).expect("write h264");
}

fn main() {
    // SAFETY: nothing else runs yet: this is the first line of a single-threaded main.
    unsafe { libav::quiet_svt_av1_logging() };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(4);
    let threads: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let sizes: Vec<(u32, u32, u32)> = if args.len() > 2 {
        args[2..]
            .iter()
            .filter_map(|s| {
                let (w, h) = s.split_once('x')?;
                let (w, h): (u32, u32) = (w.parse().ok()?, h.parse().ok()?);
                // About 0.1 bit per pixel per frame at 30 fps.
                Some((w, h, (w * h * 3 / 1000).max(100)))
            })
            .collect()
    } else {
        vec![(320, 180, 300), (640, 360, 700)]
    };
    let dir = TempDir::new("av1-compare");
    // Opening includes each driver's one-picture probe encode for the sequence header.
    let mut opens = Vec::new();
    println!(
        "| size | kbit/s | encoder | fps (wall) | fps per CPU second | x real time per core | \
         kbit/s out | PSNR dB | key frames |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (width, height, kbps) in sizes {
        let raw = raw_input(dir.path(), width, height, seconds);
        let raw_path = dir.path().join(format!("ref-{width}x{height}.yuv"));
        let frames = raw.len() / (width as usize * height as usize * 3 / 2);
        let mut rows = Vec::new();

        let opened = Instant::now();
        let mut rav1e = Rav1eEncoder::new(Rav1eSettings {
            width,
            height,
            bitrate_kbps: kbps,
            threads,
            ..Rav1eSettings::default()
        })
        .expect("rav1e");
        let rav1e_open = opened.elapsed();
        let (units, secs, cpu) = run(&mut rav1e, &raw, width, height);
        let path = dir.path().join("rav1e.obu");
        write_obu(&path, &units);
        rows.push((
            "rav1e speed 10",
            units,
            secs,
            cpu,
            psnr(&path, "obu", &raw_path, width, height),
        ));

        let opened = Instant::now();
        let mut svt = SvtAv1Encoder::new(SvtAv1Settings {
            width,
            height,
            bitrate_kbps: kbps,
            threads,
            ..SvtAv1Settings::default()
        })
        .expect("svt-av1");
        let svt_open = opened.elapsed();
        opens.push(format!(
            "{width}x{height}: rav1e new() {:.0} ms, SVT-AV1 new() {:.0} ms",
            rav1e_open.as_secs_f64() * 1000.0,
            svt_open.as_secs_f64() * 1000.0
        ));
        let (units, secs, cpu) = run(&mut svt, &raw, width, height);
        let path = dir.path().join("svt.obu");
        write_obu(&path, &units);
        rows.push((
            "SVT-AV1 preset 12",
            units,
            secs,
            cpu,
            psnr(&path, "obu", &raw_path, width, height),
        ));

        let mut x264 = X264Encoder::new(X264Settings {
            width,
            height,
            bitrate_kbps: kbps,
            threads,
            ..X264Settings::default()
        })
        .expect("x264");
        let (units, secs, cpu) = run(&mut x264, &raw, width, height);
        let path = dir.path().join("x264.h264");
        write_h264(&path, &units, &x264);
        rows.push((
            "x264 veryfast",
            units,
            secs,
            cpu,
            psnr(&path, "h264", &raw_path, width, height),
        ));

        for (name, units, secs, cpu, psnr) in rows {
            let bytes: usize = units.iter().map(|u| u.payload.len()).sum();
            let fps = units.len() as f64 / secs;
            let fps_per_core = units.len() as f64 / cpu.max(0.01);
            let keys = units.iter().filter(|u| u.keyframe).count();
            println!(
                "| {width}x{height} | {kbps} | {name} | {fps:.1} | {fps_per_core:.1} | {:.2} | {:.0} | {psnr:.2} | {keys}/{} |",
                fps_per_core / f64::from(FPS),
                bytes as f64 * 8.0 / (frames as f64 / f64::from(FPS)) / 1000.0,
                frames.div_ceil(KEY_EVERY as usize),
            );
        }
    }
    for line in opens {
        println!("open: {line}");
    }
    println!("({seconds} s of testsrc2 at {FPS} fps, {threads} encoder thread(s) each)");
}
