//! Demuxer tests on byte vectors built packet by packet here, so each defect is exactly the one
//! intended. Real encoder output is tested in ../../tests/ts_*.rs.

use super::*;
use media::{Codec, crc32_mpeg2};

// x264's SPS and PPS for testsrc2=size=1280x720:rate=30 (the vectors of media's avc tests).
const SPS_720P30: &str = "6764001facd9405005bb0110000003001000000303c0f1831960";
const PPS_720P30: &str = "68ebe3cb22c0";
// SCTE 35 (2019) §14.1's time_signal example, a splice_info_section with its CRC.
const SCTE35_TIME_SIGNAL: &str = "fc302f000000000000fffff014054800008f7feffe7369c02efe0052ccf500000000000a0008435545490000013562dba30a";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const PMT_PID: u16 = 0x1000;
const VIDEO_PID: u16 = 0x100;
const AUDIO_PID: u16 = 0x101;
const SCTE_PID: u16 = 0x102;

/// Writes transport packets with per-PID continuity counters.
#[derive(Default)]
struct Writer {
    out: Vec<u8>,
    counters: HashMap<u16, u8>,
}

impl Writer {
    fn next_counter(&mut self, pid: u16) -> u8 {
        let c = self.counters.entry(pid).or_insert(15);
        *c = (*c + 1) & 0x0f;
        *c
    }

    /// One payload (a PES or pointer_field + sections) over as many packets as it needs;
    /// the last one is padded with an adaptation field.
    fn payload(&mut self, pid: u16, data: &[u8]) {
        let mut first = true;
        let mut rest = data;
        loop {
            let counter = self.next_counter(pid);
            let take = rest.len().min(184);
            let mut packet = vec![
                0x47,
                (if first { 0x40 } else { 0 }) | (pid >> 8) as u8,
                pid as u8,
                0x10 | counter,
            ];
            if take < 184 {
                packet[3] |= 0x20;
                let af = 183 - take;
                packet.push(af as u8);
                if af > 0 {
                    packet.push(0);
                    packet.resize(packet.len() + af - 1, 0xff);
                }
            }
            packet.extend_from_slice(&rest[..take]);
            assert_eq!(packet.len(), 188);
            self.out.extend_from_slice(&packet);
            rest = &rest[take..];
            first = false;
            if rest.is_empty() {
                return;
            }
        }
    }

    fn section(&mut self, pid: u16, section_without_crc: &[u8]) {
        let mut data = vec![0];
        data.extend_from_slice(section_without_crc);
        data.extend_from_slice(&crc32_mpeg2(section_without_crc).to_be_bytes());
        self.payload(pid, &data);
    }

    fn pat(&mut self) {
        self.section(0, &[0x00, 0xb0, 0x0d, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0x00]);
    }

    /// A PMT of `version` listing `streams` (stream_type, pid).
    fn pmt(&mut self, version: u8, streams: &[(u8, u16)]) {
        let mut s = vec![
            0x02,
            0,
            0,
            0,
            1,
            0xc1 | (version << 1),
            0,
            0,
            0xe1,
            0x00,
            0xf0,
            0,
        ];
        for &(stream_type, pid) in streams {
            s.extend_from_slice(&[stream_type, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0]);
        }
        let length = s.len() - 3 + 4;
        s[1] = 0xb0 | (length >> 8) as u8;
        s[2] = length as u8;
        self.section(PMT_PID, &s);
    }

    fn tables(&mut self) {
        self.pat();
        self.pmt(0, &[(0x1b, VIDEO_PID), (0x0f, AUDIO_PID)]);
    }

