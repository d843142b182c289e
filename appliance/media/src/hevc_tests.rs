//! Checked against real x265 output (tests/data, made with ffmpeg 5.1's libx265) and against
//! what ffprobe and ffmpeg's own `hvcC` writer report for the same streams.
use super::*;
use crate::annex_b::nal_units;

const X265_MAIN: &[u8] = include_bytes!("../tests/data/x265_320x240_main.hevc");
/// The `hvcC` box body ffmpeg's mp4 muxer wrote for the same stream (`-tag:v hvc1`).
const X265_MAIN_HVCC: &[u8] = include_bytes!("../tests/data/x265_320x240_main.hvcC");
const X265_MAIN10: &[u8] = include_bytes!("../tests/data/x265_318x178_main10.hevc");

fn parameter_sets(stream: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let find = |kind| {
        nal_units(stream)
            .find(|nal| nal_unit_type(nal) == Some(kind))
            .expect("parameter set in the capture")
    };
    (find(NAL_VPS), find(NAL_SPS), find(NAL_PPS))
}

#[test]
fn x265_main_parameter_sets_match_ffprobe_and_ffmpegs_record() {
    let (vps, sps, pps) = parameter_sets(X265_MAIN);
    let config = HevcConfig::from_parameter_sets(vps, sps, pps).unwrap();
    // ffprobe -show_streams: profile=Main, level=60, 320x240, r_frame_rate=25/1.
    assert_eq!((config.width, config.height), (320, 240));
    assert_eq!(config.general_profile_idc, 1);
    assert_eq!(config.general_level_idc, 60);
    assert_eq!(config.frame_rate, Some((25, 1)));
    assert!(!config.general_tier_flag);
    // Main is compatible with Main and Main 10 (flags 1 and 2); x265 marks the stream
    // progressive and frame-only (constraint byte 0x90).
    assert_eq!(config.general_profile_compatibility_flags, 0x6000_0000);
    assert_eq!(config.codec_string(), "hvc1.1.6.L60.90");
    // ffmpeg builds its record from the same SPS: the 22 header bytes agree except the
    // segmentation / parallelism fields we leave "unknown".
    let ours = &config.record[..];
    let ffmpeg = X265_MAIN_HVCC;
    assert_eq!(ours[..13], ffmpeg[..13], "profile, tier, level fields");
    assert_eq!(
        ours[16..22],
        ffmpeg[16..22],
        "chroma, bit depth, layers, length size"
    );
    assert_eq!(ours[22], 3, "VPS, SPS and PPS arrays");
    assert_eq!(config.vps, [Bytes::copy_from_slice(vps)]);
    // Our record parses back to the same config.
    assert_eq!(HevcConfig::from_record(ours).unwrap(), config);
}

#[test]
fn ffmpegs_hvcc_with_an_sei_array_parses() {
    let config = HevcConfig::from_record(X265_MAIN_HVCC).unwrap();
    let (vps, sps, pps) = parameter_sets(X265_MAIN);
    assert_eq!(config.vps, [Bytes::copy_from_slice(vps)]);
    assert_eq!(config.sps, [Bytes::copy_from_slice(sps)]);
    assert_eq!(config.pps, [Bytes::copy_from_slice(pps)]);
    assert_eq!((config.width, config.height), (320, 240));
    assert_eq!(config.codec_string(), "hvc1.1.6.L60.90");
    assert_eq!(config.record, X265_MAIN_HVCC);
}

#[test]
fn x265_main10_with_a_conformance_window() {
    let (vps, sps, pps) = parameter_sets(X265_MAIN10);
    let config = HevcConfig::from_parameter_sets(vps, sps, pps).unwrap();
    // ffprobe: profile=Main 10, level=60, 318x178 (coded as 320x184), yuv420p10le, 30/1.
    assert_eq!((config.width, config.height), (318, 178));
    assert_eq!(config.general_profile_idc, 2);
    assert_eq!(config.general_level_idc, 60);
    assert_eq!(config.frame_rate, Some((30, 1)));
    assert_eq!(config.codec_string(), "hvc1.2.4.L60.90");
    assert_eq!(config.record[17] & 0x07, 2, "bitDepthLumaMinus8");
}

#[test]
fn nal_types_and_irap() {
    let types: Vec<u8> = nal_units(X265_MAIN).filter_map(nal_unit_type).collect();
    // VPS, SPS, PPS, SEI, then an IDR_W_RADL (19) first picture.
    assert_eq!(types[..3], [NAL_VPS, NAL_SPS, NAL_PPS]);
    let first_slice = types.iter().copied().find(|t| *t < 32).unwrap();
    assert!(is_irap(first_slice), "first picture type {first_slice}");
    assert!(!is_irap(1) && is_irap(21) && !is_irap(24));
    assert_eq!(nal_unit_type(&[0x40]), None);
}

#[test]
fn codec_string_spells_space_tier_and_trailing_zero_bytes() {
    let (vps, sps, pps) = parameter_sets(X265_MAIN);
    let mut config = HevcConfig::from_parameter_sets(vps, sps, pps).unwrap();
    config.general_profile_space = 1;
    config.general_tier_flag = true;
    config.general_level_idc = 153;
    config.general_constraint_indicator_flags = 0xb0_00_00_00_01_00;
    assert_eq!(config.codec_string(), "hvc1.A1.6.H153.B0.0.0.0.1");
    config.general_constraint_indicator_flags = 0;
    assert_eq!(config.codec_string(), "hvc1.A1.6.H153");
}

#[test]
fn bad_records_and_parameter_sets_are_errors_not_panics() {
    let mut four_byte_lengths = X265_MAIN_HVCC.to_vec();
    four_byte_lengths[21] = (four_byte_lengths[21] & 0xfc) | 1;
    let err = HevcConfig::from_record(&four_byte_lengths).unwrap_err();
    assert!(err.to_string().contains("lengthSizeMinusOne 1"), "{err}");
    for len in 0..X265_MAIN_HVCC.len() {
        assert!(
            HevcConfig::from_record(&X265_MAIN_HVCC[..len]).is_err(),
            "{len}"
        );
    }
    let (vps, sps, pps) = parameter_sets(X265_MAIN);
    assert!(HevcConfig::from_parameter_sets(sps, vps, pps).is_err());
    for len in 0..sps.len() {
        let _ = HevcConfig::from_parameter_sets(vps, &sps[..len], pps);
    }
    let mut noisy = sps.to_vec();
    for index in 2..noisy.len() {
        for flip in [0x01, 0x10, 0x80] {
            noisy[index] ^= flip;
            let _ = HevcConfig::from_parameter_sets(vps, &noisy, pps);
            noisy[index] ^= flip;
        }
    }
}

#[test]
fn an_annex_b_stream_gives_the_config_of_its_first_parameter_sets() {
    let (vps, sps, pps) = parameter_sets(X265_MAIN);
    let from_sets = HevcConfig::from_parameter_sets(vps, sps, pps).unwrap();
    let from_stream = HevcConfig::from_annex_b(X265_MAIN).unwrap();
    assert_eq!(from_stream.record, from_sets.record);
    // A stream with only a VPS names the first set that is missing.
    let error = HevcConfig::from_annex_b(&[0, 0, 0, 1, 0x40, 0x01, 0x0c]).unwrap_err();
    assert!(
        matches!(error, MediaError::MissingParameterSet("SPS")),
        "{error}"
    );
    assert_eq!(error.to_string(), "the Annex B stream holds no SPS");
}
