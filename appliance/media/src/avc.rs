//! H.264 codec parameters: the AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1) and
//! what we read from the sequence parameter set (ITU-T H.264 §7.3.2.1.1, VUI in §E.1.1).
//!
//! The SPS reader is our own small exp-Golomb reader rather than h264-reader's: we need only the
//! fields up to the VUI timing info, and we want to take streams that h264-reader refuses (its
//! SPS parser rejects a picture larger than the level's MaxFS and checks the RBSP trailing bits;
//! both happen with cameras we still want to ingest). h264-reader serves as the reference
//! parser in the tests.

use bytes::Bytes;

use crate::MediaError;
use crate::bits::{BitReader, BitResult, gcd, remove_emulation_prevention};

/// Parameters of an H.264 track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// The AVCDecoderConfigurationRecord, as it goes into an `avcC` box (always with
    /// `lengthSizeMinusOne = 3`, matching [`crate::AccessUnit`] payloads).
    pub record: Bytes,
    /// Sequence parameter set NAL units (with their NAL header byte, no start code).
    pub sps: Vec<Bytes>,
    /// Picture parameter set NAL units (with their NAL header byte, no start code).
    pub pps: Vec<Bytes>,
    pub profile_idc: u8,
    /// The constraint_set flags byte (the "CC" of `avc1.PPCCLL`).
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// Display size in pixels, after cropping.
    pub width: u32,
    pub height: u32,
    /// Frames per second as (numerator, denominator) when the SPS's VUI timing says so.
    pub frame_rate: Option<(u32, u32)>,
}

/// NAL unit types (H.264 Table 7-1) that this module looks at.
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

/// Largest picture side we accept, in macroblocks (16384 pixels): far above any level's limit,
/// low enough that sizes never overflow.
const MAX_SIDE_MBS: u32 = 1024;

