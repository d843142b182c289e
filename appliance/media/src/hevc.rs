//! HEVC (H.265) codec parameters: the HEVCDecoderConfigurationRecord of an `hvcC` box
//! (ISO/IEC 14496-15 §8.3.3.1), what we read from the sequence parameter set (ITU-T H.265
//! §7.3.2.2.1, profile_tier_level §7.3.3, VUI §E.2.1), and the `hvc1.…` codecs parameter string
//! (ISO/IEC 14496-15 Annex E.3).
//!
//! HEVC NAL units have a 2-byte header; the type is `(byte0 >> 1) & 0x3f` (§7.3.1.2). Samples are
//! 4-byte length-prefixed NAL units, as for AVC (see the crate docs). The SPS reader walks the
//! whole SPS up to the VUI timing info so that it can report the frame rate; when anything after
//! the picture size is malformed the size is still reported and the frame rate is left out.

use bytes::Bytes;

use crate::MediaError;
use crate::bits::{BitReader, BitResult, gcd, remove_emulation_prevention};

/// NAL unit types (H.265 Table 7-1) that the rest of corecast looks at.
pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
/// Access unit delimiter.
pub const NAL_AUD: u8 = 35;

/// Largest picture side we accept in luma samples: far above any level's limit (level 6.2 is
/// 8192 wide at most), low enough that sizes never overflow.
const MAX_SIDE: u32 = 16_888;

/// The type of an HEVC NAL unit (header bytes first), or `None` for a unit shorter than its
/// 2-byte header.
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    match nal {
        [first, _, ..] => Some((first >> 1) & 0x3f),
        _ => None,
    }
}

/// IRAP pictures (BLA, IDR, CRA and the reserved IRAP types 22, 23; §7.4.2.2): where a decoder
/// can start, so the sync samples of a track.
pub fn is_irap(nal_type: u8) -> bool {
    (16..=23).contains(&nal_type)
}

/// Parameters of an HEVC track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcConfig {
    /// The HEVCDecoderConfigurationRecord as it goes into an `hvcC` box, always with
    /// `lengthSizeMinusOne = 3` to match [`crate::AccessUnit`] payloads.
    pub record: Bytes,
    /// Video, sequence and picture parameter set NAL units (2-byte header included, no start
    /// code).
    pub vps: Vec<Bytes>,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    pub general_profile_space: u8,
    pub general_tier_flag: bool,
    pub general_profile_idc: u8,
    /// general_profile_compatibility_flag[0..32], flag 0 in the most significant bit (the order
    /// they are coded in).
    pub general_profile_compatibility_flags: u32,
    /// The 48 bits from general_progressive_source_flag to general_inbld_flag, in the low 48
    /// bits, first coded bit most significant.
    pub general_constraint_indicator_flags: u64,
    /// 30 times the level number (93 = level 3.1).
    pub general_level_idc: u8,
    /// Display size in pixels, after the conformance window.
    pub width: u32,
    pub height: u32,
    /// Frames per second as (numerator, denominator) when the SPS's VUI timing says so.
    pub frame_rate: Option<(u32, u32)>,
}

