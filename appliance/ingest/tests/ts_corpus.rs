//! The demuxer on real ffmpeg output (tests/data/ffmpeg5_mpegts_h264_aac.ts): exact unit
//! counts, and every timestamp and keyframe flag checked against ffprobe's reading of the same
//! file when ffprobe is installed.

mod ts_support;

use std::process::Command;

use corecast_ingest::ts::TsEvent;
use media::{Codec, rescale};
use ts_support::{CORPUS, CORPUS_PATH, demux, units};

/// (pts, dts, keyframe) of every packet of one stream, as ffprobe reads the file; `None` when
/// ffprobe is not installed.
fn ffprobe_packets(select: &str) -> Option<Vec<(i64, i64, bool)>> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", select])
        .args(["-show_entries", "packet=pts,dts,flags", "-of", "csv=p=0"])
        .arg(CORPUS_PATH)
        .output()
        .ok()?;
    assert!(output.status.success(), "ffprobe failed");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    Some(
        text.lines()
            // ffprobe prints side data on lines of their own.
            .filter(|line| line.starts_with(|c: char| c.is_ascii_digit()))
            .map(|line| {
                let fields: Vec<&str> = line.split(',').collect();
                (
                    fields[0].parse().expect("pts"),
                    fields[1].parse().expect("dts"),
                    fields[2].starts_with('K'),
                )
            })
            .collect(),
    )
}

#[test]
fn ffmpeg_corpus_demuxes_exactly() {
    // Fed as UDP would bring it: 7 packets per datagram.
    let (events, counters) = demux(CORPUS, 1316);
    assert_eq!(counters.errors(), 0, "{counters:?}");
    assert_eq!(counters.skipped_bytes, 0);
    assert_eq!(counters.units_before_config, 0);
    assert_eq!(counters.packets as usize, CORPUS.len() / 188);
    let Some(TsEvent::Program(program)) = events.first() else {
        panic!("first event {:?}", events.first());
    };
    assert_eq!(
        (program.pmt_pid, program.video_pid, program.audio_pid),
        (0x1000, Some(0x100), Some(0x101))
    );
    let video_config = events.iter().find_map(|e| match e {
        TsEvent::VideoConfig(c) => Some(c.clone()),
        _ => None,
    });
    let video_config = video_config.expect("video config");
    assert_eq!((video_config.width, video_config.height), (320, 180));
    assert_eq!(video_config.frame_rate, Some((30, 1)));
    let audio_config = events.iter().find_map(|e| match e {
        TsEvent::AudioConfig(c) => Some(c.clone()),
        _ => None,
    });
    let audio_config = audio_config.expect("audio config");
    assert_eq!(
        (
            audio_config.sample_rate,
            audio_config.channels,
            audio_config.object_type
        ),
        (48_000, 2, 2)
    );

    let video = units(&events, Codec::H264);
    let audio = units(&events, Codec::Aac);
    // ffprobe -count_packets: 60 video and 95 audio packets; GOP 30 → 2 keyframes.
    assert_eq!(video.len(), 60);
    assert_eq!(audio.len(), 95);
    assert_eq!(video.iter().filter(|u| u.keyframe).count(), 2);
    for unit in &video {
        assert!(unit.dts <= unit.pts);
        // Length-prefixed NAL units only, none of them SPS, PPS or AUD.
        let mut rest = &unit.payload[..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let nal_type = rest[4] & 0x1f;
            assert!(
                !matches!(nal_type, 7..=9),
                "NAL type {nal_type} left in a sample"
            );
            rest = &rest[4 + len..];
        }
    }
    for pair in audio.windows(2) {
        assert_eq!(pair[1].pts - pair[0].pts, 1024);
    }

    match (ffprobe_packets("v:0"), ffprobe_packets("a:0")) {
        (Some(v), Some(a)) => {
            let ours: Vec<(i64, i64, bool)> =
                video.iter().map(|u| (u.pts, u.dts, u.keyframe)).collect();
            assert_eq!(ours, v, "video (pts, dts, keyframe) differ from ffprobe's");
            assert_eq!(audio.len(), a.len());
            for (unit, (pts, _, _)) in audio.iter().zip(&a) {
                let ours = rescale(unit.pts, 48_000, 90_000);
                assert!((ours - pts).abs() <= 1, "audio pts {ours} vs ffprobe {pts}");
            }
        }
        _ => eprintln!("ffprobe not installed: checked the recorded counts only"),
    }
}

/// Moves every PTS/DTS of the corpus by `offset` (mod 2^33), in place.
fn shift_timestamps(ts: &mut [u8], offset: u64) {
    for packet in ts.chunks_mut(188) {
        let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
        if packet[1] & 0x40 == 0 || !(pid == 0x100 || pid == 0x101) {
            continue;
        }
        let start = if packet[3] & 0x20 != 0 {
            5 + usize::from(packet[4])
        } else {
            4
        };
        let pes = &mut packet[start..];
        let flags = pes[7] >> 6;
        for (present, at) in [(flags & 0b10 != 0, 9), (flags == 0b11, 14)] {
            if !present {
                continue;
            }
            let b = &mut pes[at..at + 5];
            let value = (u64::from(b[0] >> 1) & 7) << 30
                | u64::from(b[1]) << 22
                | u64::from(b[2] >> 1) << 15
                | u64::from(b[3]) << 7
                | u64::from(b[4] >> 1);
            let v = (value + offset) & ((1 << 33) - 1);
            b[0] = (b[0] & 0xf1) | (((v >> 30) as u8 & 7) << 1);
            b[1] = (v >> 22) as u8;
            b[2] = (((v >> 15) as u8) << 1) | 1;
            b[3] = (v >> 7) as u8;
            b[4] = ((v as u8) << 1) | 1;
        }
    }
}

#[test]
fn corpus_moved_across_the_33_bit_wrap_stays_continuous() {
    let (events, _) = demux(CORPUS, 188 * 100);
    let video = units(&events, Codec::H264);
    let audio = units(&events, Codec::Aac);
    // Put the wrap one second into the clip.
    let offset = (1u64 << 33) - 90_000 - video[0].dts as u64;
    let mut moved = CORPUS.to_vec();
    shift_timestamps(&mut moved, offset);
    let (moved_events, counters) = demux(&moved, 188 * 100);
    assert_eq!(counters.errors(), 0);
    let moved_video = units(&moved_events, Codec::H264);
    let moved_audio = units(&moved_events, Codec::Aac);
    assert_eq!(moved_video.len(), video.len());
    assert_eq!(moved_audio.len(), audio.len());
    for (a, b) in video.iter().zip(&moved_video) {
        assert_eq!(b.dts - a.dts, offset as i64);
        assert_eq!(b.pts - a.pts, offset as i64);
        assert_eq!(a.payload, b.payload);
    }
    assert!(
        moved_video.last().unwrap().dts > 1 << 33,
        "crossed the wrap"
    );
    let audio_shift = moved_audio[0].pts - audio[0].pts;
    for (a, b) in audio.iter().zip(&moved_audio) {
        assert_eq!(b.pts - a.pts, audio_shift, "audio moves as one piece");
    }
}
