//! demux(our TS muxer(units)) == units: the corpus' access units go through
//! `package::ts::TsMuxer` and back through the demuxer unchanged (times shifted by the muxer's
//! fixed offset).

mod ts_support;

use corecast_ingest::ts::TsEvent;
use media::{Codec, rescale};
use package::ts::{TIMESTAMP_OFFSET, TsMuxer};
use ts_support::{CORPUS, demux, units};

#[test]
fn units_survive_our_muxer_and_demuxer() {
    let (events, _) = demux(CORPUS, 1316);
    let video_config = events.iter().find_map(|e| match e {
        TsEvent::VideoConfig(c) => Some(c.clone()),
        _ => None,
    });
    let audio_config = events.iter().find_map(|e| match e {
        TsEvent::AudioConfig(c) => Some(c.clone()),
        _ => None,
    });
    let mut muxer = TsMuxer::new(video_config.clone(), audio_config.clone());
    let mut ts = Vec::new();
    muxer.write_tables(&mut ts);
    for event in &events {
        if let TsEvent::Media(unit) = event {
            muxer.write_unit(unit, &mut ts);
        }
    }
    assert_eq!(muxer.skipped_units(), 0);
    let (again, counters) = demux(&ts, 4096);
    assert_eq!(counters.errors(), 0, "{counters:?}");
    // The same configs come back (in whichever order the muxer's interleaving brings them).
    let configs: Vec<&TsEvent> = again
        .iter()
        .filter(|e| matches!(e, TsEvent::VideoConfig(_) | TsEvent::AudioConfig(_)))
        .collect();
    assert_eq!(configs.len(), 2, "{configs:?}");
    assert!(configs.contains(&&TsEvent::VideoConfig(video_config.unwrap())));
    assert!(configs.contains(&&TsEvent::AudioConfig(audio_config.unwrap())));
    for codec in [Codec::H264, Codec::Aac] {
        let before = units(&events, codec);
        let after = units(&again, codec);
        assert_eq!(before.len(), after.len(), "{codec:?}");
        let shift = match codec {
            Codec::Aac => rescale(TIMESTAMP_OFFSET, 90_000, 48_000),
            _ => TIMESTAMP_OFFSET,
        };
        for (a, b) in before.iter().zip(&after) {
            assert_eq!((b.pts - shift, b.dts - shift), (a.pts, a.dts), "{codec:?}");
            assert_eq!(a.keyframe, b.keyframe);
            assert_eq!(a.payload, b.payload);
        }
    }
}
