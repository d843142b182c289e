//! Measures the ladder's stages on one thread: decode of the source, then per rung the scale
//! and the x264 encode, each timed per frame; then the whole `Ladder` end to end.
//!
//! cargo run --release -p corecast-transcode --example ladder_timing [HEIGHT SECONDS PRESET]
//!
//! The source is ffmpeg's `testsrc2` at 16:9 and HEIGHT (default 1080), 30 fps, x264 veryfast
//! with 2 B-frames and a keyframe every 2 s, made by the ffmpeg command line
//! (corecast-testmedia's `TestSource`). Rungs are the default ladder's (those not taller than
//! the source) with x264 PRESET (default veryfast).
#![allow(clippy::disallowed_methods)] // A benchmark reads the real clock by design.

use std::time::{Duration, Instant};

use corecast_transcode::{Ladder, LadderConfig, rung_size};
use libav::{Scaler, VideoDecoder, VideoDecoderSettings};
use media::encode::VideoEncoder;
use media::{AccessUnit, AvcConfig, TrackConfig};
use testmedia::{TempDir, TestSource};
use x264::{X264Encoder, X264Preset, X264Settings};

fn source(height: u32, seconds: u32) -> (AvcConfig, Vec<AccessUnit>) {
    let width = (height * 16 / 9 + 1) & !1;
    let dir = TempDir::new(&format!("ladder-timing-{height}p"));
    let media = TestSource::new(width, height, seconds).make(dir.path());
    let units = media.video_units();
    (media.video, units)
}

fn preset(name: &str) -> X264Preset {
    match name {
        "ultrafast" => X264Preset::Ultrafast,
        "superfast" => X264Preset::Superfast,
        "faster" => X264Preset::Faster,
        "fast" => X264Preset::Fast,
        "medium" => X264Preset::Medium,
        _ => X264Preset::Veryfast,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let height: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1080);
    let seconds: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let preset = preset(args.get(2).map_or("veryfast", String::as_str));
    let (config, units) = source(height, seconds);
    let mut ladder_config = LadderConfig::default();
    for rung in &mut ladder_config.rungs {
        rung.preset = preset;
    }
    let source_size = (config.width, config.height);
    let frames = units.len();
    println!(
        "source {}x{} 30 fps, {frames} frames, x264 {} one thread per rung, one decoder thread",
        source_size.0,
        source_size.1,
        preset.name()
    );

    // Stage by stage: decode, then per rung scale + encode of every decoded picture.
    struct Stage {
        name: String,
        size: (u32, u32),
        scaler: Scaler,
        encoder: X264Encoder,
        scale: Duration,
        encode: Duration,
    }
    let mut stages: Vec<Stage> = ladder_config
        .rungs
        .iter()
        .filter_map(|rung| {
            let size = rung_size(source_size, rung.height)?;
            Some(Stage {
                name: rung.name.clone(),
                size,
                scaler: Scaler::new(source_size, size, ladder_config.scale_filter).unwrap(),
                encoder: X264Encoder::new(X264Settings {
                    width: size.0,
                    height: size.1,
                    bitrate_kbps: rung.bitrate_kbps,
                    vbv_max_kbps: rung.maxrate_kbps,
                    vbv_buffer_kbits: rung.vbv_buffer_kbits,
                    preset,
                    profile: rung.profile,
                    ..X264Settings::default()
                })
                .unwrap(),
                scale: Duration::ZERO,
                encode: Duration::ZERO,
            })
        })
        .collect();
    let mut decoder = VideoDecoder::new(
        &TrackConfig::Avc(config.clone()),
        VideoDecoderSettings::default(),
    )
    .unwrap();
    let mut decode = Duration::ZERO;
    for unit in &units {
        let begun = Instant::now();
        decoder.submit(unit).unwrap();
        decode += begun.elapsed();
        loop {
            let begun = Instant::now();
            let Some(frame) = decoder.poll_frame().unwrap() else {
                decode += begun.elapsed();
                break;
            };
            decode += begun.elapsed();
            for stage in &mut stages {
                let begun = Instant::now();
                let scaled = stage.scaler.scale(&frame).unwrap();
                stage.scale += begun.elapsed();
                let begun = Instant::now();
                stage.encoder.submit(&scaled, false).unwrap();
                while stage.encoder.poll_packet().unwrap().is_some() {}
                stage.encode += begun.elapsed();
            }
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0 / frames as f64;
    let fps = |d: Duration| frames as f64 / d.as_secs_f64();
    println!(
        "decode {}x{}: {:.2} ms/frame ({:.0} fps)",
        source_size.0,
        source_size.1,
        ms(decode),
        fps(decode)
    );
    for stage in &stages {
        println!(
            "rung {:>5} {}x{}: scale {:.2} ms/frame, encode {:.2} ms/frame ({:.0} fps encode alone)",
            stage.name,
            stage.size.0,
            stage.size.1,
            ms(stage.scale),
            ms(stage.encode),
            fps(stage.encode)
        );
    }

    // The whole ladder, end to end on this thread.
    let mut ladder = Ladder::new(ladder_config, &TrackConfig::Avc(config.clone())).unwrap();
    let begun = Instant::now();
    for unit in &units {
        ladder.handle_unit(unit).unwrap();
        while ladder.encode_step(begun.elapsed()).unwrap() {}
        while ladder.poll_output().is_some() {}
    }
    ladder.finish().unwrap();
    while ladder.encode_step(begun.elapsed()).unwrap() {}
    while ladder.poll_output().is_some() {}
    let total = begun.elapsed();
    println!(
        "whole ladder: {:.2} ms per source frame ({:.1} fps, {:.0}% of one core for real time)",
        ms(total),
        fps(total),
        100.0 * total.as_secs_f64() / (frames as f64 / 30.0)
    );
}
