use bytes::Bytes;
use media::{AacConfig, AccessUnit, AvcConfig, Codec, TrackConfig};

use super::*;

/// PAT and PMT packets of `ffmpeg -c:v libx264 -c:a aac -f mpegts` (ffmpeg 5.1.9), up to the
/// end of the CRC; the rest of each packet is 0xff.
const FFMPEG_PAT: [u8; 21] = [
    0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0,
    0x00, 0x2a, 0xb1, 0x04, 0xb2,
];
const FFMPEG_PMT: [u8; 31] = [
    0x47, 0x50, 0x00, 0x10, 0x00, 0x02, 0xb0, 0x17, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1, 0x00, 0xf0,
    0x00, 0x1b, 0xe1, 0x00, 0xf0, 0x00, 0x0f, 0xe1, 0x01, 0xf0, 0x00, 0x2f, 0x44, 0xb9, 0x9b,
];

fn avc_config() -> AvcConfig {
    AvcConfig {
        record: Bytes::new(),
        sps: vec![Bytes::from_static(&[0x67, 0x64, 0x00, 0x1e])],
        pps: vec![Bytes::from_static(&[0x68, 0xeb, 0xe3])],
        profile_idc: 0x64,
        constraint_flags: 0,
        level_idc: 0x1e,
        width: 640,
        height: 360,
        frame_rate: None,
    }
}

fn aac_config() -> AacConfig {
    AacConfig {
        asc: Bytes::from_static(&[0x11, 0x90]),
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
    }
}

fn video_unit(pts: i64, dts: i64, keyframe: bool, payload: Vec<u8>) -> AccessUnit {
    AccessUnit {
        codec: Codec::H264,
        pts,
        dts,
        keyframe,
        payload: Bytes::from(payload),
    }
}

fn length_prefixed(nal_units: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in nal_units {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

/// One parsed transport packet.
#[derive(Debug)]
struct Packet {
    pid: u16,
    unit_start: bool,
    continuity: u8,
    adaptation: Vec<u8>,
    payload: Vec<u8>,
}

impl Packet {
    fn random_access(&self) -> bool {
        self.adaptation
            .get(1)
            .is_some_and(|flags| flags & 0x40 != 0)
    }

    fn pcr(&self) -> Option<i64> {
        let flags = *self.adaptation.get(1)?;
        (flags & 0x10 != 0).then(|| {
            let b = &self.adaptation[2..8];
            (i64::from(b[0]) << 25)
                | (i64::from(b[1]) << 17)
                | (i64::from(b[2]) << 9)
                | (i64::from(b[3]) << 1)
                | i64::from(b[4] >> 7)
        })
    }
}

fn parse_packets(ts: &[u8]) -> Vec<Packet> {
    assert_eq!(ts.len() % PACKET_SIZE, 0, "output is not whole packets");
    ts.chunks(PACKET_SIZE)
        .map(|p| {
            assert_eq!(p[0], 0x47, "sync byte");
            let control = (p[3] >> 4) & 3;
            let mut at = 4;
            let mut adaptation = Vec::new();
            if control & 2 != 0 {
                let len = usize::from(p[4]);
                adaptation = p[4..5 + len].to_vec();
                at = 5 + len;
            }
            Packet {
                pid: u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]),
                unit_start: p[1] & 0x40 != 0,
                continuity: p[3] & 0x0f,
                adaptation,
                payload: if control & 1 != 0 {
                    p[at..].to_vec()
                } else {
                    Vec::new()
                },
            }
        })
        .collect()
}

/// The PES packets of one PID, reassembled.
fn pes_packets(packets: &[Packet], pid: u16) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for packet in packets.iter().filter(|p| p.pid == pid) {
        if packet.unit_start {
            out.push(Vec::new());
        }
        out.last_mut()
            .expect("PES starts with a unit start")
            .extend(&packet.payload);
    }
    out
}

fn read_timestamp(field: &[u8]) -> i64 {
    (i64::from(field[0] >> 1) & 7) << 30
        | i64::from(field[1]) << 22
        | i64::from(field[2] >> 1) << 15
        | i64::from(field[3]) << 7
        | i64::from(field[4] >> 1)
}

