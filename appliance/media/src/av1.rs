//! AV1 codec parameters and OBU streams: the sequence header OBU (AV1 Bitstream & Decoding
//! Process Specification §5.5, colour config §5.5.2), the AV1CodecConfigurationRecord of an
//! `av1C` box (AV1 Codec ISO Media File Format Binding §2.3.3), the `av01.P.LLT.DD` codecs
//! parameter string (same binding, "Codecs Parameter String") and the low-overhead OBU stream
//! (§5.2, §5.3) that samples are made of.
//!
//! Sample format (binding §2.4): the OBUs of one temporal unit, each with `obu_has_size_field
//! = 1`, without temporal delimiter OBUs. [`temporal_unit_payload`] turns what encoders and
//! Enhanced RTMP send into that.
//!
//! The frame size reported is the sequence's maximum (`max_frame_width_minus_1 + 1`), which is
//! what every encoder we meet codes its frames at; a stream that codes smaller frames with
//! `frame_size_override_flag` is still packaged correctly, only the reported size is the maximum.

use bytes::Bytes;

use crate::MediaError;
use crate::bits::{BitReader, BitResult};

/// OBU types (§6.2.2) that the rest of corecast looks at.
pub const OBU_SEQUENCE_HEADER: u8 = 1;
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
pub const OBU_FRAME_HEADER: u8 = 3;
pub const OBU_FRAME: u8 = 6;

/// Parameters of an AV1 track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Av1Config {
    /// The AV1CodecConfigurationRecord as it goes into an `av1C` box: the 4-byte header and
    /// the sequence header OBU as its configOBUs.
    pub record: Bytes,
    /// The sequence header OBU, OBU header and size field included.
    pub sequence_header: Bytes,
    pub seq_profile: u8,
    pub seq_level_idx_0: u8,
    pub seq_tier_0: bool,
    /// 8, 10 or 12.
    pub bit_depth: u8,
    pub monochrome: bool,
    pub chroma_subsampling_x: bool,
    pub chroma_subsampling_y: bool,
    /// 0 unknown, 1 vertical, 2 colocated (§6.4.2).
    pub chroma_sample_position: u8,
    /// The sequence's maximum frame size in pixels.
    pub width: u32,
    pub height: u32,
}

/// One OBU of a low-overhead stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obu<'a> {
    pub obu_type: u8,
    /// The OBU header (1 or 2 bytes), without the size field.
    pub header: &'a [u8],
    /// The OBU payload, after the size field.
    pub payload: &'a [u8],
    /// Where the OBU starts in the stream.
    pub offset: usize,
}

/// The OBUs of a low-overhead bitstream (§5.2). An OBU without `obu_has_size_field` runs to the
/// end of `data`, as in a container sample where it is the last OBU.
pub fn obus(data: &[u8]) -> impl Iterator<Item = Result<Obu<'_>, MediaError>> {
    let mut offset = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || offset >= data.len() {
            return None;
        }
        let result = read_obu(data, offset);
        match &result {
            Ok((_, next)) => offset = *next,
            Err(_) => failed = true,
        }
        Some(result.map(|(obu, _)| obu))
    })
}

fn read_obu(data: &[u8], offset: usize) -> Result<(Obu<'_>, usize), MediaError> {
    let err = |reason: String| MediaError::Av1Obu { offset, reason };
    let first = *data.get(offset).ok_or_else(|| err("empty".into()))?;
    if first & 0x80 != 0 {
        return Err(err(format!(
            "obu_forbidden_bit set in header byte {first:#04x}"
        )));
    }
    let header_len = if first & 0x04 != 0 { 2 } else { 1 };
    let header = data
        .get(offset..offset + header_len)
        .ok_or_else(|| err("extension header byte missing".into()))?;
    let mut at = offset + header_len;
    let payload_len = if first & 0x02 != 0 {
        let (size, used) = leb128(data.get(at..).unwrap_or(&[]))
            .ok_or_else(|| err("obu_size is truncated or longer than 8 bytes".into()))?;
        at += used;
        usize::try_from(size).map_err(|_| err(format!("obu_size {size}")))?
    } else {
        data.len() - at
    };
    let payload = data
        .get(at..at.saturating_add(payload_len))
        .ok_or_else(|| {
            err(format!(
                "obu_size {payload_len} but {} bytes left",
                data.len() - at
            ))
        })?;
    let obu = Obu {
        obu_type: (first >> 3) & 0x0f,
        header,
        payload,
        offset,
    };
    Ok((obu, at + payload_len))
}

