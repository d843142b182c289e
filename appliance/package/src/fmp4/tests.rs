use bytes::Bytes;
use media::{AacConfig, AccessUnit, AvcConfig, Codec, TrackConfig};
use mp4_atom::{Any, Decode, Ftyp, Moof, Moov, Styp};

use super::*;

fn sample(dts: i64, offset: i32, keyframe: bool, data: &'static [u8]) -> Sample {
    Sample {
        dts,
        duration: 3000,
        composition_offset: offset,
        keyframe,
        data: Bytes::from_static(data),
    }
}

/// A real AVCDecoderConfigurationRecord: x264, High profile 4:2:0 8-bit, level 3.0, 640x360
/// (from `ffmpeg -f lavfi -i testsrc2=size=640x360 -c:v libx264 out.mp4`).
const X264_AVCC_640X360: [u8; 47] = [
    0x01, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0,
    0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16,
    0x2d, 0x96, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
];

fn avc_config() -> AvcConfig {
    // Built by hand (not `AvcConfig::from_record`) so these tests do not depend on the parser.
    let record = Bytes::from_static(&X264_AVCC_640X360);
    AvcConfig {
        sps: vec![record.slice(8..34)],
        pps: vec![record.slice(37..43)],
        record,
        profile_idc: 0x64,
        constraint_flags: 0,
        level_idc: 0x1e,
        width: 640,
        height: 360,
        frame_rate: Some((30, 1)),
    }
}

fn aac_config() -> AacConfig {
    AacConfig {
        asc: Bytes::from_static(&[0x11, 0x90]), // AAC-LC, 48 kHz, 2 channels
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
    }
}

#[test]
fn media_segment_bytes_are_exact() {
    let samples = [
        sample(9000, 6000, true, &[1, 2, 3]),
        sample(12_000, 0, false, &[4]),
        sample(15_000, 3000, false, &[5]),
    ];
    let segment = media_segment(7, 2, &samples);
    let expected: Vec<u8> = [
        &[0, 0, 0, 24][..],
        b"styp",
        b"msdh",
        &[0, 0, 0, 0],
        b"msdh",
        b"cmfs",
        &[0, 0, 0, 136], // moof = 8 + mfhd 16 + traf 112
        b"moof",
        &[0, 0, 0, 16],
        b"mfhd",
        &[0, 0, 0, 0, 0, 0, 0, 7],
        &[0, 0, 0, 112], // traf = 8 + tfhd 16 + tfdt 20 + trun 68
        b"traf",
        &[0, 0, 0, 16],
        b"tfhd",
        &[0, 0x02, 0, 0, 0, 0, 0, 2], // default-base-is-moof, track 2
        &[0, 0, 0, 20],
        b"tfdt",
        &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x23, 0x28], // version 1, 9000
        &[0, 0, 0, 68],
        b"trun",
        &[0, 0, 0x0f, 0x01], // version 0; data offset, duration, size, flags, cts
        &[0, 0, 0, 3],       // sample_count
        &[0, 0, 0, 144],     // data_offset = moof 136 + mdat header 8
        &[
            0, 0, 0x0b, 0xb8, 0, 0, 0, 3, 0x02, 0, 0, 0, 0, 0, 0x17, 0x70,
        ],
        &[0, 0, 0x0b, 0xb8, 0, 0, 0, 1, 0x01, 0x01, 0, 0, 0, 0, 0, 0],
        &[
            0, 0, 0x0b, 0xb8, 0, 0, 0, 1, 0x01, 0x01, 0, 0, 0, 0, 0x0b, 0xb8,
        ],
        &[0, 0, 0, 13],
        b"mdat",
        &[1, 2, 3, 4, 5],
    ]
    .concat();
    assert_eq!(segment.as_ref(), expected.as_slice());
}