/// (pts, dts) of a PES packet.
fn pes_times(pes: &[u8]) -> (i64, Option<i64>) {
    let pts = read_timestamp(&pes[9..14]);
    let dts = (pes[7] & 0x40 != 0).then(|| read_timestamp(&pes[14..19]));
    (pts, dts)
}

fn pes_body(pes: &[u8]) -> &[u8] {
    &pes[9 + usize::from(pes[8])..]
}

#[test]
fn crc32_mpeg2_matches_the_catalogue_check_value() {
    // CRC-32/MPEG-2 check value from the CRC RevEng catalogue.
    assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    assert_eq!(
        crc32_mpeg2(&FFMPEG_PAT[5..]),
        0,
        "a section with its CRC checks to 0"
    );
}

#[test]
fn tables_match_ffmpeg_byte_for_byte() {
    let mut muxer = TsMuxer::new(Some(avc_config()), Some(aac_config()));
    let mut out = Vec::new();
    muxer.write_tables(&mut out);
    assert_eq!(out.len(), 2 * PACKET_SIZE);
    let (pat, pmt) = out.split_at(PACKET_SIZE);
    assert_eq!(&pat[..FFMPEG_PAT.len()], FFMPEG_PAT);
    assert!(pat[FFMPEG_PAT.len()..].iter().all(|&b| b == 0xff));
    assert_eq!(&pmt[..FFMPEG_PMT.len()], FFMPEG_PMT);
    assert!(pmt[FFMPEG_PMT.len()..].iter().all(|&b| b == 0xff));
}

#[test]
fn audio_only_pmt_puts_pcr_on_the_audio_pid() {
    let mut muxer = TsMuxer::new(None, Some(aac_config()));
    let mut out = Vec::new();
    muxer.write_tables(&mut out);
    let pmt = &out[PACKET_SIZE + 5..];
    let section_len = usize::from(pmt[2]);
    assert_eq!(section_len, 9 + 5 + 4);
    assert_eq!(&pmt[8..10], &[0xe1, 0x01], "PCR_PID 0x101");
    assert_eq!(&pmt[12..17], &[0x0f, 0xe1, 0x01, 0xf0, 0x00]);
    assert_eq!(crc32_mpeg2(&pmt[..3 + section_len]), 0);
}

#[test]
fn continuity_counters_run_on_across_segments() {
    let mut muxer = TsMuxer::new(Some(avc_config()), None);
    let mut out = Vec::new();
    for segment in 0..20 {
        muxer.write_tables(&mut out);
        let nal = vec![0x41; 100 + segment * 97];
        let unit = video_unit(
            segment as i64 * 3000,
            segment as i64 * 3000,
            segment == 0,
            length_prefixed(&[&nal]),
        );
        muxer.write_unit(&unit, &mut out);
    }
    let packets = parse_packets(&out);
    for pid in [0, PMT_PID, VIDEO_PID] {
        let counters: Vec<u8> = packets
            .iter()
            .filter(|p| p.pid == pid)
            .map(|p| p.continuity)
            .collect();
        assert!(counters.len() >= 20);
        for (index, counter) in counters.iter().enumerate() {
            assert_eq!(
                usize::from(*counter),
                index % 16,
                "PID {pid:#x} packet {index}"
            );
        }
    }
}

#[test]
fn pes_header_encodes_pts_and_dts_with_the_offset() {
    let mut muxer = TsMuxer::new(Some(avc_config()), None);
    let mut out = Vec::new();
    muxer.write_unit(
        &video_unit(3003, 0, false, length_prefixed(&[&[0x41, 1]])),
        &mut out,
    );
    let pes = &pes_packets(&parse_packets(&out), VIDEO_PID)[0];
    assert_eq!(
        &pes[..19],
        &[
            0, 0, 1, 0xe0, 0, 0, // start code, video stream id, unbounded length
            0x84, 0xc0, 10, // data_alignment_indicator; PTS and DTS
            0x31, 0x00, 0x05, 0x03, 0xa7, // PTS 66003 = 3003 + 63000
            0x11, 0x00, 0x03, 0xec, 0x31, // DTS 63000 = 0 + 63000
        ]
    );
    // pts == dts: PTS only.
    let mut out = Vec::new();
    muxer.write_unit(
        &video_unit(3003, 3003, false, length_prefixed(&[&[0x41, 1]])),
        &mut out,
    );
    let pes = &pes_packets(&parse_packets(&out), VIDEO_PID)[0];
    assert_eq!(&pes[6..14], &[0x84, 0x80, 5, 0x21, 0x00, 0x05, 0x03, 0xa7]);
}