/// leb128() of §4.10.5: (value, bytes used).
fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, byte) in data.iter().take(8).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

fn write_leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends `obu` to `out` with `obu_has_size_field = 1`.
fn append_sized(out: &mut Vec<u8>, obu: &Obu<'_>) {
    let mut header = obu.header.iter().copied();
    if let Some(first) = header.next() {
        out.push(first | 0x02);
    }
    out.extend(header);
    write_leb128(out, obu.payload.len());
    out.extend_from_slice(obu.payload);
}

/// Turns a temporal unit as an encoder or Enhanced RTMP sends it into the sample format of the
/// crate docs: temporal delimiters (and padding) dropped, every OBU given a size field.
/// Returns the payload and whether the temporal unit starts with a key frame (the first frame
/// header is a shown KEY_FRAME, §5.9.2), which makes it a sync sample.
pub fn temporal_unit_payload(data: &[u8]) -> Result<(Vec<u8>, bool), MediaError> {
    const OBU_PADDING: u8 = 15;
    let mut out = Vec::with_capacity(data.len()); // alloc: one sample buffer per frame
    let mut keyframe = None;
    let mut reduced_still_picture = false;
    for obu in obus(data) {
        let obu = obu?;
        match obu.obu_type {
            OBU_TEMPORAL_DELIMITER | OBU_PADDING => continue,
            OBU_SEQUENCE_HEADER => {
                // Bit 4 of the payload is reduced_still_picture_header (§5.5.1).
                reduced_still_picture = obu.payload.first().is_some_and(|b| b & 0x08 != 0);
            }
            OBU_FRAME_HEADER | OBU_FRAME if keyframe.is_none() => {
                keyframe = Some(reduced_still_picture || is_shown_key_frame(obu.payload));
            }
            _ => {}
        }
        append_sized(&mut out, &obu);
    }
    Ok((out, keyframe.unwrap_or(false)))
}

/// uncompressed_header() starts show_existing_frame f(1), frame_type f(2), show_frame f(1)
/// (§5.9.2); a key frame is frame_type 0. A hidden key frame, or a shown existing one, is not a
/// random access point on its own.
fn is_shown_key_frame(frame_header: &[u8]) -> bool {
    frame_header.first().is_some_and(|b| b & 0xf0 == 0x10)
}

/// Whether a sample (the sample format of the crate docs) starts with a key frame.
pub fn is_key_temporal_unit(sample: &[u8]) -> bool {
    temporal_unit_payload(sample).is_ok_and(|(_, key)| key)
}

impl Av1Config {
    /// Reads a sequence header OBU (OBU header included, with or without its size field) and
    /// builds the `av1C` record around it. A buffer holding more OBUs (a temporal unit) is
    /// searched for its sequence header.
    pub fn from_sequence_header_obu(data: &[u8]) -> Result<Self, MediaError> {
        let obu = obus(data)
            .find(|obu| !matches!(obu, Ok(obu) if obu.obu_type != OBU_SEQUENCE_HEADER))
            .ok_or_else(|| MediaError::Av1SequenceHeader("no sequence header OBU".into()))??;
        let header = SequenceHeader::parse(obu.payload)?;
        let mut sequence_header = Vec::with_capacity(obu.payload.len() + 4);
        append_sized(&mut sequence_header, &obu);
        let mut record = Vec::with_capacity(4 + sequence_header.len());
        record.extend_from_slice(&header.record_header());
        record.extend_from_slice(&sequence_header);
        Ok(header.into_config(Bytes::from(record), Bytes::from(sequence_header)))
    }

    /// Parses an AV1CodecConfigurationRecord (the body of an `av1C` box or of an Enhanced RTMP
    /// AV1 sequence start). Its configOBUs must hold the sequence header: without it we know
    /// neither the size nor the bit depth.
    pub fn from_record(record: &[u8]) -> Result<Self, MediaError> {
        let bad = |what: String| MediaError::Av1Record(what);
        let [marker_version, _, _, _, config_obus @ ..] = record else {
            return Err(bad(format!(
                "{} bytes, shorter than the 4-byte header",
                record.len()
            )));
        };
        if *marker_version != 0x81 {
            return Err(bad(format!(
                "marker and version byte {marker_version:#04x}, expected 0x81"
            )));
        }
        let obu = obus(config_obus)
            .find(|obu| !matches!(obu, Ok(obu) if obu.obu_type != OBU_SEQUENCE_HEADER))
            .ok_or_else(|| bad("configOBUs hold no sequence header OBU".into()))?
            .map_err(|e| bad(format!("configOBUs: {e}")))?;
        let header = SequenceHeader::parse(obu.payload)?;
        let mut sequence_header = Vec::with_capacity(obu.payload.len() + 4);
        append_sized(&mut sequence_header, &obu);
        Ok(header.into_config(Bytes::copy_from_slice(record), Bytes::from(sequence_header)))
    }

