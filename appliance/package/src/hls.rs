//! HLS playlist writers (RFC 8216 and its successor draft-pantos-hls-rfc8216bis).
//!
//! Pure renderers: each takes a small description of the playlist (built by
//! [`crate::live::LivePackager`] from its segment index) and returns the text. No state, no clock.
//!
//! What we write and why (see also docs/packaging.md):
//! - Media playlists (§4.4.3): `EXT-X-TARGETDURATION` (§4.4.3.1), `EXT-X-MEDIA-SEQUENCE`
//!   (§4.4.3.2), `EXT-X-DISCONTINUITY-SEQUENCE` (§4.4.3.3) once a discontinuity has slid out of
//!   the window, `EXT-X-INDEPENDENT-SEGMENTS` (§4.4.2.1: every segment starts with an IDR),
//!   `EXT-X-MAP` (§4.4.4.5) for fMP4, `EXT-X-PROGRAM-DATE-TIME` (§4.4.4.6) on every segment,
//!   `EXTINF` (§4.4.4.1) with six decimals, `EXT-X-DISCONTINUITY` (§4.4.4.3), `EXT-X-GAP`
//!   (§4.4.4.7) for a track that has no media for a segment, `EXT-X-ENDLIST` (§4.4.3.4).
//! - `EXT-X-VERSION` is the lowest that is correct (§7): 6 for fMP4 playlists (EXT-X-MAP
//!   outside an I-frame playlist), 3 for TS playlists and the multivariant playlist (decimal
//!   EXTINF; nothing in the multivariant needs more).
//! - Multivariant playlist (§4.4.6): `EXT-X-MEDIA` for the audio rendition group (§4.4.6.1) and
//!   one `EXT-X-STREAM-INF` (§4.4.6.2) per video rendition (the source and each transcoded
//!   rung) with BANDWIDTH, AVERAGE-BANDWIDTH, CODECS, RESOLUTION, FRAME-RATE and AUDIO; every
//!   variant refers to the same audio group.

use std::fmt::Write as _;

/// Container of a media playlist's segments, which decides the version and `EXT-X-MAP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentFormat {
    /// CMAF fMP4 (`N.m4s` after an `EXT-X-MAP` init segment).
    Fmp4,
    /// MPEG-TS (`N.ts`, self-initialising).
    Ts,
}

impl SegmentFormat {
    fn extension(self) -> &'static str {
        match self {
            SegmentFormat::Fmp4 => "m4s",
            SegmentFormat::Ts => "ts",
        }
    }
}

/// One segment as a media playlist lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaylistSegment {
    /// The media sequence number; the URI is `<number>.<m4s|ts>`.
    pub number: u64,
    /// Exact duration as `ticks / timescale` seconds.
    pub duration_ticks: u64,
    pub timescale: u32,
    /// Wall-clock time of the segment's first sample, Unix ms.
    pub program_date_time_ms: i64,
    /// `EXT-X-DISCONTINUITY` goes before this segment.
    pub discontinuity: bool,
    /// The track has no media for this segment (`EXT-X-GAP`): the URI is not fetchable.
    pub gap: bool,
    /// The init segment this segment needs (fMP4 only), relative to the playlist.
    pub init_uri: Option<String>,
}

/// A media playlist: one rendition's sliding window of segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaPlaylist {
    pub format: SegmentFormat,
    /// `EXT-X-TARGETDURATION` in whole seconds.
    pub target_duration_secs: u64,
    /// Discontinuities that have left the window (`EXT-X-DISCONTINUITY-SEQUENCE`).
    pub discontinuity_sequence: u64,
    /// The listed segments, oldest first. The first one's number is `EXT-X-MEDIA-SEQUENCE`.
    pub segments: Vec<PlaylistSegment>,
    /// The stream has ended: `EXT-X-ENDLIST`.
    pub ended: bool,
}

/// One variant (`EXT-X-STREAM-INF`) of a multivariant playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Peak segment bit rate, bits/s (video and audio together).
    pub bandwidth: u64,
    /// Average segment bit rate, bits/s.
    pub average_bandwidth: u64,
    /// RFC 6381 codec strings of every track, e.g. `["avc1.64001f", "mp4a.40.2"]`.
    pub codecs: Vec<String>,
    /// `RESOLUTION` (video only).
    pub resolution: Option<(u32, u32)>,
    /// `FRAME-RATE` as frames per (numerator, denominator) seconds (video only).
    pub frame_rate: Option<(u32, u32)>,
    /// URI of the variant's media playlist.
    pub uri: String,
}