#[test]
fn timestamps_wrap_at_2_pow_33() {
    let mut muxer = TsMuxer::new(Some(avc_config()), None);
    let mut out = Vec::new();
    let time = TIMESTAMP_MODULUS * 3 + 1000 - TIMESTAMP_OFFSET;
    muxer.write_unit(
        &video_unit(time + 3000, time, false, length_prefixed(&[&[0x41]])),
        &mut out,
    );
    let packets = parse_packets(&out);
    let pes = &pes_packets(&packets, VIDEO_PID)[0];
    assert_eq!(pes_times(pes), (4000, Some(1000)));
    assert_eq!(packets[0].pcr(), Some(time % TIMESTAMP_MODULUS));
}

#[test]
fn keyframe_gets_aud_parameter_sets_random_access_and_pcr() {
    let mut muxer = TsMuxer::new(Some(avc_config()), Some(aac_config()));
    let mut out = Vec::new();
    // An in-band AUD in the payload is dropped: the muxer writes its own.
    let payload = length_prefixed(&[&[0x09, 0xf0], &[0x06, 0x05, 0x01], &[0x65, 0x88, 0x84]]);
    muxer.write_unit(&video_unit(6000, 0, true, payload), &mut out);
    let packets = parse_packets(&out);
    assert!(packets[0].random_access());
    assert_eq!(packets[0].pcr(), Some(0));
    let pes = &pes_packets(&packets, VIDEO_PID)[0];
    assert_eq!(
        pes_body(pes),
        [
            &[0, 0, 0, 1, 0x09, 0xf0][..],
            &[0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1e],
            &[0, 0, 0, 1, 0x68, 0xeb, 0xe3],
            &[0, 0, 0, 1, 0x06, 0x05, 0x01],
            &[0, 0, 0, 1, 0x65, 0x88, 0x84],
        ]
        .concat()
    );

    // A non-keyframe: AUD, no parameter sets, no random access; PCR still on the video PID.
    let mut out = Vec::new();
    muxer.write_unit(
        &video_unit(3000, 3000, false, length_prefixed(&[&[0x41, 0x9a]])),
        &mut out,
    );
    let packets = parse_packets(&out);
    assert!(!packets[0].random_access());
    assert_eq!(packets[0].pcr(), Some(3000));
    let pes = &pes_packets(&packets, VIDEO_PID)[0];
    assert_eq!(
        pes_body(pes),
        [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x41, 0x9a]
    );
}

#[test]
fn in_band_parameter_sets_are_not_duplicated() {
    let mut muxer = TsMuxer::new(Some(avc_config()), None);
    let mut out = Vec::new();
    let payload = length_prefixed(&[&[0x67, 0x42], &[0x68, 0xce], &[0x65, 0x88]]);
    muxer.write_unit(&video_unit(0, 0, true, payload), &mut out);
    let pes = &pes_packets(&parse_packets(&out), VIDEO_PID)[0];
    assert_eq!(
        pes_body(pes),
        [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1,
            0x65, 0x88
        ]
    );
}

#[test]
fn every_size_fills_whole_packets_and_reassembles() {
    let mut muxer = TsMuxer::new(Some(avc_config()), None);
    // PES sizes around the packet boundaries: header 14 + AUD 6 + 4 + n. Stuffing of 1 and 2
    // bytes are the two special cases of the adaptation field.
    for n in (150..200).chain(330..380).chain([1, 2, 3, 5000]) {
        let nal: Vec<u8> = (0..n).map(|i| 0x41 ^ (i as u8)).collect();
        let mut out = Vec::new();
        muxer.write_unit(&video_unit(0, 0, false, length_prefixed(&[&nal])), &mut out);
        let packets = parse_packets(&out);
        let pes = &pes_packets(&packets, VIDEO_PID)[0];
        let body = pes_body(pes);
        assert_eq!(
            &body[..10],
            &[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1],
            "size {n}"
        );
        assert_eq!(&body[10..], nal.as_slice(), "size {n}");
        // Stuffing lives only in the last packet's adaptation field.
        for packet in &packets[..packets.len() - 1] {
            assert!(packet.adaptation.len() <= 8);
        }
    }
}