impl HevcConfig {
    /// Parses an HEVCDecoderConfigurationRecord (the body of an `hvcC` box or of an Enhanced
    /// RTMP HEVC sequence start). Records with 1- or 2-byte NAL lengths are refused: every
    /// producer we take (x265, NVENC, OBS, ffmpeg) uses 4.
    pub fn from_record(record: &[u8]) -> Result<Self, MediaError> {
        let bad = |what: String| MediaError::HevcRecord(what);
        let Some(header) = record.get(..23) else {
            return Err(bad(format!(
                "{} bytes, shorter than the 23-byte header",
                record.len()
            )));
        };
        // Version 0 appears in files from early muxers; the layout is the same.
        if header[0] > 1 {
            return Err(bad(format!(
                "configurationVersion {}, expected 1",
                header[0]
            )));
        }
        let length_size_minus_one = header[21] & 0x03;
        if length_size_minus_one != 3 {
            return Err(bad(format!(
                "lengthSizeMinusOne {length_size_minus_one}: only 4-byte NAL lengths are supported"
            )));
        }
        let array_count = header[22];
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        let mut offset = 23;
        for array in 0..array_count {
            let [kind, count_hi, count_lo] = record.get(offset..offset + 3).unwrap_or(&[]) else {
                return Err(bad(format!(
                    "array #{array} header missing at offset {offset}"
                )));
            };
            let nal_type = kind & 0x3f;
            let count = u16::from_be_bytes([*count_hi, *count_lo]);
            offset += 3;
            for index in 0..count {
                let [hi, lo] = record.get(offset..offset + 2).unwrap_or(&[]) else {
                    return Err(bad(format!(
                        "NAL unit #{index} of array #{array}: length missing at offset {offset}"
                    )));
                };
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                let nal = record.get(offset + 2..offset + 2 + len).ok_or_else(|| {
                    bad(format!(
                        "NAL unit #{index} of array #{array} at offset {}: length {len} but {} \
                         bytes left",
                        offset + 2,
                        record.len().saturating_sub(offset + 2)
                    ))
                })?;
                offset += 2 + len;
                if nal_unit_type(nal) != Some(nal_type) {
                    return Err(bad(format!(
                        "array #{array} of NAL type {nal_type} holds a unit of type {:?}",
                        nal_unit_type(nal)
                    )));
                }
                let nal = Bytes::copy_from_slice(nal);
                match nal_type {
                    NAL_VPS => vps.push(nal),
                    NAL_SPS => sps.push(nal),
                    NAL_PPS => pps.push(nal),
                    // SEI arrays and the like: the record keeps them; we need not.
                    _ => {}
                }
            }
        }
        let first_sps = sps
            .first()
            .ok_or_else(|| bad("no sequence parameter set".into()))?;
        if vps.is_empty() {
            return Err(bad("no video parameter set".into()));
        }
        if pps.is_empty() {
            return Err(bad("no picture parameter set".into()));
        }
        let info = Sps::parse(first_sps)?;
        // The record's own profile fields describe the stream as a whole (§8.3.3.1.2); they
        // are what the codec string is made from.
        let mut config = Self::from_parts(Bytes::copy_from_slice(record), vps, sps, pps, &info);
        config.general_profile_space = header[1] >> 6;
        config.general_tier_flag = header[1] & 0x20 != 0;
        config.general_profile_idc = header[1] & 0x1f;
        config.general_profile_compatibility_flags =
            u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        config.general_constraint_indicator_flags = header[6..12]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        config.general_level_idc = header[12];
        Ok(config)
    }

    /// Builds the config from the first VPS, SPS and PPS of an Annex B stream (an encoder's
    /// global header), writing the record.
    pub fn from_annex_b(stream: &[u8]) -> Result<Self, MediaError> {
        let (mut vps, mut sps, mut pps) = (None, None, None);
        for nal in crate::annex_b::nal_units(stream) {
            match nal_unit_type(nal) {
                Some(NAL_VPS) if vps.is_none() => vps = Some(nal),
                Some(NAL_SPS) if sps.is_none() => sps = Some(nal),
                Some(NAL_PPS) if pps.is_none() => pps = Some(nal),
                _ => {}
            }
        }
        let vps = vps.ok_or(MediaError::MissingParameterSet("VPS"))?;
        let sps = sps.ok_or(MediaError::MissingParameterSet("SPS"))?;
        let pps = pps.ok_or(MediaError::MissingParameterSet("PPS"))?;
        Self::from_parameter_sets(vps, sps, pps)
    }