#[test]
fn data_offset_points_at_the_first_sample() {
    let samples = [
        sample(0, 0, true, b"first"),
        sample(3000, 0, false, b"second"),
    ];
    let segment = media_segment(1, 1, &samples);
    let moof_start = 24; // after styp
    let moof = Moof::decode(&mut &segment[moof_start..]).expect("moof decodes");
    let trun = &moof.traf[0].trun[0];
    let offset = usize::try_from(trun.data_offset.expect("data offset present")).unwrap();
    assert_eq!(&segment[moof_start + offset..], b"firstsecond");
}

#[test]
fn segment_round_trips_through_mp4_atom() {
    let samples = [
        sample(90_000, 6000, true, &[9; 10]),
        sample(93_000, -3000, false, &[8; 20]),
    ];
    let segment = media_segment(42, 1, &samples);
    let mut input = segment.as_ref();
    let styp = Styp::decode(&mut input).expect("styp decodes");
    assert_eq!(styp.compatible_brands, vec![b"msdh".into(), b"cmfs".into()]);
    let moof = Moof::decode(&mut input).expect("moof decodes");
    assert_eq!(moof.mfhd.sequence_number, 42);
    let traf = &moof.traf[0];
    assert_eq!(traf.tfhd.track_id, 1);
    assert_eq!(
        traf.tfdt.as_ref().map(|tfdt| tfdt.base_media_decode_time),
        Some(90_000)
    );
    let entries: Vec<_> = traf.trun[0].samples.iter().collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].size, Some(10));
    assert_eq!(entries[1].size, Some(20));
    assert_eq!(entries[0].flags, Some(SYNC_SAMPLE_FLAGS));
    assert_eq!(entries[1].flags, Some(NON_SYNC_SAMPLE_FLAGS));
    assert_eq!(entries[0].cts, Some(6000));
    assert_eq!(entries[1].cts, Some(-3000));
    let Any::Mdat(mdat) = Any::decode(&mut input).expect("mdat decodes") else {
        panic!("third box is not mdat");
    };
    assert_eq!(mdat.data, [[9; 10].as_slice(), &[8; 20]].concat());
    assert!(input.is_empty());
}

#[test]
fn trun_is_version_1_only_for_negative_offsets() {
    let trun_version = |samples: &[Sample]| {
        let segment = media_segment(1, 1, samples);
        let at = segment.windows(4).position(|w| w == b"trun").unwrap();
        (segment[at + 4], segment[at + 6] & 0x08 != 0)
    };
    assert_eq!(trun_version(&[sample(0, 0, true, &[1])]), (0, false));
    assert_eq!(trun_version(&[sample(0, 3000, true, &[1])]), (0, true));
    assert_eq!(trun_version(&[sample(0, -3000, true, &[1])]), (1, true));
}

#[test]
fn odd_input_does_not_panic() {
    let empty = media_segment(1, 1, &[]);
    let moof = Moof::decode(&mut &empty[24..]).expect("empty fragment decodes");
    assert_eq!(moof.traf[0].trun[0].samples.len(), 0);
    // A negative first dts is written as 0 rather than as a huge unsigned time.
    let negative = media_segment(1, 1, &[sample(-6000, 6000, true, &[1])]);
    let moof = Moof::decode(&mut &negative[24..]).unwrap();
    assert_eq!(
        moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time,
        0
    );
}

#[test]
fn sample_from_unit_keeps_times_and_shares_payload() {
    let payload = Bytes::from_static(&[0, 0, 0, 1, 0x65]);
    let unit = AccessUnit {
        codec: Codec::H264,
        pts: 15_000,
        dts: 9000,
        keyframe: true,
        payload: payload.clone(),
    };
    let sample = Sample::from_unit(&unit, 3000);
    assert_eq!(
        (sample.dts, sample.duration, sample.composition_offset),
        (9000, 3000, 6000)
    );
    assert!(sample.keyframe);
    assert_eq!(sample.data.as_ptr(), payload.as_ptr());
}