    fn pes(&mut self, pid: u16, stream_id: u8, pts: Option<u64>, dts: Option<u64>, es: &[u8]) {
        let mut pes = vec![0, 0, 1, stream_id, 0, 0, 0x80];
        match (pts, dts) {
            (Some(pts), Some(dts)) => {
                pes.extend_from_slice(&[0xc0, 10]);
                pes.extend_from_slice(&timestamp_field(3, pts));
                pes.extend_from_slice(&timestamp_field(1, dts));
            }
            (Some(pts), None) => {
                pes.extend_from_slice(&[0x80, 5]);
                pes.extend_from_slice(&timestamp_field(2, pts));
            }
            _ => pes.extend_from_slice(&[0x00, 0]),
        }
        pes.extend_from_slice(es);
        if stream_id != 0xe0 {
            let length = (pes.len() - 6) as u16;
            pes[4..6].copy_from_slice(&length.to_be_bytes());
        }
        self.payload(pid, &pes);
    }
}

fn timestamp_field(prefix: u8, value: u64) -> [u8; 5] {
    [
        (prefix << 4) | (((value >> 30) as u8 & 0x07) << 1) | 1,
        (value >> 22) as u8,
        (((value >> 15) as u8) << 1) | 1,
        (value >> 7) as u8,
        ((value as u8) << 1) | 1,
    ]
}

/// An Annex B access unit: AUD, (SPS, PPS,) one slice of `size` bytes.
fn video_au(keyframe: bool, size: usize, fill: u8) -> Vec<u8> {
    let mut au = vec![0, 0, 0, 1, 0x09, 0xf0];
    if keyframe {
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(&hex(SPS_720P30));
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(&hex(PPS_720P30));
    }
    au.extend_from_slice(&[0, 0, 1, if keyframe { 0x65 } else { 0x41 }]);
    // Never zero: trailing zero bytes are not part of a NAL unit.
    au.resize(au.len() + size, fill | 0x80);
    au
}

fn adts_frame(payload_len: usize, fill: u8) -> Vec<u8> {
    let config = AacConfig::new(2, 48_000, 2).unwrap();
    let mut frame = config.adts_header(payload_len).to_vec();
    frame.resize(7 + payload_len, fill);
    frame
}

/// Tables, then `frames` video access units at 30 fps (keyframe every 30) starting at PTS
/// `start`, each followed by the audio frames due by then (48 kHz).
fn av_stream(start: u64, frames: u64) -> Vec<u8> {
    let mut w = Writer::default();
    w.tables();
    let mut audio_sent = 0u64;
    for i in 0..frames {
        let dts = (start + i * 3000) & ((1 << 33) - 1);
        let pts = (dts + 6000) & ((1 << 33) - 1);
        w.pes(
            VIDEO_PID,
            0xe0,
            Some(pts),
            Some(dts),
            &video_au(i % 30 == 0, 300 + (i as usize % 7), i as u8),
        );
        // Audio up to this video time: frames of 1920 ticks at 90 kHz.
        while audio_sent * 1920 <= i * 3000 {
            let pts = (start + audio_sent * 1920) & ((1 << 33) - 1);
            let mut es = adts_frame(200, audio_sent as u8);
            es.extend_from_slice(&adts_frame(201, audio_sent as u8 + 1));
            w.pes(AUDIO_PID, 0xc0, Some(pts), None, &es);
            audio_sent += 2;
        }
    }
    w.out
}

fn drain(demuxer: &mut TsDemuxer) -> Vec<TsEvent> {
    std::iter::from_fn(|| demuxer.poll_event()).collect()
}

fn demux_all(bytes: &[u8]) -> (Vec<TsEvent>, TsCounters) {
    let mut demuxer = TsDemuxer::new();
    demuxer.handle_bytes(bytes);
    demuxer.handle_end_of_stream();
    (drain(&mut demuxer), *demuxer.counters())
}

