//! Runs the built-in demo source in real time and publishes it as the stream `demo`, through
//! the same claim as any publisher.

use std::time::{Duration, Instant, SystemTime};

use transcode::{DemoConfig, DemoSource};

use crate::hub::HubHandle;

/// The stream name the demo publishes under.
pub const DEMO_STREAM: &str = "demo";

/// Encodes the demo stream until the process ends. Runs on the calling thread (the transcode
/// core). A failure is logged and ends the demo only.
pub fn run(config: DemoConfig, hub: HubHandle) {
    let mut source = match DemoSource::new(config.clone()) {
        Ok(source) => source,
        Err(e) => {
            tracing::error!(error = %e, "demo stream disabled: its encoder did not start");
            return;
        }
    };
    let mut claim = match hub.claim(DEMO_STREAM, "demo") {
        Ok(claim) => claim,
        Err(e) => {
            tracing::error!(error = %e, "demo stream disabled");
            return;
        }
    };
    claim.start(
        Some(source.video_config().clone()),
        Some(source.audio_config().clone()),
    );
    let start = Instant::now();
    let frame = Duration::from_secs(1) / config.fps.max(1);
    let mut behind_reported = false;
    loop {
        let media_time = start.elapsed();
        match source.produce(media_time, SystemTime::now()) {
            Ok(units) => units.into_iter().for_each(|u| claim.send_unit(u)),
            Err(e) => {
                tracing::error!(error = %e, "demo encoder failed; demo stream stops");
                claim.set_end_reason(format!("demo encoder failed: {e}"));
                return;
            }
        }
        let spent = start.elapsed().saturating_sub(media_time);
        if spent > frame * 2 && !behind_reported {
            behind_reported = true;
            tracing::warn!(
                ms_per_frame = spent.as_millis() as u64,
                "demo encoder is slower than real time; lower [demo] width/height or fps"
            );
        }
        // Sleep to the next frame boundary: one frame per turn keeps latency low.
        let next = media_time + frame;
        let elapsed = start.elapsed();
        if next > elapsed {
            std::thread::sleep(next - elapsed);
        }
    }
}
