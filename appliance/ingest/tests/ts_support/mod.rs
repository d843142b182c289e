//! Shared by the ts_* tests: the ffmpeg corpus file and a demux-everything helper.

use corecast_ingest::ts::{TsCounters, TsDemuxer, TsEvent};
use media::{AccessUnit, Codec};

/// ffmpeg 5.1.9 (Debian 12), made with:
/// `ffmpeg -f lavfi -i testsrc2=size=320x180:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000
///  -t 2 -c:v libx264 -preset veryfast -bf 2 -g 30 -keyint_min 30 -sc_threshold 0 -pix_fmt yuv420p
///  -b:v 200k -c:a aac -b:a 64k -ac 2 -f mpegts ffmpeg5_mpegts_h264_aac.ts`
#[allow(dead_code)] // not every test binary that includes this module uses it
pub const CORPUS: &[u8] = include_bytes!("../data/ffmpeg5_mpegts_h264_aac.ts");
#[allow(dead_code)] // not every test binary that includes this module uses it
pub const CORPUS_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ffmpeg5_mpegts_h264_aac.ts"
);

/// Demuxes `bytes` fed in pieces of `chunk` bytes, then ends the stream.
pub fn demux(bytes: &[u8], chunk: usize) -> (Vec<TsEvent>, TsCounters) {
    let mut demuxer = TsDemuxer::new();
    let mut events = Vec::new();
    for piece in bytes.chunks(chunk) {
        demuxer.handle_bytes(piece);
        events.extend(std::iter::from_fn(|| demuxer.poll_event()));
    }
    demuxer.handle_end_of_stream();
    events.extend(std::iter::from_fn(|| demuxer.poll_event()));
    (events, *demuxer.counters())
}

pub fn units(events: &[TsEvent], codec: Codec) -> Vec<AccessUnit> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Media(unit) if unit.codec == codec => Some(unit.clone()),
            _ => None,
        })
        .collect()
}