    /// Builds the config and its record from raw parameter sets (what an encoder or an Annex B
    /// stream gives). A leading Annex B start code on any of them is tolerated and dropped.
    pub fn from_parameter_sets(vps: &[u8], sps: &[u8], pps: &[u8]) -> Result<Self, MediaError> {
        let vps = strip_start_code(vps);
        let sps = strip_start_code(sps);
        let pps = strip_start_code(pps);
        for (nal, expected, what) in [
            (vps, NAL_VPS, "VPS"),
            (sps, NAL_SPS, "SPS"),
            (pps, NAL_PPS, "PPS"),
        ] {
            if nal.len() < 3 || nal_unit_type(nal) != Some(expected) {
                return Err(MediaError::HevcParameterSet {
                    what: "parameter set",
                    reason: format!(
                        "not a {what} NAL unit: {} bytes starting {:02x?}",
                        nal.len(),
                        &nal[..nal.len().min(4)]
                    ),
                });
            }
            if u16::try_from(nal.len()).is_err() {
                return Err(MediaError::HevcRecord(format!(
                    "{what} of {} bytes does not fit a 16-bit length",
                    nal.len()
                )));
            }
        }
        let info = Sps::parse(sps)?;

        let mut record = Vec::with_capacity(23 + 15 + vps.len() + sps.len() + pps.len());
        record.push(1);
        record.push((info.profile_space << 6) | (u8::from(info.tier_flag) << 5) | info.profile_idc);
        record.extend_from_slice(&info.compatibility_flags.to_be_bytes());
        record.extend_from_slice(&info.constraint_flags.to_be_bytes()[2..]);
        record.push(info.level_idc);
        // min_spatial_segmentation_idc 0 and parallelismType 0: "unknown", always allowed.
        record.extend_from_slice(&[0xf0, 0x00, 0xfc]);
        record.push(0xfc | info.chroma_format_idc);
        record.push(0xf8 | info.bit_depth_luma_minus8);
        record.push(0xf8 | info.bit_depth_chroma_minus8);
        record.extend_from_slice(&[0, 0]); // avgFrameRate: unspecified
        record.push(
            (info.max_sub_layers_minus1 + 1) << 3 | u8::from(info.temporal_id_nesting) << 2 | 3,
        );
        record.push(3);
        for (nal, nal_type) in [(vps, NAL_VPS), (sps, NAL_SPS), (pps, NAL_PPS)] {
            // array_completeness = 1: `hvc1` promises all parameter sets are in the entry.
            record.push(0x80 | nal_type);
            record.extend_from_slice(&1u16.to_be_bytes());
            // Checked above to fit 16 bits.
            record.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            record.extend_from_slice(nal);
        }
        Ok(Self::from_parts(
            Bytes::from(record),
            vec![Bytes::copy_from_slice(vps)],
            vec![Bytes::copy_from_slice(sps)],
            vec![Bytes::copy_from_slice(pps)],
            &info,
        ))
    }

    fn from_parts(
        record: Bytes,
        vps: Vec<Bytes>,
        sps: Vec<Bytes>,
        pps: Vec<Bytes>,
        info: &Sps,
    ) -> Self {
        HevcConfig {
            record,
            vps,
            sps,
            pps,
            general_profile_space: info.profile_space,
            general_tier_flag: info.tier_flag,
            general_profile_idc: info.profile_idc,
            general_profile_compatibility_flags: info.compatibility_flags,
            general_constraint_indicator_flags: info.constraint_flags,
            general_level_idc: info.level_idc,
            width: info.width,
            height: info.height,
            frame_rate: info.frame_rate,
        }
    }

    /// The codecs parameter of ISO/IEC 14496-15 Annex E.3, e.g. `hvc1.1.6.L93.B0`: profile
    /// space letter and profile, compatibility flags bit-reversed in hex, tier and level, then
    /// the constraint bytes with trailing zero bytes left out.
    pub fn codec_string(&self) -> String {
        let space = match self.general_profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        let tier = if self.general_tier_flag { 'H' } else { 'L' };
        let mut text = format!(
            "hvc1.{space}{}.{:x}.{tier}{}",
            self.general_profile_idc,
            self.general_profile_compatibility_flags.reverse_bits(),
            self.general_level_idc
        );
        let bytes = self.general_constraint_indicator_flags.to_be_bytes();
        let constraints = &bytes[2..];
        let kept = constraints
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        for byte in &constraints[..kept] {
            text.push_str(&format!(".{byte:X}"));
        }
        text
    }
}

fn strip_start_code(nal: &[u8]) -> &[u8] {
    nal.strip_prefix(&[0, 0, 0, 1])
        .or_else(|| nal.strip_prefix(&[0, 0, 1]))
        .unwrap_or(nal)
}