/// Profiles whose SPS carries chroma_format_idc, bit depths and scaling lists (§7.3.2.1.1).
fn has_chroma_info(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Profiles whose AVCDecoderConfigurationRecord carries the chroma/bit-depth trailer
/// (ISO/IEC 14496-15 §5.3.3.1.2).
fn record_has_trailer(profile_idc: u8) -> bool {
    matches!(profile_idc, 100 | 110 | 122 | 144)
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord (the body of an FLV AVC sequence header or an
    /// `avcC` box). Records with 1- or 2-byte NAL lengths are rejected: every producer we take
    /// (RTMP encoders, x264) uses 4.
    pub fn from_record(record: &[u8]) -> Result<Self, MediaError> {
        let bad = |what: String| MediaError::AvcRecord(what);
        let [version, _, _, _, length_size, sps_count, rest @ ..] = record else {
            return Err(bad(format!(
                "{} bytes, shorter than the 6-byte header",
                record.len()
            )));
        };
        if *version != 1 {
            return Err(bad(format!("configurationVersion {version}, expected 1")));
        }
        let length_size_minus_one = length_size & 0x03;
        if length_size_minus_one != 3 {
            return Err(bad(format!(
                "lengthSizeMinusOne {length_size_minus_one}: only 4-byte NAL lengths are supported"
            )));
        }
        let mut offset = 6;
        let mut rest = rest;
        let sps = read_parameter_sets(&mut rest, &mut offset, sps_count & 0x1f, "SPS")?;
        let [pps_count, tail @ ..] = rest else {
            return Err(bad(format!(
                "ends at offset {offset} before numOfPictureParameterSets"
            )));
        };
        offset += 1;
        let mut rest = tail;
        let pps = read_parameter_sets(&mut rest, &mut offset, *pps_count, "PPS")?;
        let first_sps = sps
            .first()
            .ok_or_else(|| bad("no sequence parameter set".into()))?;
        if pps.is_empty() {
            return Err(bad("no picture parameter set".into()));
        }
        let info = Sps::parse(first_sps)?;
        Ok(Self::from_parts(
            Bytes::copy_from_slice(record),
            sps,
            pps,
            &info,
        ))
    }

    /// Builds the config from the first SPS and PPS of an Annex B stream (an encoder's global
    /// header), writing the record.
    pub fn from_annex_b(stream: &[u8]) -> Result<Self, MediaError> {
        let (mut sps, mut pps) = (None, None);
        for nal in crate::annex_b::nal_units(stream) {
            match nal.first().map(|b| b & 0x1f) {
                Some(NAL_SPS) if sps.is_none() => sps = Some(nal),
                Some(NAL_PPS) if pps.is_none() => pps = Some(nal),
                _ => {}
            }
        }
        let sps = sps.ok_or(MediaError::MissingParameterSet("SPS"))?;
        let pps = pps.ok_or(MediaError::MissingParameterSet("PPS"))?;
        Self::from_parameter_sets(sps, pps)
    }

    /// Builds the config from raw parameter sets (e.g. what x264 emits), writing the record.
    /// A leading Annex B start code on either is tolerated and dropped.
    pub fn from_parameter_sets(sps: &[u8], pps: &[u8]) -> Result<Self, MediaError> {
        let sps = strip_start_code(sps);
        let pps = strip_start_code(pps);
        if sps.len() < 4 || sps[0] & 0x1f != NAL_SPS {
            return Err(MediaError::Sps(format!(
                "not an SPS NAL unit: {} bytes starting {:02x?}",
                sps.len(),
                &sps[..sps.len().min(4)]
            )));
        }
        if pps.len() < 2 || pps[0] & 0x1f != NAL_PPS {
            return Err(MediaError::AvcRecord(format!(
                "not a PPS NAL unit: {} bytes starting {:02x?}",
                pps.len(),
                &pps[..pps.len().min(4)]
            )));
        }
        let too_long = |what: &str, len: usize| {
            MediaError::AvcRecord(format!(
                "{what} of {len} bytes does not fit a 16-bit length"
            ))
        };
        let sps_len = u16::try_from(sps.len()).map_err(|_| too_long("SPS", sps.len()))?;
        let pps_len = u16::try_from(pps.len()).map_err(|_| too_long("PPS", pps.len()))?;
        let info = Sps::parse(sps)?;

        let mut record = Vec::with_capacity(11 + sps.len() + pps.len() + 4);
        record.extend_from_slice(&[1, sps[1], sps[2], sps[3], 0xfc | 3, 0xe0 | 1]);
        record.extend_from_slice(&sps_len.to_be_bytes());
        record.extend_from_slice(sps);
        record.push(1);
        record.extend_from_slice(&pps_len.to_be_bytes());
        record.extend_from_slice(pps);
        if record_has_trailer(info.profile_idc) {
            record.extend_from_slice(&[
                0xfc | info.chroma_format_idc,
                0xf8 | info.bit_depth_luma_minus8,
                0xf8 | info.bit_depth_chroma_minus8,
                0, // numOfSequenceParameterSetExt
            ]);
        }
        Ok(Self::from_parts(
            Bytes::from(record),
            vec![Bytes::copy_from_slice(sps)],
            vec![Bytes::copy_from_slice(pps)],
            &info,
        ))
    }

    fn from_parts(record: Bytes, sps: Vec<Bytes>, pps: Vec<Bytes>, info: &Sps) -> Self {
        AvcConfig {
            record,
            sps,
            pps,
            profile_idc: info.profile_idc,
            constraint_flags: info.constraint_flags,
            level_idc: info.level_idc,
            width: info.width,
            height: info.height,
            frame_rate: info.frame_rate,
        }
    }

    /// `avc1.PPCCLL`, e.g. `avc1.64001f` for High profile, level 3.1.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}

fn strip_start_code(nal: &[u8]) -> &[u8] {
    nal.strip_prefix(&[0, 0, 0, 1])
        .or_else(|| nal.strip_prefix(&[0, 0, 1]))
        .unwrap_or(nal)
}

/// Reads `count` 16-bit-length-prefixed NAL units from the front of `rest`.
fn read_parameter_sets(
    rest: &mut &[u8],
    offset: &mut usize,
    count: u8,
    what: &str,
) -> Result<Vec<Bytes>, MediaError> {
    let mut sets = Vec::with_capacity(usize::from(count));
    for index in 0..count {
        let current: &[u8] = rest;
        let [hi, lo, tail @ ..] = current else {
            return Err(MediaError::AvcRecord(format!(
                "{what} #{index}: length missing at offset {offset}"
            )));
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let nal = tail.get(..len).ok_or_else(|| {
            MediaError::AvcRecord(format!(
                "{what} #{index} at offset {}: length {len} but {} bytes left",
                *offset + 2,
                tail.len()
            ))
        })?;
        if nal.is_empty() {
            return Err(MediaError::AvcRecord(format!(
                "{what} #{index} at offset {offset} is empty"
            )));
        }
        sets.push(Bytes::copy_from_slice(nal));
        *offset += 2 + len;
        *rest = &tail[len..];
    }
    Ok(sets)
}

/// What we use from a sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sps {
    profile_idc: u8,
    constraint_flags: u8,
    level_idc: u8,
    chroma_format_idc: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
    width: u32,
    height: u32,
    frame_rate: Option<(u32, u32)>,
}

impl Sps {
    /// Parses an SPS NAL unit (header byte included, emulation prevention bytes present).
    fn parse(nal: &[u8]) -> Result<Sps, MediaError> {
        let [header, payload @ ..] = nal else {
            return Err(MediaError::Sps("empty NAL unit".into()));
        };
        if header & 0x1f != NAL_SPS {
            return Err(MediaError::Sps(format!(
                "NAL unit type {} where an SPS (7) was expected",
                header & 0x1f
            )));
        }
        let rbsp = remove_emulation_prevention(payload);
        let mut r = BitReader::new(&rbsp);
        Self::read(&mut r).map_err(MediaError::Sps)
    }

    fn read(r: &mut BitReader<'_>) -> BitResult<Sps> {
        let profile_idc = r.bits32(8, "profile_idc")? as u8;
        let constraint_flags = r.bits32(8, "constraint_set flags")? as u8;
        let level_idc = r.bits32(8, "level_idc")? as u8;
        r.ue_max("seq_parameter_set_id", 31)?;

        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        let mut bit_depth_luma_minus8 = 0;
        let mut bit_depth_chroma_minus8 = 0;
        if has_chroma_info(profile_idc) {
            chroma_format_idc = r.ue_max("chroma_format_idc", 3)? as u8;
            if chroma_format_idc == 3 {
                separate_colour_plane = r.flag("separate_colour_plane_flag")?;
            }
            bit_depth_luma_minus8 = r.ue_max("bit_depth_luma_minus8", 6)? as u8;
            bit_depth_chroma_minus8 = r.ue_max("bit_depth_chroma_minus8", 6)? as u8;
            r.flag("qpprime_y_zero_transform_bypass_flag")?;
            if r.flag("seq_scaling_matrix_present_flag")? {
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.flag("seq_scaling_list_present_flag")? {
                        skip_scaling_list(r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        r.ue_max("log2_max_frame_num_minus4", 12)?;
        match r.ue_max("pic_order_cnt_type", 2)? {
            0 => {
                r.ue_max("log2_max_pic_order_cnt_lsb_minus4", 12)?;
            }
            1 => {
                r.flag("delta_pic_order_always_zero_flag")?;
                r.se("offset_for_non_ref_pic")?;
                r.se("offset_for_top_to_bottom_field")?;
                let cycle = r.ue_max("num_ref_frames_in_pic_order_cnt_cycle", 255)?;
                for _ in 0..cycle {
                    r.se("offset_for_ref_frame")?;
                }
            }
            _ => {}
        }
        r.ue("max_num_ref_frames")?;
        r.flag("gaps_in_frame_num_value_allowed_flag")?;
        let width_mbs = r.ue_max("pic_width_in_mbs_minus1", MAX_SIDE_MBS - 1)? + 1;
        let height_map_units = r.ue_max("pic_height_in_map_units_minus1", MAX_SIDE_MBS - 1)? + 1;
        let frame_mbs_only = r.flag("frame_mbs_only_flag")?;
        if !frame_mbs_only {
            r.flag("mb_adaptive_frame_field_flag")?;
        }
        r.flag("direct_8x8_inference_flag")?;
        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let coded_width = width_mbs * 16;
        let coded_height = height_map_units * 16 * field_factor;
        let (mut width, mut height) = (coded_width, coded_height);
        if r.flag("frame_cropping_flag")? {
            // §7.4.2.1.1, equations 7-19 to 7-22.
            let chroma_array_type = if separate_colour_plane {
                0
            } else {
                chroma_format_idc
            };
            let (crop_unit_x, crop_unit_y) = match chroma_array_type {
                0 => (1, field_factor),
                1 => (2, 2 * field_factor),
                2 => (2, field_factor),
                _ => (1, field_factor),
            };
            let left = r.ue_max("frame_crop_left_offset", coded_width)?;
            let right = r.ue_max("frame_crop_right_offset", coded_width)?;
            let top = r.ue_max("frame_crop_top_offset", coded_height)?;
            let bottom = r.ue_max("frame_crop_bottom_offset", coded_height)?;
            let crop_x = (left + right) * crop_unit_x;
            let crop_y = (top + bottom) * crop_unit_y;
            if crop_x >= coded_width || crop_y >= coded_height {
                return Err(format!(
                    "frame cropping: crops {crop_x}x{crop_y} pixels off a \
                     {coded_width}x{coded_height} picture"
                ));
            }
            width -= crop_x;
            height -= crop_y;
        }
        let mut frame_rate = None;
        if r.flag("vui_parameters_present_flag")? {
            frame_rate = read_vui_frame_rate(r)?;
        }
        Ok(Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            chroma_format_idc,
            bit_depth_luma_minus8,
            bit_depth_chroma_minus8,
            width,
            height,
            frame_rate,
        })
    }
}

/// scaling_list() of §7.3.2.1.1.1: only read to get past it.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> BitResult<()> {
    let mut last_scale: i64 = 8;
    let mut next_scale: i64 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            let delta = r.se("delta_scale")?;
            if !(-128..=127).contains(&delta) {
                return Err(format!("delta_scale: {delta} outside -128..=127"));
            }
            next_scale = (last_scale + delta + 256) % 256;
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

/// Reads vui_parameters() (§E.1.1) up to the timing info. The frame rate of a progressive
/// stream is time_scale / (2 * num_units_in_tick) (§E.2.1, a frame is two field ticks).
/// Skips the start of vui_parameters() up to the chroma sample location, which H.264 (§E.1.1)
/// and H.265 (§E.2.1) share field for field: aspect ratio, overscan, video signal type and
/// colour description, chroma location.
pub(crate) fn skip_vui_picture_fields(r: &mut BitReader<'_>) -> BitResult<()> {
    const EXTENDED_SAR: u32 = 255;
    if r.flag("aspect_ratio_info_present_flag")? && r.bits32(8, "aspect_ratio_idc")? == EXTENDED_SAR
    {
        r.skip(32, "sar_width and sar_height")?;
    }
    if r.flag("overscan_info_present_flag")? {
        r.flag("overscan_appropriate_flag")?;
    }
    if r.flag("video_signal_type_present_flag")? {
        r.skip(4, "video_format and video_full_range_flag")?;
        if r.flag("colour_description_present_flag")? {
            r.skip(24, "colour description")?;
        }
    }
    if r.flag("chroma_loc_info_present_flag")? {
        r.ue("chroma_sample_loc_type_top_field")?;
        r.ue("chroma_sample_loc_type_bottom_field")?;
    }
    Ok(())
}

fn read_vui_frame_rate(r: &mut BitReader<'_>) -> BitResult<Option<(u32, u32)>> {
    skip_vui_picture_fields(r)?;
    if !r.flag("timing_info_present_flag")? {
        return Ok(None);
    }
    let num_units_in_tick = r.bits32(32, "num_units_in_tick")?;
    let time_scale = r.bits32(32, "time_scale")?;
    if num_units_in_tick == 0 || time_scale == 0 {
        // Both must be > 0 (§E.2.1); a zero means the encoder did not know: no rate.
        return Ok(None);
    }
    let num = u64::from(time_scale);
    let den = 2 * u64::from(num_units_in_tick);
    let divisor = gcd(num, den);
    let (num, den) = (num / divisor, den / divisor);
    Ok(u32::try_from(num).ok().zip(u32::try_from(den).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    // `ffmpeg -f lavfi -i testsrc2=size=1280x720:rate=30 -c:v libx264 -f h264` (x264 164).
    const X264_720P30_SPS: &str = "6764001facd9405005bb0110000003001000000303c0f1831960";
    const X264_720P30_PPS: &str = "68ebe3cb22c0";
    // The same stream through `-f flv`: ffmpeg 5.1's AVC sequence header body (after the
    // 5-byte FLV video tag header).
    const FFMPEG_FLV_720P30_RECORD: &str = "0164001fffe1001a6764001facd9405005bb0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f800";
    // testsrc2=size=1920x1080:rate=25: coded 1920x1088, cropped by 8 lines.
    const X264_1080P25_SPS: &str = "67640028acd940780227e5c044000003000400000300c83c60c658";
    // testsrc2=size=640x360 -pix_fmt yuv444p: High 4:4:4 Predictive, chroma_format_idc 3.
    const X264_444_360P_SPS: &str = "67f4001e919b281405ff138088000003000800000301e078b16cb0";
    // testsrc2=size=720x576:rate=25 -x264-params interlaced=1: frame_mbs_only_flag 0.
    const X264_INTERLACED_576I_SPS: &str = "6764001eacd940b424d8088000000300800000190f8a14cb";
    // testsrc2=size=176x144:rate=15 -profile:v baseline.
    const X264_BASELINE_QCIF_SPS: &str = "6742c00ad902c4ec0440000003004000000783c48992";
    // testsrc2=size=352x288 -pix_fmt yuv422p10le: High 4:2:2 10-bit.
    const X264_422_10BIT_CIF_SPS: &str = "677a000db6cd9416096c0440000003004000000f03c50a6580";

    /// h264-reader's view of the same SPS: the reference we check our reader against.
    fn reference(sps: &[u8]) -> (u32, u32, Option<(u32, u32)>) {
        use h264_reader::nal::sps::SeqParameterSet;
        use h264_reader::rbsp::{BitReader as RefReader, decode_nal};
        let rbsp = decode_nal(sps).unwrap();
        let parsed = SeqParameterSet::from_bits(RefReader::new(&rbsp[..])).unwrap();
        let (width, height) = parsed.pixel_dimensions().unwrap();
        let rate = parsed
            .vui_parameters
            .as_ref()
            .and_then(|vui| vui.timing_info.as_ref())
            .map(|t| (t.time_scale, 2 * t.num_units_in_tick));
        (width, height, rate)
    }

    fn rate_ratio(rate: Option<(u32, u32)>) -> Option<f64> {
        rate.map(|(num, den)| f64::from(num) / f64::from(den))
    }

    #[test]
    fn x264_720p30_parameter_sets_build_the_record_ffmpeg_writes() {
        let config =
            AvcConfig::from_parameter_sets(&hex(X264_720P30_SPS), &hex(X264_720P30_PPS)).unwrap();
        assert_eq!(config.record[..], hex(FFMPEG_FLV_720P30_RECORD)[..]);
        assert_eq!((config.width, config.height), (1280, 720));
        assert_eq!(config.frame_rate, Some((30, 1)));
        assert_eq!(config.codec_string(), "avc1.64001f");
        assert_eq!(config.sps, vec![Bytes::from(hex(X264_720P30_SPS))]);
        assert_eq!(config.pps, vec![Bytes::from(hex(X264_720P30_PPS))]);

        let parsed = AvcConfig::from_record(&hex(FFMPEG_FLV_720P30_RECORD)).unwrap();
        assert_eq!(parsed, config);
    }

    #[test]
    fn ffmpeg_start_codes_are_tolerated_in_parameter_sets() {
        let mut sps = vec![0, 0, 0, 1];
        sps.extend(hex(X264_720P30_SPS));
        let mut pps = vec![0, 0, 1];
        pps.extend(hex(X264_720P30_PPS));
        let config = AvcConfig::from_parameter_sets(&sps, &pps).unwrap();
        assert_eq!(config.record[..], hex(FFMPEG_FLV_720P30_RECORD)[..]);
    }

    #[test]
    fn x264_sps_variants_match_the_reference_parser() {
        type Case = (&'static str, u32, u32, Option<(u32, u32)>, u8);
        let cases: [Case; 6] = [
            (X264_720P30_SPS, 1280, 720, Some((30, 1)), 100),
            (X264_1080P25_SPS, 1920, 1080, Some((25, 1)), 100),
            (X264_444_360P_SPS, 640, 360, Some((30, 1)), 244),
            (X264_INTERLACED_576I_SPS, 720, 576, Some((25, 1)), 100),
            (X264_BASELINE_QCIF_SPS, 176, 144, Some((15, 1)), 66),
            (X264_422_10BIT_CIF_SPS, 352, 288, Some((30, 1)), 122),
        ];
        for (sps_hex, width, height, rate, profile) in cases {
            let sps = hex(sps_hex);
            let ours = Sps::parse(&sps).unwrap();
            assert_eq!((ours.width, ours.height), (width, height), "{sps_hex}");
            assert_eq!(ours.frame_rate, rate, "{sps_hex}");
            assert_eq!(ours.profile_idc, profile, "{sps_hex}");
            let (ref_width, ref_height, ref_rate) = reference(&sps);
            assert_eq!(
                (ours.width, ours.height),
                (ref_width, ref_height),
                "{sps_hex}"
            );
            assert_eq!(
                rate_ratio(ours.frame_rate),
                rate_ratio(ref_rate),
                "{sps_hex}"
            );
        }
    }

    #[test]
    fn x264_1080p_is_coded_as_1088_and_cropped() {
        let sps = hex(X264_1080P25_SPS);
        let config = AvcConfig::from_parameter_sets(&sps, &hex(X264_720P30_PPS)).unwrap();
        assert_eq!((config.width, config.height), (1920, 1080));
        assert_eq!(config.codec_string(), "avc1.640028");
        // Without the crop the picture is 68 macroblock rows: flip frame_cropping_flag off by
        // rebuilding the SPS without it.
        let uncropped = SpsWriter::high(120, 68, None, None, false).nal();
        let info = Sps::parse(&uncropped).unwrap();
        assert_eq!((info.width, info.height), (1920, 1088));
        assert_eq!(reference(&uncropped).1, 1088);
    }

    #[test]
    fn x264_high_profile_trailers_carry_chroma_format_and_bit_depth() {
        let config =
            AvcConfig::from_parameter_sets(&hex(X264_422_10BIT_CIF_SPS), &hex(X264_720P30_PPS))
                .unwrap();
        // profile 122: chroma_format_idc 2, 10-bit luma and chroma.
        assert_eq!(
            config.record[config.record.len() - 4..],
            [0xfe, 0xfa, 0xfa, 0]
        );
        let baseline =
            AvcConfig::from_parameter_sets(&hex(X264_BASELINE_QCIF_SPS), &hex(X264_720P30_PPS))
                .unwrap();
        assert_eq!(*baseline.record.last().unwrap(), 0xc0); // ends with the PPS, no trailer
        assert_eq!(baseline.codec_string(), "avc1.42c00a");
    }

    #[test]
    fn scaling_lists_and_poc_type_1_are_skipped_correctly() {
        let sps = SpsWriter::high(40, 23, Some((0, 0, 0, 4)), Some((1001, 60000)), true).nal();
        let info = Sps::parse(&sps).unwrap();
        assert_eq!((info.width, info.height), (640, 360));
        assert_eq!(info.frame_rate, Some((30000, 1001)));
        assert_eq!(reference(&sps), (640, 360, Some((60000, 2002))));
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(
            remove_emulation_prevention(&[0, 0, 3, 1, 0, 0, 3]),
            [0, 0, 1, 0, 0]
        );
        assert_eq!(
            remove_emulation_prevention(&[0, 3, 0, 0, 3, 0, 0, 3, 0]),
            [0, 3, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn records_with_short_nal_lengths_are_refused() {
        let mut record = hex(FFMPEG_FLV_720P30_RECORD);
        record[4] = 0xfd; // lengthSizeMinusOne = 1
        let err = AvcConfig::from_record(&record).unwrap_err().to_string();
        assert!(err.contains("lengthSizeMinusOne 1"), "{err}");
    }

    #[test]
    fn malformed_records_are_errors() {
        let good = hex(FFMPEG_FLV_720P30_RECORD);
        // Every truncation before the PPS ends is an error, never a panic.
        let pps_end = good.len() - 4;
        for len in 0..pps_end {
            assert!(
                AvcConfig::from_record(&good[..len]).is_err(),
                "length {len}"
            );
        }
        let mut version = good.clone();
        version[0] = 0;
        assert!(AvcConfig::from_record(&version).is_err());
        let mut no_pps = good[..6 + 2 + 26].to_vec();
        no_pps.push(0);
        let err = AvcConfig::from_record(&no_pps).unwrap_err().to_string();
        assert!(err.contains("no picture parameter set"), "{err}");
        let mut not_sps = good.clone();
        not_sps[8] = 0x68;
        assert!(AvcConfig::from_record(&not_sps).is_err());
        assert!(
            AvcConfig::from_parameter_sets(&hex(X264_720P30_PPS), &hex(X264_720P30_PPS)).is_err()
        );
        assert!(AvcConfig::from_parameter_sets(&[], &[]).is_err());
    }

    #[test]
    fn garbage_sps_never_panics() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let base = hex(X264_1080P25_SPS);
        for round in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut sps = base.clone();
            let len = 1 + (state as usize % base.len());
            sps.truncate(len);
            for _ in 0..(round % 4) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state >> 8) as usize % sps.len();
                sps[at] ^= (state >> 40) as u8;
            }
            sps[0] = 0x67;
            let _ = Sps::parse(&sps);
        }
        let all_zero = [0x67, 0x64, 0, 0x28, 0, 0, 0, 0, 0, 0];
        assert!(Sps::parse(&all_zero).is_err());
    }

    /// Writes SPS syntax for tests (§7.3.2.1.1), including what x264 never emits: scaling lists
    /// in the SPS and pic_order_cnt_type 1.
    struct SpsWriter {
        bits: Vec<bool>,
    }

    impl SpsWriter {
        fn high(
            width_mbs: u32,
            height_mbs: u32,
            crop: Option<(u32, u32, u32, u32)>,
            timing: Option<(u32, u32)>,
            scaling_lists: bool,
        ) -> Self {
            let mut w = SpsWriter { bits: Vec::new() };
            w.u(8, 100);
            w.u(8, 0);
            w.u(8, 40);
            w.ue(0); // seq_parameter_set_id
            w.ue(1); // chroma_format_idc
            w.ue(0);
            w.ue(0);
            w.u(1, 0);
            w.u(1, u32::from(scaling_lists));
            if scaling_lists {
                for i in 0..8 {
                    let present = i == 0 || i == 6;
                    w.u(1, u32::from(present));
                    if present {
                        let size = if i < 6 { 16 } else { 64 };
                        for j in 0..size {
                            w.se(if j == 0 { 8 } else { 1 });
                        }
                    }
                }
            }
            w.ue(0); // log2_max_frame_num_minus4
            w.ue(1); // pic_order_cnt_type
            w.u(1, 0);
            w.se(-2);
            w.se(3);
            w.ue(2);
            w.se(5);
            w.se(-7);
            w.ue(4); // max_num_ref_frames
            w.u(1, 0);
            w.ue(width_mbs - 1);
            w.ue(height_mbs - 1);
            w.u(1, 1); // frame_mbs_only_flag
            w.u(1, 1);
            w.u(1, u32::from(crop.is_some()));
            if let Some((left, right, top, bottom)) = crop {
                w.ue(left);
                w.ue(right);
                w.ue(top);
                w.ue(bottom);
            }
            w.u(1, u32::from(timing.is_some()));
            if let Some((num_units_in_tick, time_scale)) = timing {
                w.u(1, 1); // aspect_ratio_info_present_flag
                w.u(8, 255);
                w.u(16, 4);
                w.u(16, 3);
                w.u(1, 0);
                w.u(1, 1); // video_signal_type_present_flag
                w.u(4, 5 << 1);
                w.u(1, 1);
                w.u(24, 0x010101);
                w.u(1, 1); // chroma_loc_info_present_flag
                w.ue(0);
                w.ue(0);
                w.u(1, 1);
                w.u(32, num_units_in_tick);
                w.u(32, time_scale);
                w.u(1, 1);
                w.u(1, 0); // nal_hrd_parameters_present_flag
                w.u(1, 0);
                w.u(1, 0);
                w.u(1, 0);
            }
            w.u(1, 1); // rbsp_stop_one_bit
            while !w.bits.len().is_multiple_of(8) {
                w.bits.push(false);
            }
            w
        }

        fn u(&mut self, count: u32, value: u32) {
            for i in (0..count).rev() {
                self.bits.push((value >> i) & 1 == 1);
            }
        }

        fn ue(&mut self, value: u32) {
            let code = u64::from(value) + 1;
            let len = 64 - code.leading_zeros();
            for _ in 1..len {
                self.bits.push(false);
            }
            for i in (0..len).rev() {
                self.bits.push((code >> i) & 1 == 1);
            }
        }

        fn se(&mut self, value: i32) {
            let code = if value > 0 { 2 * value - 1 } else { -2 * value };
            self.ue(code as u32);
        }

        /// The NAL unit: header byte, then the RBSP with emulation prevention applied.
        fn nal(&self) -> Vec<u8> {
            let mut nal = vec![0x67];
            let mut zeros = 0;
            for chunk in self.bits.chunks(8) {
                let byte = chunk.iter().fold(0u8, |acc, &b| (acc << 1) | u8::from(b));
                if zeros >= 2 && byte <= 3 {
                    nal.push(3);
                    zeros = 0;
                }
                zeros = if byte == 0 { zeros + 1 } else { 0 };
                nal.push(byte);
            }
            nal
        }
    }
}