#[test]
fn pcr_never_exceeds_dts() {
    let mut muxer = TsMuxer::new(Some(avc_config()), Some(aac_config()));
    let mut out = Vec::new();
    // A B-frame pattern starting with negative dts, as ffmpeg's mp4 output has.
    let frames = [
        (0, -6000),
        (9000, -3000),
        (3000, 0),
        (6000, 3000),
        (18_000, 6000),
    ];
    for (index, (pts, dts)) in frames.into_iter().enumerate() {
        muxer.write_unit(
            &video_unit(pts, dts, index == 0, length_prefixed(&[&[0x41; 400]])),
            &mut out,
        );
    }
    let packets = parse_packets(&out);
    let pes = pes_packets(&packets, VIDEO_PID);
    let pcrs: Vec<i64> = packets.iter().filter_map(Packet::pcr).collect();
    assert_eq!(pcrs.len(), frames.len());
    for (pcr, pes) in pcrs.iter().zip(&pes) {
        let (pts, dts) = pes_times(pes);
        let dts = dts.unwrap_or(pts);
        assert!(*pcr <= dts, "PCR {pcr} after DTS {dts}");
        assert!(dts - pcr <= TIMESTAMP_OFFSET + 6000);
    }
    assert!(
        pcrs.windows(2).all(|w| w[0] <= w[1]),
        "PCR goes back: {pcrs:?}"
    );
}

#[test]
fn audio_gets_adts_and_rescaled_pts() {
    let mut muxer = TsMuxer::new(Some(avc_config()), Some(aac_config()));
    let mut out = Vec::new();
    let frame = vec![0x21; 300];
    let unit = AccessUnit {
        codec: Codec::Aac,
        pts: 48_000 + 1024,
        dts: 48_000 + 1024,
        keyframe: true,
        payload: Bytes::from(frame.clone()),
    };
    muxer.write_unit(&unit, &mut out);
    let packets = parse_packets(&out);
    assert!(packets.iter().all(|p| p.pid == AUDIO_PID));
    assert_eq!(packets[0].pcr(), None, "PCR is on the video PID");
    let pes = &pes_packets(&packets, AUDIO_PID)[0];
    assert_eq!(&pes[..4], &[0, 0, 1, 0xc0]);
    let length = usize::from(u16::from_be_bytes([pes[4], pes[5]]));
    assert_eq!(length, 3 + 5 + 7 + 300);
    assert_eq!(pes.len(), 6 + length);
    assert_eq!(pes_times(pes), (90_000 + 1920 + TIMESTAMP_OFFSET, None));
    let body = pes_body(pes);
    assert_eq!(body[..7], aac_config().adts_header(300));
    assert_eq!(&body[7..], frame.as_slice());
}

#[test]
fn audio_only_carries_pcr_on_audio() {
    let mut muxer = TsMuxer::new(None, Some(aac_config()));
    let mut out = Vec::new();
    let unit = AccessUnit {
        codec: Codec::Aac,
        pts: 4800,
        dts: 4800,
        keyframe: true,
        payload: Bytes::from_static(&[1, 2, 3]),
    };
    muxer.write_unit(&unit, &mut out);
    let packets = parse_packets(&out);
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0].pcr(), Some(9000));
    assert_eq!(pes_times(&packets[0].payload).0, 9000 + TIMESTAMP_OFFSET);
}

