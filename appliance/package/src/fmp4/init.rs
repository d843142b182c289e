//! The CMAF header (ISO/IEC 23000-19 §7.3.1): `ftyp` + `moov` of one track, with empty sample
//! tables (the samples live in the fragments) and `mvex`/`trex` announcing fragments.

use media::{AacConfig, TrackConfig, TrackKind};

use super::boxes::{put_u16, put_u32, put_unity_matrix, put_zeros, write_box, write_full_box};

/// `iso6` is the first brand that covers everything we write (`tfdt` version 1, default-base-
/// is-moof); `cmfc` says the file is a CMAF track (ISO/IEC 23000-19 §7.2); `dash` lets DASH
/// clients that check brands accept it; `mp41` is for older MP4 readers.
const FTYP_BRANDS: [&[u8; 4]; 4] = [b"iso6", b"cmfc", b"dash", b"mp41"];

/// ISO-639-2/T `und` packed as three 5-bit letters (§8.4.2.3).
const LANGUAGE_UNDETERMINED: u16 = 0x55c4;

/// MPEG-4 Audio in an `esds` DecoderConfigDescriptor (ISO/IEC 14496-1 §7.2.6.6.2, Table 5).
const OBJECT_TYPE_MPEG4_AUDIO: u8 = 0x40;
/// streamType 0x05 (AudioStream) << 2 | upStream 0 | reserved 1 (ISO/IEC 14496-1 §7.2.6.6).
const STREAM_TYPE_AUDIO: u8 = 0x15;

pub(super) fn write_init_segment(out: &mut Vec<u8>, track_id: u32, config: &TrackConfig) {
    write_box(out, b"ftyp", |out| {
        out.extend_from_slice(FTYP_BRANDS[0]);
        put_u32(out, 0);
        for brand in FTYP_BRANDS {
            out.extend_from_slice(brand);
        }
    });
    write_box(out, b"moov", |out| {
        write_mvhd(out, track_id);
        write_box(out, b"trak", |out| {
            write_tkhd(out, track_id, config);
            write_box(out, b"mdia", |out| write_mdia(out, config));
        });
        write_box(out, b"mvex", |out| {
            write_full_box(out, b"trex", 0, 0, |out| {
                put_u32(out, track_id);
                put_u32(out, 1); // default_sample_description_index
                // Every fragment states duration, size and flags per sample in `trun`.
                put_zeros(out, 12);
            });
        });
    });
}

/// §8.2.2. Durations are 0: a live presentation has none yet (and fragments carry the times).
fn write_mvhd(out: &mut Vec<u8>, track_id: u32) {
    write_full_box(out, b"mvhd", 0, 0, |out| {
        put_zeros(out, 8); // creation_time, modification_time
        put_u32(out, 1000); // timescale of the (empty) movie duration
        put_u32(out, 0); // duration
        put_u32(out, 0x0001_0000); // rate 1.0
        put_u16(out, 0x0100); // volume 1.0
        put_zeros(out, 10); // reserved
        put_unity_matrix(out);
        put_zeros(out, 24); // pre_defined
        put_u32(out, track_id.saturating_add(1)); // next_track_ID
    });
}

/// §8.3.2. Flags 3: track_enabled | track_in_movie.
fn write_tkhd(out: &mut Vec<u8>, track_id: u32, config: &TrackConfig) {
    let (volume, (width, height)) = match config.kind() {
        TrackKind::Video => (0, config.video_size().unwrap_or((0, 0))),
        TrackKind::Audio => (0x0100, (0, 0)),
    };
    write_full_box(out, b"tkhd", 0, 3, |out| {
        put_zeros(out, 8); // creation_time, modification_time
        put_u32(out, track_id);
        put_u32(out, 0); // reserved
        put_u32(out, 0); // duration
        put_zeros(out, 8); // reserved
        put_u16(out, 0); // layer
        put_u16(out, 0); // alternate_group
        put_u16(out, volume);
        put_u16(out, 0); // reserved
        put_unity_matrix(out);
        put_u32(out, fixed_16_16(width));
        put_u32(out, fixed_16_16(height));
    });
}