fn units(events: &[TsEvent], codec: Codec) -> Vec<AccessUnit> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Media(unit) if unit.codec == codec => Some(unit.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn h264_and_aac_come_out_as_access_units() {
    let (events, counters) = demux_all(&av_stream(126_000, 60));
    assert!(
        matches!(&events[0], TsEvent::Program(p) if p.video_pid == Some(VIDEO_PID) && p.audio_pid == Some(AUDIO_PID) && p.streams.len() == 2),
        "{:?}",
        events[0]
    );
    let video_config = events
        .iter()
        .position(|e| matches!(e, TsEvent::VideoConfig(c) if (c.width, c.height) == (1280, 720)));
    let first_video = events
        .iter()
        .position(|e| matches!(e, TsEvent::Media(u) if u.codec == Codec::H264));
    assert!(video_config.expect("video config") < first_video.expect("video"));
    let video = units(&events, Codec::H264);
    assert_eq!(video.len(), 60);
    for (i, unit) in video.iter().enumerate() {
        let i = i as i64;
        assert_eq!(
            (unit.dts, unit.pts),
            (126_000 + i * 3000, 132_000 + i * 3000)
        );
        assert_eq!(unit.keyframe, i % 30 == 0);
        // AUD, SPS and PPS stripped: one length-prefixed slice NAL remains.
        let slice = 1 + 300 + (i as usize % 7);
        assert_eq!(unit.payload.len(), 4 + slice, "unit {i}");
        assert_eq!(&unit.payload[..4], &(slice as u32).to_be_bytes());
        assert_eq!(unit.payload[4], if i % 30 == 0 { 0x65 } else { 0x41 });
    }
    let audio = units(&events, Codec::Aac);
    assert!(audio.len() >= 90, "{}", audio.len());
    for (i, unit) in audio.iter().enumerate() {
        // 126000 at 90 kHz is 67200 at 48 kHz.
        assert_eq!(unit.pts, 67_200 + 1024 * i as i64);
        assert_eq!(unit.payload.len(), 200 + i % 2);
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TsEvent::AudioConfig(c) if c.channels == 2))
    );
    assert_eq!(counters.errors(), 0, "{counters:?}");
    assert_eq!(counters.video_units, 60);
    assert_eq!(counters.skipped_bytes, 0);
}

#[test]
fn any_slicing_gives_the_same_events() {
    let stream = av_stream(0, 31);
    let (expected, _) = demux_all(&stream);
    for chunk in [1, 7, 187, 188, 189, 1316, 5000] {
        let mut demuxer = TsDemuxer::new();
        let mut events = Vec::new();
        for piece in stream.chunks(chunk) {
            assert_eq!(demuxer.handle_bytes(piece), piece.len());
            events.extend(drain(&mut demuxer));
        }
        demuxer.handle_end_of_stream();
        events.extend(drain(&mut demuxer));
        assert_eq!(events, expected, "chunks of {chunk}");
    }
}

#[test]
fn garbage_before_and_inside_the_stream_is_skipped() {
    let stream = av_stream(0, 31);
    let packets = stream.len() / 188;
    // Garbage full of 0x47 first (none of them 188 bytes before the stream: such a one would
    // pass for a packet), then the stream with 50 bytes of garbage after packet 20.
    let mut noisy: Vec<u8> = (0..499)
        .map(|i| if i % 3 == 0 { 0x47 } else { i as u8 })
        .collect();
    noisy.extend_from_slice(&stream[..20 * 188]);
    noisy.extend_from_slice(&[0x11; 50]);
    noisy.extend_from_slice(&stream[20 * 188..]);
    let (events, counters) = demux_all(&noisy);
    assert_eq!(counters.sync_losses, 1);
    assert_eq!(counters.skipped_bytes, 549);
    assert_eq!(counters.packets as usize, packets);
    // Packet 20 was whole: nothing lost.
    assert_eq!(units(&events, Codec::H264).len(), 31);
}

#[test]
fn continuity_errors_drop_the_pes_and_duplicates_are_ignored() {
    let stream = av_stream(0, 10);
    let (clean, _) = demux_all(&stream);
    let packets: Vec<&[u8]> = stream.chunks(188).collect();
    let video_packets: Vec<usize> = (0..packets.len())
        .filter(|&i| packets[i][1] & 0x1f == 0x01 && packets[i][2] == 0x00)
        .collect();
    // Drop the second packet of the 4th video PES (the keyframe's PES is 3 packets, the
    // others 2). A lost first packet would cost the PES before it too: an unbounded video PES
    // only ends at the next start, and a gap leaves no way to tell where it ended.
    let lost = video_packets[8];
    let mut damaged = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        if i != lost {
            damaged.extend_from_slice(p);
        }
        if i == video_packets[2] {
            damaged.extend_from_slice(p); // a duplicate
        }
    }
    let (events, counters) = demux_all(&damaged);
    assert_eq!(counters.continuity_errors, 1);
    assert_eq!(counters.duplicate_packets, 1);
    let video = units(&events, Codec::H264);
    assert_eq!(video.len(), 9);
    let clean_video = units(&clean, Codec::H264);
    assert!(!video.iter().any(|u| u.dts == clean_video[3].dts));
}

