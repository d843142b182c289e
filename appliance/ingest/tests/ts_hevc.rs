//! HEVC (stream_type 0x24) in MPEG-TS: the demuxer on real ffmpeg + libx265 output
//! (tests/data/ffmpeg5_mpegts_hevc_aac.ts), every timestamp and keyframe flag checked against
//! ffprobe's reading of the same file, and a round trip through our own TS muxer.
//!
//! Made with ffmpeg 5.1.9 (Debian 12, libx265 3.5):
//! `ffmpeg -f lavfi -i testsrc2=size=320x180:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000
//!  -t 1 -c:v libx265 -x265-params keyint=15:min-keyint=15:scenecut=0:bframes=2 -b:v 150k
//!  -c:a aac -b:a 48k -ac 2 -f mpegts ffmpeg5_mpegts_hevc_aac.ts`

mod ts_support;

use std::process::Command;

use corecast_ingest::ts::TsEvent;
use media::{Codec, HevcConfig, TrackConfig, hevc};
use package::ts::{TIMESTAMP_OFFSET, TsMuxer};
use ts_support::{demux, units};

const HEVC_CORPUS: &[u8] = include_bytes!("data/ffmpeg5_mpegts_hevc_aac.ts");
const HEVC_CORPUS_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ffmpeg5_mpegts_hevc_aac.ts"
);

fn hevc_config(events: &[TsEvent]) -> HevcConfig {
    let configs: Vec<&HevcConfig> = events
        .iter()
        .filter_map(|e| match e {
            TsEvent::HevcConfig(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(configs.len(), 1, "one HEVC config, reported once");
    configs[0].clone()
}

#[test]
fn ffmpeg_hevc_corpus_demuxes_like_ffprobe_reads_it() {
    let (events, counters) = demux(HEVC_CORPUS, 1316);
    assert_eq!(counters.errors(), 0, "{counters:?}");
    assert_eq!(counters.units_before_config, 0);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, TsEvent::Unsupported { .. })),
        "HEVC reported unsupported"
    );
    let config = hevc_config(&events);
    // ffprobe: hevc, Main, 320x180, 30 fps.
    assert_eq!((config.width, config.height), (320, 180));
    assert_eq!(config.general_profile_idc, 1);
    assert_eq!(config.frame_rate, Some((30, 1)));
    assert!(config.codec_string().starts_with("hvc1.1.6.L"));

    let video = units(&events, Codec::H265);
    for unit in &video {
        // No parameter sets or delimiters left in samples; every sample has a picture.
        let mut rest = &unit.payload[..];
        let mut pictures = 0;
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_be_bytes(*len) as usize;
            let kind = hevc::nal_unit_type(&tail[..len]).unwrap();
            assert!(!(32..=35).contains(&kind), "NAL type {kind} in a sample");
            pictures += usize::from(kind < 32);
            rest = &tail[len..];
        }
        assert!(pictures > 0);
    }
    let ours: Vec<(i64, i64, bool)> = video.iter().map(|u| (u.pts, u.dts, u.keyframe)).collect();
    assert_eq!(
        ours.iter().filter(|u| u.2).count(),
        2,
        "an IRAP every 15 frames"
    );

    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v"])
        .args(["-show_entries", "packet=pts,dts,flags", "-of", "csv=p=0"])
        .arg(HEVC_CORPUS_PATH)
        .output();
    let Ok(output) = output else {
        eprintln!("ffprobe not installed: timestamps not compared");
        return;
    };
    let text = String::from_utf8(output.stdout).unwrap();
    let reference: Vec<(i64, i64, bool)> = text
        .lines()
        .filter(|line| line.starts_with(|c: char| c.is_ascii_digit()))
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].starts_with('K'),
            )
        })
        .collect();
    assert_eq!(ours, reference);
}

#[test]
fn hevc_survives_our_muxer_and_demuxer() {
    let (events, _) = demux(HEVC_CORPUS, 188 * 3);
    let config = hevc_config(&events);
    let audio = events.iter().find_map(|e| match e {
        TsEvent::AudioConfig(c) => Some(c.clone()),
        _ => None,
    });
    let mut muxer = TsMuxer::with_video(Some(TrackConfig::Hevc(config.clone())), audio).unwrap();
    let mut ts = Vec::new();
    muxer.write_tables(&mut ts);
    for event in &events {
        if let TsEvent::Media(unit) = event {
            muxer.write_unit(unit, &mut ts);
        }
    }
    assert_eq!(muxer.skipped_units(), 0);
    let (again, counters) = demux(&ts, 1316);
    assert_eq!(counters.errors(), 0, "{counters:?}");
    assert_eq!(hevc_config(&again), config);
    let before = units(&events, Codec::H265);
    let after = units(&again, Codec::H265);
    assert_eq!(before.len(), after.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a.payload, b.payload);
        assert_eq!(a.keyframe, b.keyframe);
        assert_eq!(a.pts + TIMESTAMP_OFFSET, b.pts);
        assert_eq!(a.dts + TIMESTAMP_OFFSET, b.dts);
    }
}