/// What we use from a sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sps {
    max_sub_layers_minus1: u8,
    temporal_id_nesting: bool,
    profile_space: u8,
    tier_flag: bool,
    profile_idc: u8,
    compatibility_flags: u32,
    constraint_flags: u64,
    level_idc: u8,
    chroma_format_idc: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
    width: u32,
    height: u32,
    frame_rate: Option<(u32, u32)>,
}

impl Sps {
    /// Parses an SPS NAL unit (2-byte header included, emulation prevention bytes present).
    fn parse(nal: &[u8]) -> Result<Sps, MediaError> {
        let err = |reason: String| MediaError::HevcParameterSet {
            what: "sequence parameter set",
            reason,
        };
        let Some(payload) = nal.get(2..) else {
            return Err(err(format!(
                "{} bytes, shorter than the NAL header",
                nal.len()
            )));
        };
        if nal_unit_type(nal) != Some(NAL_SPS) {
            return Err(err(format!(
                "NAL unit type {:?} where an SPS (33) was expected",
                nal_unit_type(nal)
            )));
        }
        let rbsp = remove_emulation_prevention(payload);
        let mut r = BitReader::new(&rbsp);
        let mut sps = Self::read_through_size(&mut r).map_err(err)?;
        // Past the size the SPS gets long and encoder-specific; a mistake there costs only the
        // frame rate.
        sps.frame_rate = read_frame_rate(&mut r, sps.max_sub_layers_minus1)
            .ok()
            .flatten();
        Ok(sps)
    }

    fn read_through_size(r: &mut BitReader<'_>) -> BitResult<Sps> {
        r.bits(4, "sps_video_parameter_set_id")?;
        let max_sub_layers_minus1 = r.bits32(3, "sps_max_sub_layers_minus1")? as u8;
        if max_sub_layers_minus1 > 6 {
            return Err(format!(
                "sps_max_sub_layers_minus1 {max_sub_layers_minus1} above 6"
            ));
        }
        let temporal_id_nesting = r.flag("sps_temporal_id_nesting_flag")?;
        // profile_tier_level(1, sps_max_sub_layers_minus1), §7.3.3.
        let profile_space = r.bits32(2, "general_profile_space")? as u8;
        let tier_flag = r.flag("general_tier_flag")?;
        let profile_idc = r.bits32(5, "general_profile_idc")? as u8;
        let compatibility_flags = r.bits32(32, "general_profile_compatibility_flags")?;
        let constraint_flags = r.bits(48, "general constraint flags")?;
        let level_idc = r.bits32(8, "general_level_idc")? as u8;
        let mut sub_layer_present = Vec::with_capacity(usize::from(max_sub_layers_minus1));
        for _ in 0..max_sub_layers_minus1 {
            let profile = r.flag("sub_layer_profile_present_flag")?;
            let level = r.flag("sub_layer_level_present_flag")?;
            sub_layer_present.push((profile, level));
        }
        if max_sub_layers_minus1 > 0 {
            r.skip(
                2 * (8 - usize::from(max_sub_layers_minus1)),
                "reserved_zero_2bits",
            )?;
        }
        for (profile, level) in sub_layer_present {
            if profile {
                r.skip(88, "sub_layer profile")?;
            }
            if level {
                r.skip(8, "sub_layer_level_idc")?;
            }
        }
        r.ue_max("sps_seq_parameter_set_id", 15)?;
        let chroma_format_idc = r.ue_max("chroma_format_idc", 3)? as u8;
        let separate_colour_plane =
            chroma_format_idc == 3 && r.flag("separate_colour_plane_flag")?;
        let coded_width = r.ue_max("pic_width_in_luma_samples", MAX_SIDE)?;
        let coded_height = r.ue_max("pic_height_in_luma_samples", MAX_SIDE)?;
        if coded_width == 0 || coded_height == 0 {
            return Err(format!("picture size {coded_width}x{coded_height}"));
        }
        let (mut width, mut height) = (coded_width, coded_height);
        if r.flag("conformance_window_flag")? {
            // SubWidthC / SubHeightC of Table 6-1; 1 for monochrome and separate planes.
            let (unit_x, unit_y) = match (chroma_format_idc, separate_colour_plane) {
                (1, false) => (2, 2),
                (2, false) => (2, 1),
                _ => (1, 1),
            };
            let left = r.ue_max("conf_win_left_offset", coded_width)?;
            let right = r.ue_max("conf_win_right_offset", coded_width)?;
            let top = r.ue_max("conf_win_top_offset", coded_height)?;
            let bottom = r.ue_max("conf_win_bottom_offset", coded_height)?;
            let crop_x = (left + right) * unit_x;
            let crop_y = (top + bottom) * unit_y;
            if crop_x >= coded_width || crop_y >= coded_height {
                return Err(format!(
                    "conformance window crops {crop_x}x{crop_y} off a {coded_width}x{coded_height} \
                     picture"
                ));
            }
            width -= crop_x;
            height -= crop_y;
        }
        let bit_depth_luma_minus8 = r.ue_max("bit_depth_luma_minus8", 8)? as u8;
        let bit_depth_chroma_minus8 = r.ue_max("bit_depth_chroma_minus8", 8)? as u8;
        Ok(Sps {
            max_sub_layers_minus1,
            temporal_id_nesting,
            profile_space,
            tier_flag,
            profile_idc,
            compatibility_flags,
            constraint_flags,
            level_idc,
            chroma_format_idc,
            bit_depth_luma_minus8,
            bit_depth_chroma_minus8,
            width,
            height,
            frame_rate: None,
        })
    }
}