#[test]
fn pts_and_dts_unwrap_across_33_bits() {
    let start = (1u64 << 33) - 10 * 3000;
    let (events, counters) = demux_all(&av_stream(start, 30));
    let video = units(&events, Codec::H264);
    assert_eq!(video.len(), 30);
    for pair in video.windows(2) {
        assert_eq!(pair[1].dts - pair[0].dts, 3000);
    }
    assert_eq!(video[29].dts, start as i64 + 29 * 3000);
    let audio = units(&events, Codec::Aac);
    for pair in audio.windows(2) {
        assert_eq!(pair[1].pts - pair[0].pts, 1024);
    }
    assert_eq!(counters.errors(), 0);
}

#[test]
fn bad_crc_and_pmt_versions() {
    let mut w = Writer::default();
    w.pat();
    // A PMT whose CRC is wrong: ignored, counted.
    let mut bad = Writer::default();
    bad.pmt(0, &[(0x1b, VIDEO_PID)]);
    let mut packet = bad.out.clone();
    packet[180] ^= 0x01;
    w.out.extend_from_slice(&packet);
    w.counters.insert(PMT_PID, 0);
    w.pmt(0, &[(0x1b, VIDEO_PID)]);
    w.pmt(0, &[(0x1b, VIDEO_PID)]); // same version: nothing new
    w.pmt(
        1,
        &[
            (0x1b, VIDEO_PID),
            (0x24, 0x200),
            (0x86, SCTE_PID),
            (0x1b, 0x300),
        ],
    );
    let (events, counters) = demux_all(&w.out);
    assert_eq!(counters.bad_sections, 1);
    let programs: Vec<&ProgramInfo> = events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Program(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(programs.len(), 2);
    assert_eq!(programs[1].version, 1);
    assert_eq!(programs[1].streams.len(), 4);
    let unsupported: Vec<(u16, u8)> = events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Unsupported {
                pid, stream_type, ..
            } => Some((*pid, *stream_type)),
            _ => None,
        })
        .collect();
    assert_eq!(unsupported, vec![(0x200, 0x24), (0x300, 0x1b)]);
}

#[test]
fn scte35_sections_come_out_with_their_pid_and_time() {
    let section = hex(SCTE35_TIME_SIGNAL);
    assert_eq!(
        crc32_mpeg2(&section),
        0,
        "the spec's example carries its CRC"
    );
    let mut w = Writer::default();
    w.pat();
    w.pmt(0, &[(0x1b, VIDEO_PID), (0x86, SCTE_PID)]);
    w.pes(VIDEO_PID, 0xe0, Some(900_000), None, &video_au(true, 50, 1));
    let mut payload = vec![0];
    payload.extend_from_slice(&section);
    w.payload(SCTE_PID, &payload);
    // The same section with a broken CRC.
    let mut broken = payload.clone();
    broken[20] ^= 0xff;
    w.payload(SCTE_PID, &broken);
    let (events, counters) = demux_all(&w.out);
    let scte: Vec<&TsEvent> = events
        .iter()
        .filter(|e| matches!(e, TsEvent::Scte35 { .. }))
        .collect();
    assert_eq!(
        scte,
        vec![&TsEvent::Scte35 {
            pid: SCTE_PID,
            section: Bytes::from(section),
            pts_context: Some(900_000),
        }]
    );
    assert_eq!(counters.scte35_sections, 1);
    assert_eq!(counters.bad_sections, 1);
}

