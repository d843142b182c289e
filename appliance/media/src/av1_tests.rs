//! Checked against real encoder output (tests/data, made with ffmpeg 5.1's libaom-av1 and
//! librav1e, written by ffmpeg's `obu` muxer with temporal delimiters) and against what ffprobe
//! and ffmpeg's own `av1C` writer report for the same streams.
use super::*;

const LIBAOM: &[u8] = include_bytes!("../tests/data/libaom_320x240.obu");
/// The `av1C` box body ffmpeg's mp4 muxer wrote for the same stream.
const LIBAOM_AV1C: &[u8] = include_bytes!("../tests/data/libaom_320x240.av1C");
const RAV1E_10BIT: &[u8] = include_bytes!("../tests/data/rav1e_200x114_10bit.obu");

/// Splits a stream at its temporal delimiters.
fn temporal_units(stream: &[u8]) -> Vec<&[u8]> {
    let starts: Vec<usize> = obus(stream)
        .map(Result::unwrap)
        .filter(|obu| obu.obu_type == OBU_TEMPORAL_DELIMITER)
        .map(|obu| obu.offset)
        .collect();
    starts
        .iter()
        .zip(starts.iter().skip(1).chain([&stream.len()]))
        .map(|(&start, &end)| &stream[start..end])
        .collect()
}

#[test]
fn libaom_sequence_header_matches_ffprobe_and_ffmpegs_record() {
    let config = Av1Config::from_sequence_header_obu(LIBAOM).unwrap();
    // ffprobe -show_streams: profile=Main, level=0, 320x240, yuv420p.
    assert_eq!((config.width, config.height), (320, 240));
    assert_eq!((config.seq_profile, config.seq_level_idx_0), (0, 0));
    assert_eq!(config.bit_depth, 8);
    assert!(config.chroma_subsampling_x && config.chroma_subsampling_y && !config.monochrome);
    // ffmpeg's dash muxer writes codecs="av01.0.00M.08" for this stream.
    assert_eq!(config.codec_string(), "av01.0.00M.08");
    assert_eq!(config.record, LIBAOM_AV1C, "the av1C ffmpeg writes");
    assert_eq!(Av1Config::from_record(LIBAOM_AV1C).unwrap(), config);
    assert_eq!(config.sequence_header, &LIBAOM_AV1C[4..]);
}

#[test]
fn rav1e_10_bit_sequence_header() {
    let config = Av1Config::from_sequence_header_obu(RAV1E_10BIT).unwrap();
    // ffprobe: profile=Main, level=31, 200x114, yuv420p10le; ffmpeg's dash muxer writes
    // codecs="av01.0.31M.10.0.110.02.02.02.0", whose short form we write.
    assert_eq!((config.width, config.height), (200, 114));
    assert_eq!(config.bit_depth, 10);
    assert_eq!(config.codec_string(), "av01.0.31M.10");
    assert_eq!(config.record[2] & 0x40, 0x40, "high_bitdepth in av1C");
    assert_eq!(Av1Config::from_record(&config.record).unwrap(), config);
}

#[test]
fn temporal_units_lose_their_delimiters_and_keep_key_frames() {
    for stream in [LIBAOM, RAV1E_10BIT] {
        let units = temporal_units(stream);
        assert!(units.len() >= 2, "{} temporal units", units.len());
        for (index, unit) in units.iter().enumerate() {
            let (sample, keyframe) = temporal_unit_payload(unit).unwrap();
            assert_eq!(keyframe, index == 0, "temporal unit {index}");
            assert_eq!(is_key_temporal_unit(&sample), keyframe);
            let types: Vec<u8> = obus(&sample).map(|obu| obu.unwrap().obu_type).collect();
            assert!(!types.contains(&OBU_TEMPORAL_DELIMITER));
            assert!(types.contains(&OBU_FRAME) || types.contains(&OBU_FRAME_HEADER));
            assert_eq!(types.contains(&OBU_SEQUENCE_HEADER), index == 0);
            // Nothing but the delimiter (2 bytes: header and a zero size) was removed.
            assert_eq!(sample.len(), unit.len() - 2);
        }
    }
}

#[test]
fn obus_without_size_fields_get_one() {
    // A temporal delimiter, then a padding-free sequence header with no size field (runs to
    // the end of the buffer), as RTP depacketizers hand them over.
    let config = Av1Config::from_sequence_header_obu(LIBAOM).unwrap();
    let header = &config.sequence_header;
    let mut unsized_obu = vec![0x12, 0x00, header[0] & !0x02];
    unsized_obu.extend_from_slice(&header[2..]);
    let (sample, keyframe) = temporal_unit_payload(&unsized_obu).unwrap();
    assert_eq!(sample, &header[..]);
    assert!(!keyframe, "no frame in it");
    assert_eq!(
        Av1Config::from_sequence_header_obu(&unsized_obu).unwrap(),
        config
    );
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let err = Av1Config::from_record(&[0x80, 0, 0, 0]).unwrap_err();
    assert!(err.to_string().contains("0x80"), "{err}");
    assert!(Av1Config::from_record(&LIBAOM_AV1C[..4]).is_err());
    assert!(Av1Config::from_sequence_header_obu(&[0x12, 0x00]).is_err());
    let err = temporal_unit_payload(&[0x32, 0x05, 1, 2]).unwrap_err();
    assert!(err.to_string().contains("offset 0"), "{err}");
    for len in 0..LIBAOM_AV1C.len() {
        let _ = Av1Config::from_record(&LIBAOM_AV1C[..len]);
    }
    let mut noisy = LIBAOM[..600].to_vec();
    for index in 0..noisy.len() {
        noisy[index] ^= 0x5a;
        let _ = Av1Config::from_sequence_header_obu(&noisy);
        let _ = temporal_unit_payload(&noisy);
        noisy[index] ^= 0x5a;
    }
}