    /// `av01.P.LLT.DD`, e.g. `av01.0.04M.08` (Main profile, level 3.0, Main tier, 8-bit): the
    /// short form, which the binding allows when the colour fields are the defaults and which
    /// players accept for any stream.
    pub fn codec_string(&self) -> String {
        format!(
            "av01.{}.{:02}{}.{:02}",
            self.seq_profile,
            self.seq_level_idx_0,
            if self.seq_tier_0 { 'H' } else { 'M' },
            self.bit_depth
        )
    }
}

/// What we use from a sequence header OBU.
struct SequenceHeader {
    seq_profile: u8,
    seq_level_idx_0: u8,
    seq_tier_0: bool,
    initial_presentation_delay_minus_one: Option<u8>,
    bit_depth: u8,
    monochrome: bool,
    subsampling_x: bool,
    subsampling_y: bool,
    chroma_sample_position: u8,
    width: u32,
    height: u32,
}

impl SequenceHeader {
    fn parse(payload: &[u8]) -> Result<Self, MediaError> {
        Self::read(&mut BitReader::new(payload)).map_err(MediaError::Av1SequenceHeader)
    }

    /// sequence_header_obu() of §5.5.1, through color_config() (§5.5.2).
    fn read(r: &mut BitReader<'_>) -> BitResult<Self> {
        let seq_profile = r.bits32(3, "seq_profile")? as u8;
        if seq_profile > 2 {
            return Err(format!("seq_profile {seq_profile} (0..=2 are defined)"));
        }
        r.flag("still_picture")?;
        let reduced = r.flag("reduced_still_picture_header")?;
        let seq_level_idx_0;
        let mut seq_tier_0 = false;
        let mut initial_presentation_delay_minus_one = None;
        if reduced {
            seq_level_idx_0 = r.bits32(5, "seq_level_idx[0]")? as u8;
        } else {
            let mut decoder_model_info_present = false;
            let mut buffer_delay_length = 0;
            if r.flag("timing_info_present_flag")? {
                r.skip(64, "num_units_in_display_tick and time_scale")?;
                if r.flag("equal_picture_interval")? {
                    r.uvlc("num_ticks_per_picture_minus_1")?;
                }
                decoder_model_info_present = r.flag("decoder_model_info_present_flag")?;
                if decoder_model_info_present {
                    buffer_delay_length = r.bits32(5, "buffer_delay_length_minus_1")? as usize + 1;
                    r.skip(32 + 5 + 5, "decoder_model_info")?;
                }
            }
            let initial_display_delay_present = r.flag("initial_display_delay_present_flag")?;
            let operating_points = r.bits32(5, "operating_points_cnt_minus_1")? + 1;
            let mut first_level = None;
            for index in 0..operating_points {
                r.skip(12, "operating_point_idc")?;
                let level = r.bits32(5, "seq_level_idx")? as u8;
                let tier = level > 7 && r.flag("seq_tier")?;
                if decoder_model_info_present && r.flag("decoder_model_present_for_this_op")? {
                    r.skip(2 * buffer_delay_length + 1, "operating_parameters_info")?;
                }
                let mut delay = None;
                if initial_display_delay_present
                    && r.flag("initial_display_delay_present_for_this_op")?
                {
                    delay = Some(r.bits32(4, "initial_display_delay_minus_1")? as u8);
                }
                if index == 0 {
                    first_level = Some(level);
                    seq_tier_0 = tier;
                    initial_presentation_delay_minus_one = delay;
                }
            }
            // operating_points >= 1, so index 0 was read.
            seq_level_idx_0 = first_level.unwrap_or(0);
        }
        let width_bits = r.bits32(4, "frame_width_bits_minus_1")? + 1;
        let height_bits = r.bits32(4, "frame_height_bits_minus_1")? + 1;
        let width = r.bits32(width_bits, "max_frame_width_minus_1")? + 1;
        let height = r.bits32(height_bits, "max_frame_height_minus_1")? + 1;
        if !reduced && r.flag("frame_id_numbers_present_flag")? {
            r.skip(7, "frame id lengths")?;
        }
        r.skip(
            3,
            "use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter",
        )?;
        if !reduced {
            r.skip(4, "interintra, masked compound, warped motion, dual filter")?;
            let order_hint = r.flag("enable_order_hint")?;
            if order_hint {
                r.skip(2, "enable_jnt_comp and enable_ref_frame_mvs")?;
            }
            let force_screen_content_tools = if r.flag("seq_choose_screen_content_tools")? {
                2
            } else {
                r.bits32(1, "seq_force_screen_content_tools")?
            };
            if force_screen_content_tools > 0 && !r.flag("seq_choose_integer_mv")? {
                r.skip(1, "seq_force_integer_mv")?;
            }
            if order_hint {
                r.skip(3, "order_hint_bits_minus_1")?;
            }
        }
        r.skip(3, "enable_superres, enable_cdef, enable_restoration")?;

        // color_config(), §5.5.2.
        let high_bitdepth = r.flag("high_bitdepth")?;
        let bit_depth = match (seq_profile, high_bitdepth) {
            (2, true) => {
                if r.flag("twelve_bit")? {
                    12
                } else {
                    10
                }
            }
            (_, true) => 10,
            (_, false) => 8,
        };
        let monochrome = seq_profile != 1 && r.flag("mono_chrome")?;
        let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
        if r.flag("color_description_present_flag")? {
            primaries = r.bits32(8, "color_primaries")?;
            transfer = r.bits32(8, "transfer_characteristics")?;
            matrix = r.bits32(8, "matrix_coefficients")?;
        }
        let (mut subsampling_x, mut subsampling_y, mut chroma_sample_position) = (true, true, 0);
        const CP_BT_709: u32 = 1;
        const TC_SRGB: u32 = 13;
        const MC_IDENTITY: u32 = 0;
        if monochrome {
            r.flag("color_range")?;
        } else if primaries == CP_BT_709 && transfer == TC_SRGB && matrix == MC_IDENTITY {
            (subsampling_x, subsampling_y) = (false, false);
        } else {
            r.flag("color_range")?;
            match seq_profile {
                0 => {}
                1 => (subsampling_x, subsampling_y) = (false, false),
                _ if bit_depth == 12 => {
                    subsampling_x = r.flag("subsampling_x")?;
                    subsampling_y = subsampling_x && r.flag("subsampling_y")?;
                }
                _ => (subsampling_x, subsampling_y) = (true, false),
            }
            if subsampling_x && subsampling_y {
                chroma_sample_position = r.bits32(2, "chroma_sample_position")? as u8;
            }
        }
        Ok(SequenceHeader {
            seq_profile,
            seq_level_idx_0,
            seq_tier_0,
            initial_presentation_delay_minus_one,
            bit_depth,
            monochrome,
            subsampling_x,
            subsampling_y,
            chroma_sample_position,
            width,
            height,
        })
    }

