//! Measures what the demo source costs: render + H.264 + AAC encode per video frame, paced
//! as fast as it will go on one thread.
//!
//! cargo run --release -p corecast-transcode --example demo_timing [WIDTH HEIGHT KBPS SECONDS]
#![allow(clippy::disallowed_methods)] // A benchmark reads the real clock by design.

use std::time::{Duration, Instant, UNIX_EPOCH};

use corecast_transcode::{DemoConfig, DemoSource};

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let config = DemoConfig {
        width: args.first().copied().unwrap_or(1280),
        height: args.get(1).copied().unwrap_or(720),
        video_kbps: args.get(2).copied().unwrap_or(2000),
        ..DemoConfig::default()
    };
    let seconds = u64::from(args.get(3).copied().unwrap_or(10));
    let mut source = DemoSource::new(config.clone()).expect("demo source");
    let frames = seconds * u64::from(config.fps);
    let mut per_frame = Vec::with_capacity(frames as usize);
    let mut bytes = 0usize;
    let start = Instant::now();
    for frame in 0..frames {
        let media_time = Duration::from_nanos(frame * 1_000_000_000 / u64::from(config.fps));
        let begun = Instant::now();
        let units = source
            .produce(media_time, UNIX_EPOCH + media_time)
            .expect("produce");
        per_frame.push(begun.elapsed());
        bytes += units.iter().map(|u| u.payload.len()).sum::<usize>();
    }
    let total = start.elapsed();
    per_frame.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let media = Duration::from_secs(seconds);
    println!(
        "{}x{}@{} {} kbit/s, {} frames: mean {:.2} ms, p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms \
         per frame; {:.0}% of one core for real time; output {:.0} kbit/s",
        config.width,
        config.height,
        config.fps,
        config.video_kbps,
        frames,
        ms(total) / frames as f64,
        ms(per_frame[per_frame.len() / 2]),
        ms(per_frame[per_frame.len() * 95 / 100]),
        ms(per_frame[per_frame.len() - 1]),
        100.0 * total.as_secs_f64() / media.as_secs_f64(),
        bytes as f64 * 8.0 / 1000.0 / media.as_secs_f64(),
    );
}
