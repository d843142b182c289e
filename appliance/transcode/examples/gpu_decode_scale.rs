//! Measures the first half of a ladder on an NVIDIA GPU: decode a 1080p H.264 source and scale
//! it to the default ladder's 720p, 480p and 360p, three ways, one after the other on the same
//! input:
//! 1. `cpu`: libavcodec's software decoder, swscale bicubic;
//! 2. `nvdec+swscale`: NVDEC, every full picture copied to system memory, swscale;
//! 3. `nvdec+cuda`: NVDEC, scaled on the GPU (`libav::CudaScaler`), only the rung-size pictures
//!    copied back.
//!
//! For each: pictures per second of wall time and CPU milliseconds per picture (the process's
//! user + system time, so it counts every thread). docs/capacity.md ("GPU decode and scale")
//! has the results and the machine.
//!
//! cargo run --release -p corecast-transcode --example gpu_decode_scale [FRAMES DECODE_THREADS]
//!
//! The input is made here (x264, veryfast, B-frames, 6 Mbit/s, an IDR every 60 pictures) from a
//! moving synthetic picture, because the GPU machines have no ffmpeg command line.
#![allow(clippy::disallowed_methods)] // A benchmark reads the real clock by design.

use std::time::Instant;

use libav::{
    CudaScaler, DecodeDevice, DecodedPicture, I420Picture, ScaleFilter, Scaler, VideoDecoder,
    VideoDecoderSettings,
};
use media::encode::{RawVideoFrame, VideoEncoder};
use media::{AccessUnit, TrackConfig};
use x264::{X264Encoder, X264Preset, X264Settings};

const WIDTH: u32 = 1920;
const HEIGHT: u32 = 1080;
const RUNGS: [(u32, u32); 3] = [(1280, 720), (854, 480), (640, 360)];

fn picture(index: usize, planes: &mut [Vec<u8>; 3]) {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    for (i, value) in planes[0].iter_mut().enumerate() {
        let (x, y) = (i % w, i / w);
        *value = ((x * x / 29 + y * y / 17 + index * 7 + (x ^ y) / 5) % 256) as u8;
    }
    for (plane, phase) in [(1, 3), (2, 5)] {
        for (i, value) in planes[plane].iter_mut().enumerate() {
            *value = (((i % (w / 2)) + i / (w / 2) * 2 + index * phase) % 256) as u8;
        }
    }
    let _ = h;
}

fn source(frames: usize) -> (TrackConfig, Vec<AccessUnit>) {
    let mut encoder = X264Encoder::new(X264Settings {
        width: WIDTH,
        height: HEIGHT,
        bitrate_kbps: 6000,
        preset: X264Preset::Veryfast,
        zerolatency: false,
        keyint_max: Some(60),
        threads: 8,
        ..X264Settings::default()
    })
    .expect("x264");
    let config = TrackConfig::Avc(encoder.avc_config().clone());
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let mut planes = [vec![0; w * h], vec![0; w * h / 4], vec![0; w * h / 4]];
    let mut units = Vec::new();
    for index in 0..frames {
        picture(index, &mut planes);
        let frame = RawVideoFrame {
            width: WIDTH,
            height: HEIGHT,
            pts: index as i64 * 3000,
            planes: [&planes[0], &planes[1], &planes[2]],
            strides: [w, w / 2, w / 2],
        };
        encoder.submit(&frame, index % 60 == 0).expect("submit");
        while let Some(unit) = encoder.poll_packet().expect("poll") {
            units.push(unit);
        }
    }
    encoder.flush().expect("flush");
    while let Some(unit) = encoder.poll_packet().expect("poll") {
        units.push(unit);
    }
    (config, units)
}

/// This process's user + system CPU time in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 after the name).
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Cpu,
    NvdecSwscale,
    NvdecCuda,
}

fn run(path: Path, config: &TrackConfig, units: &[AccessUnit], threads: u32) -> (usize, f64, f64) {
    let device = match path {
        Path::Cpu => DecodeDevice::Cpu,
        _ => DecodeDevice::Nvdec { gpu: 0 },
    };
    let mut decoder = VideoDecoder::with_device(config, VideoDecoderSettings { threads }, device)
        .expect("decoder");
    let mut swscale: Vec<Scaler> = RUNGS
        .iter()
        .map(|&size| Scaler::new((WIDTH, HEIGHT), size, ScaleFilter::Bicubic).expect("swscale"))
        .collect();
    let mut cuda: Vec<CudaScaler> = if path == Path::NvdecCuda {
        RUNGS
            .iter()
            .map(|&size| CudaScaler::new(0, (WIDTH, HEIGHT), size).expect("GPU scaler"))
            .collect()
    } else {
        Vec::new()
    };
    let mut outputs: Vec<I420Picture> = RUNGS
        .iter()
        .map(|&(w, h)| I420Picture::new(w, h).expect("picture"))
        .collect();
    let mut pictures = 0;
    let mut drain = |decoder: &mut VideoDecoder| {
        loop {
            let picture = if path == Path::NvdecCuda {
                decoder.poll_picture().expect("poll")
            } else {
                decoder
                    .poll_frame()
                    .expect("poll")
                    .map(DecodedPicture::System)
            };
            let Some(picture) = picture else { break };
            for (index, output) in outputs.iter_mut().enumerate() {
                match &picture {
                    DecodedPicture::System(frame) => swscale[index].scale_into(frame, output),
                    DecodedPicture::Gpu(gpu) => cuda[index].scale_into(gpu, output),
                }
                .expect("scale");
            }
            pictures += 1;
        }
    };
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for unit in units {
        decoder.submit(unit).expect("submit");
        drain(&mut decoder);
    }
    decoder.flush().expect("flush");
    drain(&mut decoder);
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    assert!(path == Path::Cpu || decoder.stats().gpu_frames == pictures as u64);
    (pictures, wall, cpu)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let frames: usize = args.next().map_or(600, |a| a.parse().expect("FRAMES"));
    let threads: u32 = args
        .next()
        .map_or(4, |a| a.parse().expect("DECODE_THREADS"));
    let (config, units) = source(frames);
    println!(
        "input: {frames} pictures of {WIDTH}x{HEIGHT} H.264 with B-frames, {:.1} Mbit/s at 30 fps; \
         rungs {RUNGS:?}; CPU decoder threads {threads}; cpus {}",
        units.iter().map(|u| u.payload.len()).sum::<usize>() as f64 * 8.0 * 30.0
            / frames as f64
            / 1e6,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<15} {:>10} {:>14}",
        "path", "pictures/s", "CPU ms/picture"
    );
    // Twice, in alternation, so that warm-up (JIT of the PTX, CUDA context) shows.
    for round in 0..2 {
        for (name, path) in [
            ("cpu", Path::Cpu),
            ("nvdec+swscale", Path::NvdecSwscale),
            ("nvdec+cuda", Path::NvdecCuda),
        ] {
            let (pictures, wall, cpu) = run(path, &config, &units, threads);
            println!(
                "{name:<15} {:>10.1} {:>14.2}   (round {round})",
                pictures as f64 / wall,
                cpu * 1000.0 / pictures as f64
            );
        }
    }
}
