//! `corecast-bench transcode`: the default ladder through corecast's own graph
//! ([`transcode::Ladder`]: libavcodec decode, swscale, one x264 per rung) against the same ladder
//! through the `ffmpeg` command line, on the same input, in alternating rounds.
//!
//! Both sides get the same thread budget: one decoder thread, one filter thread and one x264
//! thread per rung, x264 with the same preset, `tune=zerolatency`, profile, ABR rate, VBV peak
//! and buffer, scene cuts off and a keyframe forced every segment (2 s). Both run as fast as
//! they can (not paced to real time); outputs are thrown away (ffmpeg's `-f null`), so the
//! figure is decode + scale + encode. corecast's side reads its input from memory and ffmpeg's
//! demuxes an MP4 file: ffmpeg pays a little more, which the ratio does not hide.
//!
//! Frames per second of the source (all rungs together) is the headline; with one thread per
//! encoder and ffmpeg 5.1's single-threaded graph, both sides use about one core, so the
//! real-time channels per core are roughly fps / 30 (CPU time is reported too).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ::transcode::{Ladder, LadderConfig, rung_size};
use media::{AccessUnit, TrackConfig};
use serde::Serialize;
use testmedia::{TempDir, TestSource};
use x264::X264Preset;

use crate::BenchError;

/// One comparison.
#[derive(Debug, Clone)]
pub struct TranscodeConfig {
    pub height: u32,
    pub seconds: u32,
    pub presets: Vec<String>,
    pub rounds: u32,
    pub ffmpeg: PathBuf,
}

/// One run of one side.
#[derive(Debug, Clone, Serialize)]
pub struct TranscodeRun {
    pub side: &'static str,
    pub preset: String,
    pub round: u32,
    pub frames: u64,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub fps: f64,
}