#[test]
fn video_init_segment_decodes_with_avcc_and_trex() {
    let init = init_segment(1, &TrackConfig::Avc(avc_config()));
    let mut input = init.as_ref();
    let ftyp = Ftyp::decode(&mut input).expect("ftyp decodes");
    assert_eq!(ftyp.major_brand, b"iso6".into());
    assert!(ftyp.compatible_brands.contains(&b"cmfc".into()));
    let moov = Moov::decode(&mut input).expect("moov decodes");
    assert!(input.is_empty());
    assert_eq!(moov.mvhd.next_track_id, 2);
    let trak = &moov.trak[0];
    assert_eq!(trak.tkhd.track_id, 1);
    assert_eq!(
        (trak.tkhd.width.integer(), trak.tkhd.height.integer()),
        (640, 360)
    );
    assert_eq!(trak.mdia.mdhd.timescale, 90_000);
    assert_eq!(trak.mdia.hdlr.handler, b"vide".into());
    assert!(trak.mdia.minf.vmhd.is_some());
    let stbl = &trak.mdia.minf.stbl;
    assert!(stbl.stts.entries.is_empty());
    let mp4_atom::Codec::Avc1(avc1) = &stbl.stsd.codecs[0] else {
        panic!("sample entry is not avc1: {:?}", stbl.stsd.codecs[0]);
    };
    assert_eq!((avc1.visual.width, avc1.visual.height), (640, 360));
    assert_eq!(avc1.avcc.avc_profile_indication, 0x64);
    assert_eq!(avc1.avcc.length_size, 4);
    assert_eq!(
        avc1.avcc.sequence_parameter_sets,
        vec![X264_AVCC_640X360[8..34].to_vec()]
    );
    assert_eq!(
        avc1.avcc.picture_parameter_sets,
        vec![X264_AVCC_640X360[37..43].to_vec()]
    );
    let trex = &moov.mvex.as_ref().expect("mvex present").trex[0];
    assert_eq!(
        (trex.track_id, trex.default_sample_description_index),
        (1, 1)
    );
}

#[test]
fn audio_init_segment_decodes_with_esds() {
    let init = init_segment(2, &TrackConfig::Aac(aac_config()));
    let mut input = init.as_ref();
    Ftyp::decode(&mut input).expect("ftyp decodes");
    let moov = Moov::decode(&mut input).expect("moov decodes");
    let trak = &moov.trak[0];
    assert_eq!(trak.tkhd.track_id, 2);
    assert_eq!(trak.mdia.mdhd.timescale, 48_000);
    assert_eq!(trak.mdia.hdlr.handler, b"soun".into());
    assert!(trak.mdia.minf.smhd.is_some());
    let mp4_atom::Codec::Mp4a(mp4a) = &trak.mdia.minf.stbl.stsd.codecs[0] else {
        panic!("sample entry is not mp4a");
    };
    assert_eq!(mp4a.audio.channel_count, 2);
    assert_eq!(mp4a.audio.sample_rate.integer(), 48_000);
    let decoder = &mp4a.esds.es_desc.dec_config;
    assert_eq!(decoder.object_type_indication, 0x40);
    assert_eq!(decoder.stream_type, 5);
    let specific = decoder
        .dec_specific
        .as_ref()
        .expect("DecoderSpecificInfo present");
    assert_eq!(
        (specific.profile, specific.freq_index, specific.chan_conf),
        (2, 3, 2)
    );
}

#[test]
fn esds_bytes_are_exact() {
    let init = init_segment(2, &TrackConfig::Aac(aac_config()));
    let at = init.windows(4).position(|w| w == b"esds").unwrap() - 4;
    let expected: Vec<u8> = [
        &[0, 0, 0, 51][..],
        b"esds",
        &[0, 0, 0, 0],
        &[0x03, 0x80, 0x80, 0x80, 34, 0, 0, 0], // ES_Descriptor, ES_ID 0, flags 0
        &[
            0x04, 0x80, 0x80, 0x80, 20, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        &[0x05, 0x80, 0x80, 0x80, 2, 0x11, 0x90], // DecoderSpecificInfo = ASC
        &[0x06, 0x80, 0x80, 0x80, 1, 0x02],       // SLConfigDescriptor predefined 2
    ]
    .concat();
    assert_eq!(&init[at..at + expected.len()], expected.as_slice());
}