fn fixed_16_16(pixels: u32) -> u32 {
    pixels.min(0xffff) << 16
}

fn write_mdia(out: &mut Vec<u8>, config: &TrackConfig) {
    write_full_box(out, b"mdhd", 0, 0, |out| {
        put_zeros(out, 8); // creation_time, modification_time
        put_u32(out, config.timescale());
        put_u32(out, 0); // duration
        put_u16(out, LANGUAGE_UNDETERMINED);
        put_u16(out, 0); // pre_defined
    });
    let (handler, name): (&[u8; 4], &[u8]) = match config.kind() {
        TrackKind::Video => (b"vide", b"VideoHandler\0"),
        TrackKind::Audio => (b"soun", b"SoundHandler\0"),
    };
    write_full_box(out, b"hdlr", 0, 0, |out| {
        put_u32(out, 0); // pre_defined
        out.extend_from_slice(handler);
        put_zeros(out, 12); // reserved
        out.extend_from_slice(name);
    });
    write_box(out, b"minf", |out| {
        match config.kind() {
            // §12.1.2: vmhd has flags 1; graphicsmode copy, opcolor 0.
            TrackKind::Video => write_full_box(out, b"vmhd", 0, 1, |out| put_zeros(out, 8)),
            // §12.2.2: balance 0 (centre), reserved.
            TrackKind::Audio => write_full_box(out, b"smhd", 0, 0, |out| put_zeros(out, 4)),
        }
        write_box(out, b"dinf", |out| {
            write_full_box(out, b"dref", 0, 0, |out| {
                put_u32(out, 1); // entry_count
                // Flags 1: the media data is in this file.
                write_full_box(out, b"url ", 0, 1, |_| {});
            });
        });
        write_box(out, b"stbl", |out| {
            write_full_box(out, b"stsd", 0, 0, |out| match config {
                TrackConfig::Avc(avc) => {
                    put_u32(out, 1); // entry_count
                    write_visual_sample_entry(
                        out,
                        b"avc1",
                        avc.width,
                        avc.height,
                        b"avcC",
                        &avc.record,
                    );
                }
                TrackConfig::Hevc(hevc) => {
                    put_u32(out, 1);
                    write_visual_sample_entry(
                        out,
                        b"hvc1",
                        hevc.width,
                        hevc.height,
                        b"hvcC",
                        &hevc.record,
                    );
                }
                TrackConfig::Av1(av1) => {
                    put_u32(out, 1);
                    write_visual_sample_entry(
                        out,
                        b"av01",
                        av1.width,
                        av1.height,
                        b"av1C",
                        &av1.record,
                    );
                }
                TrackConfig::Aac(aac) => {
                    put_u32(out, 1);
                    write_mp4a(out, aac);
                }
                // A codec added to `media` before it is added here: an init segment with no
                // sample entry, which players reject with a clear "no codec" rather than
                // misdecoding.
                _ => put_u32(out, 0),
            });
            // Empty tables: in a fragmented file the samples are described by `trun`s.
            for kind in [b"stts", b"stsc", b"stco"] {
                write_full_box(out, kind, 0, 0, |out| put_u32(out, 0));
            }
            write_full_box(out, b"stsz", 0, 0, |out| put_zeros(out, 8));
        });
    });
}

/// The SampleEntry prefix (§8.5.2.2): six reserved bytes and data_reference_index 1.
fn put_sample_entry_prefix(out: &mut Vec<u8>) {
    put_zeros(out, 6);
    put_u16(out, 1);
}