/// Medians per preset and side.
#[derive(Debug, Clone, Serialize)]
pub struct PresetSummary {
    pub preset: String,
    pub corecast_fps: f64,
    pub ffmpeg_fps: f64,
    /// corecast / ffmpeg frames per second (> 1: corecast faster).
    pub fps_ratio: f64,
    pub corecast_cpu_s_per_frame_ms: f64,
    pub ffmpeg_cpu_s_per_frame_ms: f64,
    /// Real-time 30 fps channels one core carries with corecast: 30 fps source frames per CPU second.
    pub corecast_channels_per_core: f64,
    pub ffmpeg_channels_per_core: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TranscodeReport {
    pub source: String,
    pub rungs: Vec<String>,
    pub ffmpeg_command: String,
    pub runs: Vec<TranscodeRun>,
    pub presets: Vec<PresetSummary>,
}

fn fail(why: impl Into<String>) -> BenchError {
    BenchError::Plan(why.into())
}

fn preset_by_name(name: &str) -> Result<X264Preset, BenchError> {
    [
        X264Preset::Ultrafast,
        X264Preset::Superfast,
        X264Preset::Veryfast,
        X264Preset::Faster,
        X264Preset::Fast,
        X264Preset::Medium,
    ]
    .into_iter()
    .find(|p| p.name() == name)
    .ok_or_else(|| {
        fail(format!(
            "x264 preset {name:?} is not one of ultrafast … medium"
        ))
    })
}

/// CPU seconds (user + system) of this process or of its waited-for children.
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is valid storage, and getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn ladder_config(preset: X264Preset) -> LadderConfig {
    let mut config = LadderConfig::default();
    for rung in &mut config.rungs {
        rung.preset = preset;
    }
    config
}

fn run_corecast(
    source: &TrackConfig,
    units: &[AccessUnit],
    preset: X264Preset,
) -> Result<(u64, f64, f64), BenchError> {
    let mut ladder =
        Ladder::new(ladder_config(preset), source).map_err(|e| fail(format!("ladder: {e}")))?;
    let cpu = cpu_seconds(libc::RUSAGE_SELF);
    let begun = Instant::now();
    let step = |ladder: &mut Ladder| -> Result<(), BenchError> {
        while ladder
            .encode_step(begun.elapsed())
            .map_err(|e| fail(format!("encode: {e}")))?
        {}
        while ladder.poll_output().is_some() {}
        Ok(())
    };
    for unit in units {
        ladder
            .handle_unit(unit)
            .map_err(|e| fail(format!("decode: {e}")))?;
        step(&mut ladder)?;
    }
    ladder.finish().map_err(|e| fail(format!("finish: {e}")))?;
    step(&mut ladder)?;
    let wall = begun.elapsed().as_secs_f64();
    let cpu = cpu_seconds(libc::RUSAGE_SELF) - cpu;
    Ok((units.len() as u64, wall, cpu))
}

/// The ffmpeg arguments for the same ladder (after `-i input`).
fn ffmpeg_ladder_args(source: (u32, u32), preset: &str) -> Vec<String> {
    let config = LadderConfig::default();
    let rungs: Vec<_> = config
        .rungs
        .iter()
        .filter_map(|r| rung_size(source, r.height).map(|size| (r, size)))
        .collect();
    let mut graph = format!("[0:v]split={}", rungs.len());
    for i in 0..rungs.len() {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, (_, (w, h))) in rungs.iter().enumerate() {
        graph.push_str(&format!(";[s{i}]scale={w}:{h}:flags=bicubic[v{i}]"));
    }
    let mut args: Vec<String> = vec![
        "-filter_complex_threads".into(),
        "1".into(),
        "-filter_complex".into(),
        graph,
    ];
    let keyframes = format!(
        "expr:gte(t,n_forced*{})",
        config.segment_target.as_secs_f64()
    );
    for (i, (rung, _)) in rungs.iter().enumerate() {
        args.extend([
            "-map".into(),
            format!("[v{i}]"),
            "-c:v".into(),
            "libx264".into(),
            "-preset".into(),
            preset.into(),
            "-tune".into(),
            "zerolatency".into(),
            "-profile:v".into(),
            rung.profile.name().into(),
            "-b:v".into(),
            format!("{}k", rung.bitrate_kbps),
            "-maxrate".into(),
            format!("{}k", rung.maxrate_kbps),
            "-bufsize".into(),
            format!("{}k", rung.vbv_buffer_kbits),
            "-g".into(),
            "100000".into(),
            "-sc_threshold".into(),
            "0".into(),
            "-force_key_frames".into(),
            keyframes.clone(),
            "-threads".into(),
            "1".into(),
            "-f".into(),
            "null".into(),
            "-".into(),
        ]);
    }
    args
}

fn run_ffmpeg(
    ffmpeg: &Path,
    input: &Path,
    source: (u32, u32),
    preset: &str,
) -> Result<(f64, f64), BenchError> {
    let cpu = cpu_seconds(libc::RUSAGE_CHILDREN);
    let begun = Instant::now();
    let output = Command::new(ffmpeg)
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-threads",
            "1",
            "-i",
        ])
        .arg(input)
        .args(ffmpeg_ladder_args(source, preset))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("running {}: {e}", ffmpeg.display())))?;
    let wall = begun.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(fail(format!(
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok((wall, cpu_seconds(libc::RUSAGE_CHILDREN) - cpu))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Makes the input, then runs every preset, corecast then ffmpeg, `rounds` times.
pub fn run_transcode(config: &TranscodeConfig) -> Result<TranscodeReport, BenchError> {
    let width = (config.height * 16 / 9 + 1) & !1;
    let dir = TempDir::new(&format!("bench-transcode-{}p", config.height));
    let media = TestSource::new(width, config.height, config.seconds).make(dir.path());
    let units = media.video_units();
    let source = (media.video.width, media.video.height);
    let source_config = TrackConfig::Avc(media.video.clone());
    let rungs: Vec<String> = LadderConfig::default()
        .rungs
        .iter()
        .filter_map(|r| rung_size(source, r.height).map(|(w, h)| format!("{} {w}x{h}", r.name)))
        .collect();
    let mut runs = Vec::new();
    for name in &config.presets {
        let preset = preset_by_name(name)?;
        for round in 1..=config.rounds {
            let (frames, wall, cpu) = run_corecast(&source_config, &units, preset)?;
            let (ffmpeg_wall, ffmpeg_cpu) = run_ffmpeg(&config.ffmpeg, &media.path, source, name)?;
            for (side, wall_s, cpu_s) in
                [("corecast", wall, cpu), ("ffmpeg", ffmpeg_wall, ffmpeg_cpu)]
            {
                let run = TranscodeRun {
                    side,
                    preset: name.clone(),
                    round,
                    frames,
                    wall_s,
                    cpu_s,
                    fps: frames as f64 / wall_s.max(1e-9),
                };
                eprintln!("{run:?}");
                runs.push(run);
            }
        }
    }
    let presets = config
        .presets
        .iter()
        .map(|preset| {
            let of = |side: &str, f: fn(&TranscodeRun) -> f64| {
                median(
                    runs.iter()
                        .filter(|r| r.side == side && &r.preset == preset)
                        .map(f)
                        .collect(),
                )
            };
            let cpu_ms = |r: &TranscodeRun| r.cpu_s * 1000.0 / r.frames.max(1) as f64;
            let channels = |r: &TranscodeRun| r.frames as f64 / r.cpu_s.max(1e-9) / 30.0;
            let corecast_fps = of("corecast", |r| r.fps);
            let ffmpeg_fps = of("ffmpeg", |r| r.fps);
            PresetSummary {
                preset: preset.clone(),
                corecast_fps,
                ffmpeg_fps,
                fps_ratio: corecast_fps / ffmpeg_fps.max(1e-9),
                corecast_cpu_s_per_frame_ms: of("corecast", cpu_ms),
                ffmpeg_cpu_s_per_frame_ms: of("ffmpeg", cpu_ms),
                corecast_channels_per_core: of("corecast", channels),
                ffmpeg_channels_per_core: of("ffmpeg", channels),
            }
        })
        .collect();
    let ffmpeg_command = format!(
        "{} -hide_banner -nostdin -v error -threads 1 -i source.mp4 {}",
        config.ffmpeg.display(),
        ffmpeg_ladder_args(
            source,
            config.presets.first().map_or("veryfast", String::as_str)
        )
        .iter()
        .map(|a| if a.contains([' ', ';', '[', '(']) {
            format!("'{a}'")
        } else {
            a.clone()
        })
        .collect::<Vec<_>>()
        .join(" ")
    );
    Ok(TranscodeReport {
        source: format!(
            "{}x{} 30 fps, {} s, {} frames, x264 veryfast with 2 B-frames (ffmpeg testsrc2)",
            source.0,
            source.1,
            config.seconds,
            units.len()
        ),
        rungs,
        ffmpeg_command,
        runs,
        presets,
    })
}

impl TranscodeReport {
    pub fn table(&self) -> String {
        let mut out = format!(
            "source: {}\nrungs: {}\n\n| preset | corecast fps | ffmpeg fps | fps ratio | corecast CPU ms/frame | ffmpeg CPU ms/frame | corecast channels/core | ffmpeg channels/core |\n|---|---|---|---|---|---|---|---|\n",
            self.source,
            self.rungs.join(", ")
        );
        for p in &self.presets {
            out.push_str(&format!(
                "| {} | {:.1} | {:.1} | {:.2}x | {:.1} | {:.1} | {:.2} | {:.2} |\n",
                p.preset,
                p.corecast_fps,
                p.ffmpeg_fps,
                p.fps_ratio,
                p.corecast_cpu_s_per_frame_ms,
                p.ffmpeg_cpu_s_per_frame_ms,
                p.corecast_channels_per_core,
                p.ffmpeg_channels_per_core
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_graph_has_one_output_per_rung_that_fits() {
        let args = ffmpeg_ladder_args((1280, 720), "veryfast");
        let graph = &args[3];
        // 1080p does not fit under a 720p source: three rungs.
        assert!(graph.starts_with("[0:v]split=3[s0][s1][s2]"), "{graph}");
        assert!(
            graph.contains("[s0]scale=1280:720:flags=bicubic[v0]"),
            "{graph}"
        );
        assert!(
            graph.contains("[s2]scale=640:360:flags=bicubic[v2]"),
            "{graph}"
        );
        assert_eq!(args.iter().filter(|a| *a == "libx264").count(), 3);
        assert!(args.windows(2).any(|w| w[0] == "-b:v" && w[1] == "2500k"));
        assert!(
            args.windows(2)
                .any(|w| w[0] == "-bufsize" && w[1] == "5600k")
        );
    }

    #[test]
    fn presets_by_name() {
        assert!(preset_by_name("veryfast").is_ok());
        assert!(preset_by_name("placebo").is_err());
    }
}
