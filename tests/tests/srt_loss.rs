//! SRT under packet loss: ffmpeg publishes through a relay that drops 2 % of the datagrams
//! each way; SRT's retransmissions within the latency window still give continuous HLS.

mod srt_common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use corecast_e2e::lossy_relay::LossyRelay;
use corecast_e2e::{Server, wait_success};
use srt_common::*;

#[test]
fn two_percent_loss_each_way_still_gives_continuous_hls() {
    let server = Server::start(
        &format!(
            "{}[[srt_stream]]\nname = \"lossy\"\nlatency_ms = 400\n",
            base_config()
        ),
        &[],
    );
    let relay = LossyRelay::start(server.srt, 0.02);
    // ffmpeg's latency is in microseconds; the larger of both sides' latencies applies.
    let mut ffmpeg = ffmpeg_srt_publish(&format!(
        "srt://{}?streamid=publish:live/lossy&latency=400000&linger=3",
        relay.addr
    ));
    wait_live(&server, "lossy", Duration::from_secs(10));
    wait_success(&mut ffmpeg, Duration::from_secs(20), "ffmpeg");
    let dropped_up = relay.upstream.dropped.load(Ordering::Relaxed);
    let forwarded_up = relay.upstream.forwarded.load(Ordering::Relaxed);
    let dropped_down = relay.downstream.dropped.load(Ordering::Relaxed);
    assert!(
        dropped_up >= 5 && dropped_down >= 1,
        "the relay lost too little to test anything: up {dropped_up}/{forwarded_up}, down {dropped_down}"
    );

    // Every frame recovered: the same bar as on a clean loopback.
    check_hls(&server, "lossy", FRAMES - 4);

    // The connection's last statistics show the loss and its repair.
    let log = plain_log(&server);
    let stats = log
        .lines()
        .rfind(|l| l.contains("SRT stats") && l.contains("lossy"))
        .unwrap_or_else(|| panic!("no SRT stats line:\n{log}"));
    eprintln!(
        "relay dropped {dropped_up} of {} datagrams upstream, {dropped_down} downstream; {stats}",
        dropped_up + forwarded_up
    );
    let field =
        |name: &str| log_field(stats, name).unwrap_or_else(|| panic!("{name} missing in {stats}"));
    assert!(field("lost") > 0.0, "{stats}");
    assert!(field("retransmitted") > 0.0, "{stats}");
}