/// The audio rendition of a multivariant playlist with video (`EXT-X-MEDIA`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioRendition {
    pub name: String,
    pub channels: u8,
    pub uri: String,
}

/// A multivariant playlist: its variants and at most one audio rendition, shared by all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultivariantPlaylist {
    /// In the order they are listed; clients that do not measure first start with the first.
    pub variants: Vec<Variant>,
    /// `None` for video-only and for audio-only streams (whose variant *is* the audio).
    pub audio: Option<AudioRendition>,
}

/// The group id that ties `EXT-X-MEDIA` to `EXT-X-STREAM-INF:AUDIO`.
const AUDIO_GROUP: &str = "audio";

/// Renders a media playlist (RFC 8216bis §4.4.3, §4.4.4).
pub fn render_media_playlist(playlist: &MediaPlaylist) -> String {
    // alloc: one string per playlist change, rendered once and served to every viewer.
    let mut out = String::with_capacity(160 + playlist.segments.len() * 120);
    let version = match playlist.format {
        SegmentFormat::Fmp4 => 6,
        SegmentFormat::Ts => 3,
    };
    let media_sequence = playlist.segments.first().map_or(0, |s| s.number);
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{}\n\
         #EXT-X-MEDIA-SEQUENCE:{media_sequence}\n",
        playlist.target_duration_secs
    );
    if playlist.discontinuity_sequence > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            playlist.discontinuity_sequence
        );
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let mut current_map: Option<&str> = None;
    for segment in &playlist.segments {
        // The discontinuity sequence counts only tags that have left the window (§6.2.2), so
        // a listed first segment keeps its tag.
        if segment.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(init) = segment.init_uri.as_deref()
            && playlist.format == SegmentFormat::Fmp4
            && current_map != Some(init)
        {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{init}\"");
            current_map = Some(init);
        }
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            format_date_time(segment.program_date_time_ms)
        );
        if segment.gap {
            out.push_str("#EXT-X-GAP\n");
        }
        let _ = writeln!(
            out,
            "#EXTINF:{},\n{}.{}",
            format_seconds(segment.duration_ticks, segment.timescale, 6),
            segment.number,
            playlist.format.extension()
        );
    }
    if playlist.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// Renders a multivariant playlist (RFC 8216bis §4.4.6).
pub fn render_multivariant_playlist(playlist: &MultivariantPlaylist) -> String {
    let mut out = String::with_capacity(400);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let Some(audio) = &playlist.audio {
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{AUDIO_GROUP}\",NAME=\"{}\",DEFAULT=YES,\
             AUTOSELECT=YES,CHANNELS=\"{}\",URI=\"{}\"",
            audio.name, audio.channels, audio.uri
        );
    }
    for variant in &playlist.variants {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"",
            variant.bandwidth,
            variant.average_bandwidth,
            variant.codecs.join(",")
        );
        if let Some((width, height)) = variant.resolution {
            let _ = write!(out, ",RESOLUTION={width}x{height}");
        }
        if let Some((frames, seconds)) = variant.frame_rate {
            let rate = format_seconds(u64::from(frames), seconds, 3);
            let _ = write!(out, ",FRAME-RATE={rate}");
        }
        if playlist.audio.is_some() {
            let _ = write!(out, ",AUDIO=\"{AUDIO_GROUP}\"");
        }
        let _ = writeln!(out, "\n{}", variant.uri);
    }
    out
}

/// `ticks / timescale` seconds as a decimal with `decimals` digits, rounded to nearest, in
/// integer arithmetic so that no float error reaches a playlist.
pub(crate) fn format_seconds(ticks: u64, timescale: u32, decimals: u32) -> String {
    let scale = 10u128.pow(decimals);
    let timescale = u128::from(timescale.max(1));
    let scaled = (u128::from(ticks) * scale * 2 + timescale) / (timescale * 2);
    let whole = scaled / scale;
    let fraction = scaled % scale;
    format!("{whole}.{fraction:0width$}", width = decimals as usize)
}

