//! CMAF fragmented MP4 (ISO/IEC 14496-12, ISO/IEC 23000-19): one track per file.
//! Init segments are `ftyp` + `moov`; media segments are `styp` + `moof` + `mdat`.
//!
//! What we write, box by box, and why the box writer is our own (not `mp4-atom`): see
//! docs/containers.md. In short: a CMAF header (§7.3.1 of ISO/IEC 23000-19) with empty sample
//! tables, `mvex`/`trex`, `avc1`+`avcC`, `hvc1`+`hvcC`, `av01`+`av1C` or `mp4a`+`esds`; and CMAF segments of one fragment each,
//! with `tfhd` default-base-is-moof (§8.8.7.1 of ISO/IEC 14496-12), `tfdt` version 1 and a `trun`
//! that states every sample's duration, size, flags and (when any is non-zero) composition
//! offset. Not written: `sidx`, edit lists, encryption boxes (`senc`, `pssh`), `emsg`.

mod boxes;
mod init;

use bytes::Bytes;
use media::{AccessUnit, TrackConfig};

use boxes::{put_u32, put_u64, write_box, write_full_box};

/// One sample of a media segment, on its track's timescale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Decode time of the sample.
    pub dts: i64,
    /// Decode duration: the next sample's dts minus this one's.
    pub duration: u32,
    /// pts minus dts (non-zero with B-frames).
    pub composition_offset: i32,
    /// A sync sample (IDR for H.264, IRAP for HEVC, key frame for AV1; every AAC frame).
    pub keyframe: bool,
    /// The sample bytes exactly as they go into `mdat`.
    pub data: Bytes,
}

impl Sample {
    /// The sample of an access unit whose successor in decode order starts `duration` ticks
    /// later. The payload is shared, not copied. A composition offset beyond ±2^31 ticks
    /// (hours) cannot be written and is clamped.
    pub fn from_unit(unit: &AccessUnit, duration: u32) -> Sample {
        let offset = unit.pts.saturating_sub(unit.dts);
        Sample {
            dts: unit.dts,
            duration,
            composition_offset: i32::try_from(offset).unwrap_or(if offset < 0 {
                i32::MIN
            } else {
                i32::MAX
            }),
            keyframe: unit.keyframe,
            data: unit.payload.clone(),
        }
    }
}