#[test]
fn several_access_units_in_one_pes_split_on_aud() {
    let mut w = Writer::default();
    w.tables();
    let mut es = video_au(true, 40, 1);
    es.extend_from_slice(&video_au(false, 41, 2));
    es.extend_from_slice(&video_au(false, 42, 3));
    w.pes(VIDEO_PID, 0xe0, Some(10_000), None, &es);
    // A PES without PTS continues the access unit in progress.
    w.pes(VIDEO_PID, 0xe0, Some(19_000), None, &video_au(false, 10, 4));
    w.pes(VIDEO_PID, 0xe0, None, None, &[0, 0, 1, 0x01, 5, 5]);
    let (events, _) = demux_all(&w.out);
    let video = units(&events, Codec::H264);
    let times: Vec<(i64, bool, usize)> = video
        .iter()
        .map(|u| (u.dts, u.keyframe, u.payload.len()))
        .collect();
    // 3000 ticks between AUs without their own PTS: the SPS says 30 fps.
    assert_eq!(
        times,
        vec![
            (10_000, true, 45),
            (13_000, false, 46),
            (16_000, false, 47),
            (19_000, false, 15 + 7)
        ]
    );
}

#[test]
fn media_waits_for_its_config_and_bad_pes_are_counted() {
    let mut w = Writer::default();
    w.tables();
    // Joined mid-GOP: two inter frames before the keyframe.
    w.pes(VIDEO_PID, 0xe0, Some(3000), None, &video_au(false, 10, 1));
    w.pes(VIDEO_PID, 0xe0, Some(6000), None, &video_au(false, 10, 1));
    w.pes(VIDEO_PID, 0xe0, Some(9000), None, &video_au(true, 10, 1));
    // A PES with a broken start code prefix.
    w.payload(VIDEO_PID, &[0, 0, 2, 0xe0, 0, 0, 0x80, 0, 0]);
    w.pes(VIDEO_PID, 0xe0, Some(12000), None, &video_au(false, 10, 1));
    let (events, counters) = demux_all(&w.out);
    assert_eq!(counters.units_before_config, 2);
    assert_eq!(counters.bad_pes, 1);
    let video = units(&events, Codec::H264);
    assert_eq!(
        video.iter().map(|u| u.dts).collect::<Vec<_>>(),
        vec![9000, 12000]
    );
}

#[test]
fn hevc_only_stream_gives_its_config_and_units() {
    // x265's first pictures (media crate capture), one picture per PES, no AUDs.
    let stream: &[u8] = include_bytes!("../../../media/tests/data/x265_320x240_main.hevc");
    let mut pictures: Vec<Vec<u8>> = Vec::new();
    for nal in media::annex_b::nal_units(stream) {
        let kind = media::hevc::nal_unit_type(nal).unwrap();
        // A slice with first_slice_segment_in_pic_flag starts a picture, unless the parameter
        // sets and SEI before it already opened one.
        let opened = pictures.last().is_some_and(|p| {
            media::annex_b::nal_units(p).all(|n| media::hevc::nal_unit_type(n) >= Some(32))
        });
        if pictures.is_empty() || (kind < 32 && nal[2] & 0x80 != 0 && !opened) {
            pictures.push(Vec::new());
        }
        let picture = pictures.last_mut().unwrap();
        picture.extend_from_slice(&[0, 0, 0, 1]);
        picture.extend_from_slice(nal);
    }
    assert_eq!(pictures.len(), 5);
    let mut w = Writer::default();
    w.pat();
    w.pmt(0, &[(0x24, VIDEO_PID)]);
    for (index, picture) in pictures.iter().enumerate() {
        w.pes(VIDEO_PID, 0xe0, Some(3600 * index as u64), None, picture);
    }
    let (events, counters) = demux_all(&w.out);
    assert_eq!(counters.errors(), 0, "{counters:?}");
    assert!(matches!(events[0], TsEvent::Program(_)), "{:?}", events[0]);
    let TsEvent::HevcConfig(config) = &events[1] else {
        panic!("{:?}", events[1]);
    };
    assert_eq!((config.width, config.height), (320, 240));
    assert_eq!(config.codec_string(), "hvc1.1.6.L60.90");
    let video = units(&events, Codec::H265);
    assert_eq!(video.len(), 5);
    let keyframes: Vec<bool> = video.iter().map(|u| u.keyframe).collect();
    assert_eq!(keyframes, [true, false, false, false, false]);
    assert_eq!(video[4].pts, 4 * 3600);
    assert_eq!(stream_type_name(0x24), "HEVC");
}