/// Reads the SPS from log2_max_pic_order_cnt_lsb_minus4 (§7.3.2.2.1) to the VUI timing info
/// (§E.2.1). In HEVC a tick is a frame (unlike H.264's field): rate = time_scale / units.
fn read_frame_rate(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: u8,
) -> BitResult<Option<(u32, u32)>> {
    let log2_max_poc_lsb = r.ue_max("log2_max_pic_order_cnt_lsb_minus4", 12)? + 4;
    let all_sub_layers = r.flag("sps_sub_layer_ordering_info_present_flag")?;
    let first = if all_sub_layers {
        0
    } else {
        max_sub_layers_minus1
    };
    for _ in first..=max_sub_layers_minus1 {
        r.ue("sps_max_dec_pic_buffering_minus1")?;
        r.ue("sps_max_num_reorder_pics")?;
        r.ue("sps_max_latency_increase_plus1")?;
    }
    r.ue("log2_min_luma_coding_block_size_minus3")?;
    r.ue("log2_diff_max_min_luma_coding_block_size")?;
    r.ue("log2_min_luma_transform_block_size_minus2")?;
    r.ue("log2_diff_max_min_luma_transform_block_size")?;
    r.ue("max_transform_hierarchy_depth_inter")?;
    r.ue("max_transform_hierarchy_depth_intra")?;
    if r.flag("scaling_list_enabled_flag")? && r.flag("sps_scaling_list_data_present_flag")? {
        skip_scaling_list_data(r)?;
    }
    r.flag("amp_enabled_flag")?;
    r.flag("sample_adaptive_offset_enabled_flag")?;
    if r.flag("pcm_enabled_flag")? {
        r.skip(8, "pcm sample bit depths")?;
        r.ue("log2_min_pcm_luma_coding_block_size_minus3")?;
        r.ue("log2_diff_max_min_pcm_luma_coding_block_size")?;
        r.flag("pcm_loop_filter_disabled_flag")?;
    }
    let set_count = r.ue_max("num_short_term_ref_pic_sets", 64)?;
    let mut sets: Vec<RefPicSet> = Vec::with_capacity(set_count as usize);
    for index in 0..set_count as usize {
        let set = read_st_ref_pic_set(r, index, &sets)?;
        sets.push(set);
    }
    if r.flag("long_term_ref_pics_present_flag")? {
        let count = r.ue_max("num_long_term_ref_pics_sps", 32)?;
        for _ in 0..count {
            r.skip(log2_max_poc_lsb as usize + 1, "lt_ref_pic_poc_lsb_sps")?;
        }
    }
    r.flag("sps_temporal_mvp_enabled_flag")?;
    r.flag("strong_intra_smoothing_enabled_flag")?;
    if !r.flag("vui_parameters_present_flag")? {
        return Ok(None);
    }
    crate::avc::skip_vui_picture_fields(r)?;
    r.skip(3, "neutral_chroma, field_seq and frame_field_info flags")?;
    if r.flag("default_display_window_flag")? {
        for _ in 0..4 {
            r.ue("def_disp_win offset")?;
        }
    }
    if !r.flag("vui_timing_info_present_flag")? {
        return Ok(None);
    }
    let units = u64::from(r.bits32(32, "vui_num_units_in_tick")?);
    let scale = u64::from(r.bits32(32, "vui_time_scale")?);
    if units == 0 || scale == 0 {
        return Ok(None);
    }
    let divisor = gcd(scale, units);
    Ok(u32::try_from(scale / divisor)
        .ok()
        .zip(u32::try_from(units / divisor).ok()))
}