/// Unix ms as an ISO 8601 / RFC 3339 UTC date-time with milliseconds, e.g.
/// `2024-03-01T12:00:00.000Z`, as `EXT-X-PROGRAM-DATE-TIME` and xs:dateTime want it.
pub fn format_date_time(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    let (second, ms) = (ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{ms:03}Z")
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): H. Hinnant's
/// `civil_from_days` (http://howardhinnant.github.io/date_algorithms.html).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(number: u64, ticks: u64, pdt: i64) -> PlaylistSegment {
        PlaylistSegment {
            number,
            duration_ticks: ticks,
            timescale: 90_000,
            program_date_time_ms: pdt,
            discontinuity: false,
            gap: false,
            init_uri: Some("init.mp4".into()),
        }
    }

    #[test]
    fn date_time_formats() {
        assert_eq!(format_date_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_date_time(1_709_294_400_123),
            "2024-03-01T12:00:00.123Z"
        );
        assert_eq!(
            format_date_time(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(format_date_time(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn seconds_format_rounds() {
        assert_eq!(format_seconds(180_180, 90_000, 6), "2.002000");
        assert_eq!(format_seconds(96_256, 48_000, 6), "2.005333");
        assert_eq!(format_seconds(2, 3, 3), "0.667");
        assert_eq!(format_seconds(0, 0, 3), "0.000");
    }

    #[test]
    fn fmp4_media_playlist_text() {
        let mut second = segment(8, 180_180, 1_709_294_402_002);
        second.discontinuity = true;
        second.init_uri = Some("init-1.mp4".into());
        let playlist = MediaPlaylist {
            format: SegmentFormat::Fmp4,
            target_duration_secs: 2,
            discontinuity_sequence: 0,
            segments: vec![segment(7, 180_000, 1_709_294_400_000), second],
            ended: false,
        };
        assert_eq!(
            render_media_playlist(&playlist),
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2024-03-01T12:00:00.000Z\n#EXTINF:2.000000,\n7.m4s\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-1.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2024-03-01T12:00:02.002Z\n#EXTINF:2.002000,\n8.m4s\n"
        );
    }

    #[test]
    fn ended_ts_playlist_with_gap_and_discontinuity_sequence() {
        let mut first = segment(20, 180_000, 0);
        first.discontinuity = true;
        first.init_uri = None;
        let mut gap = segment(21, 90_000, 2000);
        gap.gap = true;
        let playlist = MediaPlaylist {
            format: SegmentFormat::Ts,
            target_duration_secs: 3,
            discontinuity_sequence: 2,
            segments: vec![first, gap],
            ended: true,
        };
        assert_eq!(
            render_media_playlist(&playlist),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:20\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:2\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:00.000Z\n#EXTINF:2.000000,\n20.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:02.000Z\n#EXT-X-GAP\n\
             #EXTINF:1.000000,\n21.ts\n#EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn multivariant_with_audio_group() {
        let playlist = MultivariantPlaylist {
            variants: vec![
                Variant {
                    bandwidth: 2_500_000,
                    average_bandwidth: 2_000_000,
                    codecs: vec!["avc1.64001f".into(), "mp4a.40.2".into()],
                    resolution: Some((1280, 720)),
                    frame_rate: Some((30_000, 1001)),
                    uri: "source/index.m3u8".into(),
                },
                Variant {
                    bandwidth: 900_000,
                    average_bandwidth: 700_000,
                    codecs: vec!["avc1.64001e".into(), "mp4a.40.2".into()],
                    resolution: Some((640, 360)),
                    frame_rate: Some((30, 1)),
                    uri: "360p/index.m3u8".into(),
                },
            ],
            audio: Some(AudioRendition {
                name: "audio".into(),
                channels: 2,
                uri: "audio/index.m3u8".into(),
            }),
        };
        assert_eq!(
            render_multivariant_playlist(&playlist),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,\
             AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,\
             CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=29.970,\
             AUDIO=\"audio\"\nsource/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=700000,\
             CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=30.000,\
             AUDIO=\"audio\"\n360p/index.m3u8\n"
        );
    }

    #[test]
    fn audio_only_multivariant() {
        let playlist = MultivariantPlaylist {
            variants: vec![Variant {
                bandwidth: 130_000,
                average_bandwidth: 128_000,
                codecs: vec!["mp4a.40.2".into()],
                resolution: None,
                frame_rate: None,
                uri: "audio/index.m3u8".into(),
            }],
            audio: None,
        };
        assert_eq!(
            render_multivariant_playlist(&playlist),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=130000,AVERAGE-BANDWIDTH=128000,\
             CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n"
        );
    }
}
