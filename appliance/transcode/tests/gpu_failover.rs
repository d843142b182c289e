//! A GPU that fails mid-stream (a fault, a driver reset) must not end the ladder: it goes on
//! decoding and scaling on the CPU from the next key frame. Needs an NVIDIA GPU (see
//! gpu_hardware.rs); its own test binary, because the fault it injects (a kernel's illegal
//! memory access, which leaves the shared CUDA context failing every call, as a real GPU fault
//! does) makes the GPU unusable for the rest of the process.

use std::time::Duration;

use corecast_transcode::{DecodeDevice, Ladder, RungEncoder};
use media::AccessUnit;

mod gpu_common;
use gpu_common::{gpu_here, h264_source_of, one_rung_ladder};

#[test]
fn a_gpu_failure_mid_stream_moves_the_ladder_to_the_cpu_from_the_next_key_frame() {
    if !gpu_here() {
        return;
    }
    // Key frames at 0, 24, 48, 72 and 96: the fault comes after the second, and the CPU
    // decoder has later ones to start from.
    let (config, units) = h264_source_of(120);
    let mut ladder = one_rung_ladder(&config, RungEncoder::X264);
    assert_eq!(ladder.decoder_device(), DecodeDevice::Nvdec { gpu: 0 });
    assert!(ladder.scales_on_gpu());

    let mut out: Vec<AccessUnit> = Vec::new();
    let mut now = Duration::ZERO;
    let mut feed = |ladder: &mut Ladder, units: &[AccessUnit], out: &mut Vec<AccessUnit>| {
        for unit in units {
            now += Duration::from_millis(33);
            ladder
                .handle_unit(unit)
                .expect("handle_unit goes on through the fault");
            while ladder.encode_step(now).expect("encode_step") {}
            while let Some((_, unit)) = ladder.poll_output() {
                out.push(unit);
            }
        }
    };
    let half = 30;
    feed(&mut ladder, &units[..half], &mut out);
    let before = out.len();
    assert!(before > 0, "the rung encoded on the GPU path first");
    let fault = libav::poison_cuda_context_for_fault_tests(0).expect("inject the fault");
    eprintln!("injected: {fault}");
    feed(&mut ladder, &units[half..], &mut out);
    ladder.finish().expect("finish");
    while ladder.encode_step(now).expect("encode_step") {}
    while let Some((_, unit)) = ladder.poll_output() {
        out.push(unit);
    }

    let stats = ladder.stats();
    eprintln!(
        "fault after unit {half}: {before} units encoded before, {} after; {:?}; reason: {:?}",
        out.len() - before,
        stats,
        ladder.decoder_fallback_reason()
    );
    assert_eq!(stats.gpu_failovers, 1);
    assert!(
        stats.corrupt_units >= 30,
        "the units NVDEC failed stay counted after the decoder is replaced"
    );
    assert!(
        stats.skipped_after_failover > 0,
        "units waited for the next key frame"
    );
    assert_eq!(ladder.decoder_device(), DecodeDevice::Cpu);
    assert!(!ladder.scales_on_gpu());
    assert!(
        ladder
            .decoder_fallback_reason()
            .is_some_and(|reason| reason.starts_with("GPU failed mid-stream")),
        "{:?}",
        ladder.decoder_fallback_reason()
    );
    // After the fault the rung picked up again at a key frame and encoded the rest of the
    // source: every picture from the last key frame (96) on.
    let after = &out[before..];
    assert!(
        after.iter().any(|unit| unit.keyframe),
        "the CPU path starts at a key frame"
    );
    let last_keyframe_pts = units
        .iter()
        .filter(|unit| unit.keyframe)
        .map(|unit| unit.pts)
        .max()
        .expect("key frames");
    let encoded_from_there = out
        .iter()
        .filter(|unit| unit.pts >= last_keyframe_pts)
        .count();
    let source_from_there = units
        .iter()
        .filter(|unit| unit.pts >= last_keyframe_pts)
        .count();
    assert_eq!(
        encoded_from_there, source_from_there,
        "every picture from the last key frame on is encoded"
    );
}