#[test]
fn malformed_payloads_are_counted_not_panicked_on() {
    let mut muxer = TsMuxer::new(Some(avc_config()), None);
    let mut out = Vec::new();
    // Valid NAL, then a zero length (skipped), then a length past the end (stops the walk).
    let mut payload = length_prefixed(&[&[0x41, 0x01]]);
    payload.extend_from_slice(&[0, 0, 0, 0]);
    payload.extend_from_slice(&length_prefixed(&[&[0x41, 0x02]]));
    payload.extend_from_slice(&[0, 0, 1, 0, 0x41]);
    muxer.write_unit(&video_unit(0, 0, false, payload), &mut out);
    assert_eq!(muxer.malformed_nal_units(), 2);
    let pes = &pes_packets(&parse_packets(&out), VIDEO_PID)[0];
    assert_eq!(
        pes_body(pes),
        [
            0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x41, 1, 0, 0, 0, 1, 0x41, 2
        ]
    );

    // Nothing valid: the unit is skipped.
    let before = out.len();
    muxer.write_unit(&video_unit(0, 0, true, vec![0, 0]), &mut out);
    assert_eq!(out.len(), before);
    assert_eq!((muxer.malformed_nal_units(), muxer.skipped_units()), (3, 1));

    // Audio with no audio track, and an AAC frame too long for ADTS.
    let audio = |len: usize| AccessUnit {
        codec: Codec::Aac,
        pts: 0,
        dts: 0,
        keyframe: true,
        payload: Bytes::from(vec![0; len]),
    };
    muxer.write_unit(&audio(10), &mut out);
    let mut with_audio = TsMuxer::new(None, Some(aac_config()));
    with_audio.write_unit(&audio(9000), &mut out);
    assert_eq!(out.len(), before);
    assert_eq!((muxer.skipped_units(), with_audio.skipped_units()), (2, 1));
}

#[test]
fn random_payloads_never_panic_and_stay_packet_aligned() {
    let mut muxer = TsMuxer::new(Some(avc_config()), Some(aac_config()));
    let mut out = Vec::new();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u32
    };
    for _ in 0..500 {
        let len = (next() % 700) as usize;
        let mut payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Sometimes make the first length prefix plausible.
        if len > 8 && next() % 2 == 0 {
            payload[..4].copy_from_slice(&(next() % len as u32).to_be_bytes());
        }
        let time = i64::from(next()) - (1 << 31);
        let codec = if next() % 3 == 0 {
            Codec::Aac
        } else {
            Codec::H264
        };
        let unit = AccessUnit {
            codec,
            pts: time,
            dts: time,
            keyframe: next() % 2 == 0,
            payload: Bytes::from(payload),
        };
        muxer.write_unit(&unit, &mut out);
    }
    assert_eq!(out.len() % PACKET_SIZE, 0);
    parse_packets(&out);
}

