//! Checks that need an NVIDIA GPU, run on one by hand (`CORECAST_REQUIRE_GPU=1` makes a
//! missing GPU a failure instead of a skip; docs/transcode.md, "Checked on a GPU", has the
//! command and the last results). Elsewhere each test checks that it was skipped for a reason
//! the operator can act on.
//!
//! The input is made here, with no ffmpeg command line (the GPU machines have none): a moving
//! synthetic picture encoded by x264 with B-frames and by x265.

use libav::{DecodeDevice, VideoDecoder, VideoDecoderSettings, X265Encoder, X265Settings};
use media::encode::{RawVideoFrame, VideoEncoder};
use media::{AccessUnit, TrackConfig};
use x264::{X264Encoder, X264Settings};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;
const FRAMES: usize = 48;

/// Whether the GPU tests run here: NVDEC can be set up, or else the reason is printed (and is a
/// failure under `CORECAST_REQUIRE_GPU=1`).
fn gpu_here() -> bool {
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
fn picture(index: usize) -> [Vec<u8>; 3] {
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

fn encode<E: VideoEncoder>(mut encoder: E) -> Vec<AccessUnit>
where
    E::Error: std::fmt::Debug,
{
    let mut units = Vec::new();
    for index in 0..FRAMES {
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

fn h264_source() -> (TrackConfig, Vec<AccessUnit>) {
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
    let units = encode(encoder);
    assert!(
        units.iter().any(|unit| unit.pts != unit.dts),
        "the H.264 source has B-frames (pts != dts)"
    );
    (config, units)
}

fn hevc_source() -> (TrackConfig, Vec<AccessUnit>) {
    let encoder = X265Encoder::new(X265Settings {
        width: WIDTH,
        height: HEIGHT,
        fps_num: 30,
        fps_den: 1,
        bitrate_kbps: 1500,
        vbv_max_kbps: 0,
        vbv_buffer_kbits: 0,
        preset: "ultrafast",
        threads: 2,
        keyint_max: Some(24),
    })
    .expect("x265");
    let config = TrackConfig::Hevc(encoder.hevc_config().clone());
    (config, encode(encoder))
}

/// Every picture of `units` decoded on `device`: (pts, I420 planes), and the decoder's GPU
/// picture count.
fn decode(
    config: &TrackConfig,
    units: &[AccessUnit],
    device: DecodeDevice,
) -> (Vec<(i64, [Vec<u8>; 3])>, u64) {
    let mut decoder =
        VideoDecoder::with_device(config, VideoDecoderSettings { threads: 1 }, device)
            .expect("decoder");
    let mut pictures = Vec::new();
    let mut take = |decoder: &mut VideoDecoder| {
        while let Some(frame) = decoder.poll_frame().expect("poll_frame") {
            let planes = std::array::from_fn(|plane| {
                let (w, h) = frame.plane_size(plane);
                (0..h)
                    .flat_map(|row| frame.planes[plane][row * frame.strides[plane]..][..w].to_vec())
                    .collect()
            });
            pictures.push((frame.pts, planes));
        }
    };
    for unit in units {
        decoder.submit(unit).expect("submit");
        take(&mut decoder);
    }
    decoder.flush().expect("flush");
    take(&mut decoder);
    (pictures, decoder.stats().gpu_frames)
}

fn nvdec_matches_the_cpu(config: TrackConfig, units: Vec<AccessUnit>) {
    let (cpu, cpu_gpu_frames) = decode(&config, &units, DecodeDevice::Cpu);
    assert_eq!(cpu.len(), FRAMES);
    assert_eq!(cpu_gpu_frames, 0);
    let (gpu, gpu_frames) = decode(&config, &units, DecodeDevice::Nvdec { gpu: 0 });
    assert_eq!(gpu_frames, FRAMES as u64, "every picture decoded by NVDEC");
    assert_eq!(gpu.len(), cpu.len());
    for (index, ((cpu_pts, cpu_planes), (gpu_pts, gpu_planes))) in cpu.iter().zip(&gpu).enumerate()
    {
        assert_eq!(cpu_pts, gpu_pts, "picture {index} pts");
        for plane in 0..3 {
            assert!(
                cpu_planes[plane] == gpu_planes[plane],
                "picture {index} plane {plane}: NVDEC differs from libavcodec's software decoder"
            );
        }
    }
}

#[test]
fn nvdec_decodes_h264_with_b_frames_to_the_same_pictures_as_the_cpu() {
    if gpu_here() {
        let (config, units) = h264_source();
        nvdec_matches_the_cpu(config, units);
    }
}

#[test]
fn nvdec_decodes_hevc_to_the_same_pictures_as_the_cpu() {
    if gpu_here() {
        let (config, units) = hevc_source();
        nvdec_matches_the_cpu(config, units);
    }
}