/// `sample_flags` of a sync sample (ISO/IEC 14496-12 §8.8.3.1): sample_depends_on = 2 (it
/// depends on no other sample), sample_is_non_sync_sample = 0.
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_flags` of any other sample: sample_depends_on = 1, sample_is_non_sync_sample = 1.
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// `tfhd` flag: sample data offsets count from the start of this `moof` (§8.8.7.1).
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags (§8.8.8.1).
const TRUN_DATA_OFFSET: u32 = 0x00_0001;
const TRUN_SAMPLE_DURATION: u32 = 0x00_0100;
const TRUN_SAMPLE_SIZE: u32 = 0x00_0200;
const TRUN_SAMPLE_FLAGS: u32 = 0x00_0400;
const TRUN_COMPOSITION_OFFSETS: u32 = 0x00_0800;

/// The CMAF header of one track: `ftyp` + `moov` (with `avcC`, `hvcC`, `av1C` or `esds`, and
/// `mvex`).
pub fn init_segment(track_id: u32, config: &TrackConfig) -> Bytes {
    let mut out = Vec::with_capacity(768);
    init::write_init_segment(&mut out, track_id, config);
    Bytes::from(out)
}

/// One CMAF fragment as a segment: `styp` + `moof` (`mfhd` with `sequence_number`,
/// `traf` with `tfhd`, `tfdt` version 1 = `samples[0].dts`, `trun`) + `mdat`.
/// `samples` must be non-empty and in decode order.
///
/// A negative first dts cannot be written in `tfdt` and is written as 0; an empty `samples`
/// gives a fragment with no samples. The `trun` is version 1 (signed offsets) only when some
/// composition offset is negative, so streams without them stay readable by version-0 readers.
pub fn media_segment(sequence_number: u32, track_id: u32, samples: &[Sample]) -> Bytes {
    let data_len: usize = samples.iter().map(|sample| sample.data.len()).sum();
    // alloc: one buffer per segment, sized up front so the sample copy does not reallocate.
    let mut out = Vec::with_capacity(data_len + 128 + samples.len() * 16);

    // ISO/IEC 23000-19 §7.3.3.2: a CMAF segment may start with `styp` naming `cmfs`; `msdh`
    // marks a DASH media segment (ISO/IEC 23009-1 §6.3.4.2).
    write_box(&mut out, b"styp", |out| {
        out.extend_from_slice(b"msdh");
        put_u32(out, 0);
        out.extend_from_slice(b"msdh");
        out.extend_from_slice(b"cmfs");
    });

    let moof_start = out.len();
    let mut data_offset_at = None;
    write_box(&mut out, b"moof", |out| {
        write_full_box(out, b"mfhd", 0, 0, |out| put_u32(out, sequence_number));
        write_box(out, b"traf", |out| {
            write_full_box(out, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |out| {
                put_u32(out, track_id);
            });
            let base_decode_time = samples.first().map_or(0, |first| first.dts.max(0));
            write_full_box(out, b"tfdt", 1, 0, |out| {
                put_u64(out, base_decode_time as u64)
            });
            data_offset_at = Some(write_trun(out, samples));
        });
    });
    let moof_len = out.len() - moof_start;

    // A 32-bit size unless the data needs the 64-bit largesize form (§4.2.2).
    let mdat_header_len = match u32::try_from(data_len + 8) {
        Ok(size) => {
            put_u32(&mut out, size);
            out.extend_from_slice(b"mdat");
            8
        }
        Err(_) => {
            put_u32(&mut out, 1);
            out.extend_from_slice(b"mdat");
            put_u64(&mut out, data_len as u64 + 16);
            16
        }
    };
    // The first sample's byte is this far from the start of `moof`.
    let data_offset = u32::try_from(moof_len + mdat_header_len).unwrap_or(u32::MAX);
    if let Some(field) = data_offset_at.and_then(|at| out.get_mut(at..at + 4)) {
        field.copy_from_slice(&data_offset.to_be_bytes());
    }
    for sample in samples {
        out.extend_from_slice(&sample.data);
    }
    Bytes::from(out)
}

/// Writes the `trun` and returns where its data_offset field is, to be patched once the size
/// of `moof` is known.
fn write_trun(out: &mut Vec<u8>, samples: &[Sample]) -> usize {
    let with_offsets = samples.iter().any(|sample| sample.composition_offset != 0);
    let version = u8::from(samples.iter().any(|sample| sample.composition_offset < 0));
    let mut flags = TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE | TRUN_SAMPLE_FLAGS;
    if with_offsets {
        flags |= TRUN_COMPOSITION_OFFSETS;
    }
    let mut data_offset_at = 0;
    write_full_box(out, b"trun", version, flags, |out| {
        put_u32(out, u32::try_from(samples.len()).unwrap_or(u32::MAX));
        data_offset_at = out.len();
        put_u32(out, 0);
        for sample in samples {
            put_u32(out, sample.duration);
            put_u32(out, u32::try_from(sample.data.len()).unwrap_or(u32::MAX));
            put_u32(
                out,
                if sample.keyframe {
                    SYNC_SAMPLE_FLAGS
                } else {
                    NON_SYNC_SAMPLE_FLAGS
                },
            );
            if with_offsets {
                // Version 0 reads this as unsigned, version 1 as signed: the same bits either
                // way for the non-negative offsets version 0 is used with.
                out.extend_from_slice(&sample.composition_offset.to_be_bytes());
            }
        }
    });
    data_offset_at
}

#[cfg(test)]
mod tests;