/// A VisualSampleEntry (§12.1.3) with its one configuration box:
/// - `avc1` + `avcC` (ISO/IEC 14496-15 §5.4.2.1). `avc1`, not `avc3`: parameter sets travel in
///   `avcC`, as CMAF's `avc1` tracks require.
/// - `hvc1` + `hvcC` (ISO/IEC 14496-15 §8.4.1). `hvc1`, not `hev1`: the record holds every
///   parameter set (array_completeness 1), which is what Apple's players and CMAF require.
/// - `av01` + `av1C` (AV1-ISOBMFF §2.2, §2.3): the record's configOBUs carry the sequence
///   header OBU.
fn write_visual_sample_entry(
    out: &mut Vec<u8>,
    entry: &[u8; 4],
    width: u32,
    height: u32,
    config_box: &[u8; 4],
    record: &[u8],
) {
    write_box(out, entry, |out| {
        put_sample_entry_prefix(out);
        put_zeros(out, 16); // pre_defined, reserved, pre_defined[3]
        put_u16(out, u16::try_from(width).unwrap_or(u16::MAX));
        put_u16(out, u16::try_from(height).unwrap_or(u16::MAX));
        put_u32(out, 0x0048_0000); // horizresolution 72 dpi
        put_u32(out, 0x0048_0000); // vertresolution 72 dpi
        put_u32(out, 0); // reserved
        put_u16(out, 1); // frame_count
        put_zeros(out, 32); // compressorname: empty
        put_u16(out, 0x0018); // depth: colour, no alpha
        put_u16(out, 0xffff); // pre_defined = -1
        write_box(out, config_box, |out| out.extend_from_slice(record));
    });
}

/// `mp4a` AudioSampleEntry (§12.2.3, ISO/IEC 14496-14 §5.6) with its `esds`.
fn write_mp4a(out: &mut Vec<u8>, aac: &AacConfig) {
    write_box(out, b"mp4a", |out| {
        put_sample_entry_prefix(out);
        put_zeros(out, 8); // reserved
        put_u16(out, u16::from(aac.channels));
        put_u16(out, 16); // samplesize
        put_u16(out, 0); // pre_defined
        put_u16(out, 0); // reserved
        // 16.16 fixed point; rates above 65535 Hz do not fit, and readers take the rate from
        // `mdhd` and the AudioSpecificConfig anyway.
        put_u32(
            out,
            u16::try_from(aac.sample_rate).map_or(0, |rate| u32::from(rate) << 16),
        );
        write_full_box(out, b"esds", 0, 0, |out| write_es_descriptor(out, aac));
    });
}

/// ES_Descriptor (ISO/IEC 14496-1 §7.2.6.5) with DecoderConfigDescriptor, DecoderSpecificInfo
/// (the AudioSpecificConfig) and SLConfigDescriptor, as ISO/IEC 14496-14 §3.1.2 requires.
fn write_es_descriptor(out: &mut Vec<u8>, aac: &AacConfig) {
    write_descriptor(out, 0x03, |out| {
        put_u16(out, 0); // ES_ID: 0 in MP4 files (ISO/IEC 14496-14 §3.1.2)
        out.push(0); // no stream dependence, URL or OCR stream; priority 0
        write_descriptor(out, 0x04, |out| {
            out.push(OBJECT_TYPE_MPEG4_AUDIO);
            out.push(STREAM_TYPE_AUDIO);
            put_zeros(out, 3); // bufferSizeDB: unknown
            put_u32(out, 0); // maxBitrate: unknown
            put_u32(out, 0); // avgBitrate: unknown (variable)
            write_descriptor(out, 0x05, |out| out.extend_from_slice(&aac.asc));
        });
        write_descriptor(out, 0x06, |out| out.push(0x02)); // predefined: MP4 files
    });
}

/// A descriptor (ISO/IEC 14496-1 §8.3.3): tag, then the body size in the 7-bit-per-byte
/// expandable encoding. The size is always written in four bytes (as ffmpeg and most muxers
/// do), so the body can be written first and the size patched without moving it.
fn write_descriptor(out: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(tag);
    let size_at = out.len();
    put_zeros(out, 4);
    body(out);
    // An esds body is a few dozen bytes; 28 bits cover 256 MiB.
    let size = (out.len() - size_at - 4).min(0x0fff_ffff);
    let encoded = [
        0x80 | ((size >> 21) as u8 & 0x7f),
        0x80 | ((size >> 14) as u8 & 0x7f),
        0x80 | ((size >> 7) as u8 & 0x7f),
        size as u8 & 0x7f,
    ];
    if let Some(field) = out.get_mut(size_at..size_at + 4) {
        field.copy_from_slice(&encoded);
    }
}
