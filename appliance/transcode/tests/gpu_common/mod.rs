//! What the GPU checks share: the switch that skips them off a GPU, and a source made here
//! (the GPU machines have no ffmpeg command line): a moving synthetic picture encoded by x264
//! with B-frames.
#![allow(dead_code)] // Each test binary uses part of it.

use std::time::Duration;

use corecast_transcode::{Ladder, LadderConfig, RungEncoder};
use media::encode::{RawVideoFrame, VideoEncoder};
use media::{AccessUnit, TrackConfig};
use x264::{X264Encoder, X264Settings};

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 360;
pub const FRAMES: usize = 48;

/// Whether the GPU tests run here: NVDEC can be set up, or else the reason is printed (and is a
/// failure under `CORECAST_REQUIRE_GPU=1`).
pub fn gpu_here() -> bool {
    match libav::nvdec_check(0) {
        Ok(()) => true,
        Err(reason) => {
            assert!(
                std::env::var_os("CORECAST_REQUIRE_GPU").is_none(),
                "CORECAST_REQUIRE_GPU is set and NVDEC is unavailable: {reason}"
            );
            assert!(
                reason.contains("libcuda.so.1")
                    || reason.contains("libnvcuvid")
                    || reason.contains("CUDA"),
                "the reason names what is missing: {reason}"
            );
            eprintln!("skipped: NVDEC unavailable here ({reason})");
            false
        }
    }
}

/// Picture `index` of the synthetic source, as I420 planes.
pub fn picture(index: usize) -> [Vec<u8>; 3] {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let t = index;
    let luma = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            ((x * x / 7 + y * y / 5 + t * 9 + (x ^ y) / 3) % 256) as u8
        })
        .collect();
    let chroma = |phase: usize| {
        (0..(w / 2) * (h / 2))
            .map(|i| (((i % (w / 2)) * 2 + i / (w / 2) + t * phase) % 256) as u8)
            .collect()
    };
    [luma, chroma(3), chroma(5)]
}

/// [`FRAMES`] pictures encoded by `encoder`, an IDR forced every 24.
pub fn encode<E: VideoEncoder>(encoder: E) -> Vec<AccessUnit>
where
    E::Error: std::fmt::Debug,
{
    encode_frames(encoder, FRAMES)
}

/// `frames` pictures encoded by `encoder`, an IDR forced every 24.
pub fn encode_frames<E: VideoEncoder>(mut encoder: E, frames: usize) -> Vec<AccessUnit>
where
    E::Error: std::fmt::Debug,
{
    let mut units = Vec::new();
    for index in 0..frames {
        let planes = picture(index);
        let frame = RawVideoFrame {
            width: WIDTH,
            height: HEIGHT,
            pts: index as i64 * 3000,
            planes: [&planes[0], &planes[1], &planes[2]],
            strides: [WIDTH as usize, WIDTH as usize / 2, WIDTH as usize / 2],
        };
        encoder.submit(&frame, index % 24 == 0).expect("submit");
        while let Some(unit) = encoder.poll_packet().expect("poll") {
            units.push(unit);
        }
    }
    encoder.flush().expect("flush");
    while let Some(unit) = encoder.poll_packet().expect("poll") {
        units.push(unit);
    }
    units
}

/// [`FRAMES`] pictures of H.264 with B-frames.
pub fn h264_source() -> (TrackConfig, Vec<AccessUnit>) {
    h264_source_of(FRAMES)
}

/// `frames` pictures of H.264 with B-frames, an IDR every 24.
pub fn h264_source_of(frames: usize) -> (TrackConfig, Vec<AccessUnit>) {
    let encoder = X264Encoder::new(X264Settings {
        width: WIDTH,
        height: HEIGHT,
        bitrate_kbps: 1500,
        zerolatency: false,
        keyint_max: Some(24),
        threads: 2,
        ..X264Settings::default()
    })
    .expect("x264");
    let config = TrackConfig::Avc(encoder.avc_config().clone());
    let units = encode_frames(encoder, frames);
    assert!(
        units.iter().any(|unit| unit.pts != unit.dts),
        "the H.264 source has B-frames (pts != dts)"
    );
    (config, units)
}

/// A ladder of one 180p rung (x264 ultrafast settings) on `encoder`, with 800 ms segments, for
/// `source`; its decoder by the default rule (`auto`).
pub fn one_rung_ladder(source: &TrackConfig, encoder: RungEncoder) -> Ladder {
    let mut rung = LadderConfig::default().rungs[3].clone();
    rung.name = "180p".into();
    rung.height = 180;
    rung.preset = x264::X264Preset::Ultrafast;
    rung.encoder = encoder;
    Ladder::new(
        LadderConfig {
            rungs: vec![rung],
            segment_target: Duration::from_millis(800),
            ..LadderConfig::default()
        },
        source,
    )
    .expect("ladder")
}