/// scaling_list_data() of §7.3.4, only read to get past it.
fn skip_scaling_list_data(r: &mut BitReader<'_>) -> BitResult<()> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _ in (0..6).step_by(step) {
            if !r.flag("scaling_list_pred_mode_flag")? {
                r.ue("scaling_list_pred_matrix_id_delta")?;
                continue;
            }
            let coefficients = 64.min(1 << (4 + (size_id << 1)));
            if size_id > 1 {
                r.se("scaling_list_dc_coef_minus8")?;
            }
            for _ in 0..coefficients {
                r.se("scaling_list_delta_coef")?;
            }
        }
    }
    Ok(())
}

/// The delta POCs of one short-term reference picture set: what a later set predicted from it
/// needs (§7.4.8, equations 7-61 and 7-62).
struct RefPicSet {
    negative: Vec<i64>,
    positive: Vec<i64>,
}

fn read_st_ref_pic_set(
    r: &mut BitReader<'_>,
    index: usize,
    sets: &[RefPicSet],
) -> BitResult<RefPicSet> {
    if index != 0 && r.flag("inter_ref_pic_set_prediction_flag")? {
        // In an SPS the reference is always the previous set (delta_idx_minus1 is only coded
        // in slice headers).
        let Some(reference) = sets.last() else {
            return Err("inter-predicted reference picture set without a reference".into());
        };
        let sign = r.flag("delta_rps_sign")?;
        let magnitude = i64::from(r.ue_max("abs_delta_rps_minus1", 1 << 15)?) + 1;
        let delta_rps = if sign { -magnitude } else { magnitude };
        let count = reference.negative.len() + reference.positive.len();
        let mut use_delta = Vec::with_capacity(count + 1);
        for _ in 0..=count {
            let used = r.flag("used_by_curr_pic_flag")?;
            use_delta.push(used || r.flag("use_delta_flag")?);
        }
        let reference_pocs = reference.negative.iter().chain(reference.positive.iter());
        let mut negative = Vec::new();
        let mut positive = Vec::new();
        for (poc, &used) in reference_pocs.chain(std::iter::once(&0)).zip(&use_delta) {
            let delta = poc + delta_rps;
            if used && delta < 0 {
                negative.push(delta);
            } else if used && delta > 0 {
                positive.push(delta);
            }
        }
        // Only the counts matter to the parse of later sets' flags; order them like 7-61/7-62.
        negative.sort_unstable_by(|a, b| b.cmp(a));
        positive.sort_unstable();
        if negative.len() + positive.len() > 32 {
            return Err("reference picture set with more than 32 pictures".into());
        }
        return Ok(RefPicSet { negative, positive });
    }
    let negative_count = r.ue_max("num_negative_pics", 16)?;
    let positive_count = r.ue_max("num_positive_pics", 16)?;
    let mut poc = 0i64;
    let mut negative = Vec::with_capacity(negative_count as usize);
    for _ in 0..negative_count {
        poc -= i64::from(r.ue("delta_poc_s0_minus1")?) + 1;
        r.flag("used_by_curr_pic_s0_flag")?;
        negative.push(poc);
    }
    poc = 0;
    let mut positive = Vec::with_capacity(positive_count as usize);
    for _ in 0..positive_count {
        poc += i64::from(r.ue("delta_poc_s1_minus1")?) + 1;
        r.flag("used_by_curr_pic_s1_flag")?;
        positive.push(poc);
    }
    Ok(RefPicSet { negative, positive })
}

#[cfg(test)]
#[path = "hevc_tests.rs"]
mod tests;