    /// The first four bytes of the AV1CodecConfigurationRecord (binding §2.3.3).
    fn record_header(&self) -> [u8; 4] {
        let bit = |flag: bool, shift: u8| u8::from(flag) << shift;
        [
            0x81, // marker 1, version 1
            (self.seq_profile << 5) | (self.seq_level_idx_0 & 0x1f),
            bit(self.seq_tier_0, 7)
                | bit(self.bit_depth > 8, 6)
                | bit(self.bit_depth == 12, 5)
                | bit(self.monochrome, 4)
                | bit(self.subsampling_x, 3)
                | bit(self.subsampling_y, 2)
                | (self.chroma_sample_position & 0x03),
            match self.initial_presentation_delay_minus_one {
                Some(delay) => 0x10 | (delay & 0x0f),
                None => 0,
            },
        ]
    }

    fn into_config(self, record: Bytes, sequence_header: Bytes) -> Av1Config {
        Av1Config {
            record,
            sequence_header,
            seq_profile: self.seq_profile,
            seq_level_idx_0: self.seq_level_idx_0,
            seq_tier_0: self.seq_tier_0,
            bit_depth: self.bit_depth,
            monochrome: self.monochrome,
            chroma_subsampling_x: self.subsampling_x,
            chroma_subsampling_y: self.subsampling_y,
            chroma_sample_position: self.chroma_sample_position,
            width: self.width,
            height: self.height,
        }
    }
}

#[cfg(test)]
#[path = "av1_tests.rs"]
mod tests;