/// An ffmpeg mp2 frame header (48 kHz stereo 192 kbit/s: 576 bytes, 1152 samples), filled.
fn mp2_frame(fill: u8) -> Vec<u8> {
    let mut frame = vec![0xff, 0xfd, 0xa4, 0x04];
    frame.resize(576, fill);
    frame
}

#[test]
fn mpeg_audio_and_ac3_streams_come_out_as_framed_units_of_their_codec() {
    // MPEG-2 audio (0x04) is the program's audio; a second audio stream (AC-3, 0x81) is
    // reported unsupported, as a second AAC would be.
    let mut w = Writer::default();
    w.pat();
    w.pmt(0, &[(0x04, AUDIO_PID), (0x81, 0x200)]);
    // Two frames per PES at 100 ms steps of two frames (2 x 1152 samples = 48 ms: PTS
    // from the PES, the second frame counted on).
    for pes in 0..3u64 {
        let mut es = mp2_frame(pes as u8 * 2);
        es.extend(mp2_frame(pes as u8 * 2 + 1));
        w.pes(AUDIO_PID, 0xc0, Some(9000 + pes * 4320), None, &es);
    }
    let (events, counters) = demux_all(&w.out);
    let Some(TsEvent::Program(program)) = events.iter().find(|e| matches!(e, TsEvent::Program(_)))
    else {
        panic!("no program");
    };
    assert_eq!(program.audio_pid, Some(AUDIO_PID));
    assert!(events.contains(&TsEvent::Unsupported {
        pid: 0x200,
        stream_type: 0x81,
        reason: "a second stream of its kind (only the first is read)",
    }));
    assert!(events.contains(&TsEvent::AudioFormat(media::AudioFormat {
        codec: Codec::Mp2,
        sample_rate: 48_000,
        channels: 2,
    })));
    let audio = units(&events, Codec::Mp2);
    let pts: Vec<i64> = audio.iter().map(|u| u.pts).collect();
    assert_eq!(pts, (0..6).map(|i| 4800 + i * 1152).collect::<Vec<_>>());
    assert!(
        audio
            .iter()
            .enumerate()
            .all(|(i, u)| u.payload[..] == mp2_frame(i as u8)[..])
    );
    assert_eq!(counters.audio_units, 6);
    assert_eq!(counters.errors(), 0);

    // AC-3 as DVB carries it: private PES (0x06) with an AC-3 descriptor (0x6a).
    let mut w = Writer::default();
    w.pat();
    let mut pmt = vec![0x02, 0, 0, 0, 1, 0xc1, 0, 0, 0xe1, 0x01, 0xf0, 0];
    pmt.extend([0x06, 0xe1, 0x01, 0xf0, 0x03, 0x6a, 0x01, 0x00]);
    let length = pmt.len() - 3 + 4;
    pmt[2] = length as u8;
    pmt[1] = 0xb0;
    w.section(PMT_PID, &pmt);
    let mut frame = vec![0x0b, 0x77, 0xfe, 0x95, 0x14, 0x40, 0x43];
    frame.resize(768, 0x5a);
    w.pes(
        AUDIO_PID,
        0xbd,
        Some(90_000),
        None,
        &[&frame[..], &frame[..]].concat(),
    );
    let (events, _) = demux_all(&w.out);
    let audio = units(&events, Codec::Ac3);
    assert_eq!(
        audio.iter().map(|u| u.pts).collect::<Vec<_>>(),
        [48_000, 48_000 + 1536]
    );
    assert!(
        events.iter().any(
            |e| matches!(e, TsEvent::AudioFormat(f) if f.codec == Codec::Ac3 && f.channels == 2)
        )
    );
}