#[test]
fn changed_tracks_advance_the_pmt_version_and_keep_counters() {
    let mut muxer = TsMuxer::new(Some(avc_config()), None);
    let mut out = Vec::new();
    muxer.write_tables(&mut out);
    muxer.set_tracks(Some(avc_config()), None); // same tracks: same version
    muxer.write_tables(&mut out);
    muxer.set_tracks(Some(avc_config()), Some(aac_config()));
    muxer.write_tables(&mut out);
    let packets = parse_packets(&out);
    let pmts: Vec<&Packet> = packets.iter().filter(|p| p.pid == PMT_PID).collect();
    let versions: Vec<u8> = pmts.iter().map(|p| (p.payload[6] >> 1) & 0x1f).collect();
    assert_eq!(versions, [0, 0, 1]);
    assert_eq!(
        pmts.iter().map(|p| p.continuity).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let section = &pmts[2].payload[1..];
    assert_eq!(section[2], 23, "two streams now");
    assert_eq!(crc32_mpeg2(&section[..26]), 0);
}

/// An HEVC config with stand-in parameter sets (the muxer copies them, it does not parse them).
fn hevc_config() -> media::HevcConfig {
    media::HevcConfig {
        record: Bytes::new(),
        vps: vec![Bytes::from_static(&[0x40, 0x01, 0x0c])],
        sps: vec![Bytes::from_static(&[0x42, 0x01, 0x01])],
        pps: vec![Bytes::from_static(&[0x44, 0x01, 0xc1])],
        general_profile_space: 0,
        general_tier_flag: false,
        general_profile_idc: 1,
        general_profile_compatibility_flags: 0x6000_0000,
        general_constraint_indicator_flags: 0x9000_0000_0000,
        general_level_idc: 60,
        width: 320,
        height: 240,
        frame_rate: None,
    }
}

#[test]
fn hevc_gets_stream_type_0x24_aud_and_parameter_sets_before_irap() {
    let config = TrackConfig::Hevc(hevc_config());
    let mut muxer = TsMuxer::with_video(Some(config), Some(aac_config())).unwrap();
    let mut out = Vec::new();
    muxer.write_tables(&mut out);
    let pmt = &out[PACKET_SIZE + 5..];
    assert_eq!(pmt[12..15], [0x24, 0xe1, 0x00], "HEVC on the video PID");

    // An IDR_W_RADL (type 19) behind an in-band AUD (type 35), which is replaced by ours.
    let irap = length_prefixed(&[&[0x46, 0x01, 0x50], &[0x26, 0x01, 0xaf]]);
    let mut unit = video_unit(3600, 0, true, irap);
    unit.codec = Codec::H265;
    let mut out = Vec::new();
    muxer.write_unit(&unit, &mut out);
    let packets = parse_packets(&out);
    assert!(packets[0].random_access());
    let pes = &pes_packets(&packets, VIDEO_PID)[0];
    assert_eq!(
        pes_body(pes),
        [
            &[0, 0, 0, 1, 0x46, 0x01, 0x50][..],
            &[0, 0, 0, 1, 0x40, 0x01, 0x0c],
            &[0, 0, 0, 1, 0x42, 0x01, 0x01],
            &[0, 0, 0, 1, 0x44, 0x01, 0xc1],
            &[0, 0, 0, 1, 0x26, 0x01, 0xaf],
        ]
        .concat()
    );

    // A trailing picture (type 1): no parameter sets; an H.264 unit is not written into an
    // HEVC track.
    let mut unit = video_unit(7200, 3600, false, length_prefixed(&[&[0x02, 0x01, 0xd0]]));
    unit.codec = Codec::H265;
    let mut out = Vec::new();
    muxer.write_unit(&unit, &mut out);
    let pes = &pes_packets(&parse_packets(&out), VIDEO_PID)[0];
    assert_eq!(
        pes_body(pes),
        [0, 0, 0, 1, 0x46, 0x01, 0x50, 0, 0, 0, 1, 0x02, 0x01, 0xd0]
    );
    unit.codec = Codec::H264;
    muxer.write_unit(&unit, &mut out);
    assert_eq!(muxer.skipped_units(), 1);
}

#[test]
fn av1_is_refused_and_a_codec_change_advances_the_pmt_version() {
    let av1 = media::Av1Config {
        record: Bytes::new(),
        sequence_header: Bytes::new(),
        seq_profile: 0,
        seq_level_idx_0: 0,
        seq_tier_0: false,
        bit_depth: 8,
        monochrome: false,
        chroma_subsampling_x: true,
        chroma_subsampling_y: true,
        chroma_sample_position: 0,
        width: 192,
        height: 108,
    };
    assert!(TsMuxer::with_video(Some(TrackConfig::Av1(av1.clone())), None).is_none());
    assert!(TsMuxer::with_video(Some(TrackConfig::Aac(aac_config())), None).is_none());

    let mut muxer = TsMuxer::new(Some(avc_config()), Some(aac_config()));
    let version = |muxer: &mut TsMuxer| {
        let mut out = Vec::new();
        muxer.write_tables(&mut out);
        (out[PACKET_SIZE + 5 + 5] >> 1) & 0x1f
    };
    assert_eq!(version(&mut muxer), 0);
    assert!(!muxer.set_video_tracks(Some(TrackConfig::Av1(av1)), None));
    assert_eq!(version(&mut muxer), 0, "a refused change changes nothing");
    assert!(muxer.set_video_tracks(Some(TrackConfig::Hevc(hevc_config())), Some(aac_config())));
    assert_eq!(version(&mut muxer), 1);
    assert!(muxer.set_video_tracks(Some(TrackConfig::Hevc(hevc_config())), Some(aac_config())));
    assert_eq!(version(&mut muxer), 1, "same codecs, same version");
}
