//! DASH MPD writer (ISO/IEC 23009-1, profile `urn:mpeg:dash:profile:isoff-live:2011`, §8.4).
//!
//! A pure renderer: [`render_mpd`] takes a description of the presentation (built by
//! [`crate::live::LivePackager`]) and returns the XML. What we write and why:
//! - `MPD@type` dynamic while live, static once the stream has ended (§5.3.1.2), with
//!   `availabilityStartTime` (wall clock of media time 0), `publishTime`, `minimumUpdatePeriod`,
//!   `timeShiftBufferDepth`, `suggestedPresentationDelay`, `minBufferTime` and
//!   `maxSegmentDuration`; static adds `mediaPresentationDuration`.
//! - One `Period` per publisher session (§5.3.2): a returning publisher starts a new Period at its
//!   place on the timeline, which is how dash.js expects a discontinuity.
//! - Per Period, one video `AdaptationSet` per codec family (`avc1`, `av01`: players switch
//!   only within a set and not across codecs) and one audio one (CMAF: one track per file), each with
//!   a `SegmentTemplate` (§5.3.9.4) using `$RepresentationID$` and `$Number$`, and a
//!   `SegmentTimeline` (§5.3.9.6) with exact durations, run-length coded with `@r`. The video
//!   AdaptationSet has one `Representation` per video rendition (the source and each
//!   transcoded rung); they share the template and timeline, which is what aligned IDRs and
//!   shared segment numbers buy (`segmentAlignment`, §5.3.3.2).
//! - `UTCTiming` (§5.8.4.11) with `urn:mpeg:dash:utc:direct:2014`, so clients measure their
//!   offset to our clock instead of trusting their own.

use std::fmt::Write as _;

use crate::hls::{format_date_time, format_seconds};

/// Whether the presentation is still live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MpdKind {
    /// `type="dynamic"`: clients reload the MPD at least every `minimum_update_period_ms`.
    Dynamic {
        minimum_update_period_ms: u64,
        time_shift_buffer_depth_ms: u64,
        suggested_presentation_delay_ms: u64,
    },
    /// `type="static"`: the stream ended; the MPD will not change again.
    Static {
        /// `mediaPresentationDuration`, in 90 kHz ticks.
        duration_ticks: u64,
    },
}

/// A whole MPD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mpd {
    pub kind: MpdKind,
    /// Wall clock of media time 0, Unix ms.
    pub availability_start_ms: i64,
    /// When this MPD was rendered, Unix ms; also the `UTCTiming` value.
    pub publish_time_ms: i64,
    pub min_buffer_time_ms: u64,
    pub max_segment_duration_ms: u64,
    pub periods: Vec<Period>,
}

/// One Period: one publisher session's stretch of the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    pub id: String,
    /// `Period@start` in 90 kHz ticks from the start of the presentation.
    pub start_ticks: u64,
    pub video: Option<VideoAdaptationSet>,
    pub audio: Option<AudioAdaptationSet>,
}

/// The `SegmentTemplate` + `SegmentTimeline` of one Representation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentTimeline {
    pub timescale: u32,
    /// Media time (in `timescale`) that maps to the Period start.
    pub presentation_time_offset: u64,
    /// File name of the init segment inside the representation's folder, e.g. `init.mp4`.
    pub init_name: String,
    /// The `$Number$` of the first entry.
    pub start_number: u64,
    /// `(t, d)` of every listed segment, in order, in `timescale` units.
    pub segments: Vec<(u64, u64)>,
}

/// One video Representation; its `id` is also the folder its segments live in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoRepresentation {
    pub id: String,
    pub codecs: String,
    pub width: u32,
    pub height: u32,
    /// Frames per second as (numerator, denominator).
    pub frame_rate: (u32, u32),
    pub bandwidth: u64,
}

/// The video AdaptationSet: every video rendition over one shared segment timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoAdaptationSet {
    /// The source (`VIDEO_REPRESENTATION`) first, then the rungs.
    pub representations: Vec<VideoRepresentation>,
    pub timeline: SegmentTimeline,
}

/// The audio AdaptationSet with its single Representation `audio`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioAdaptationSet {
    pub codecs: String,
    pub sample_rate: u32,
    pub channels: u8,
    pub bandwidth: u64,
    pub timeline: SegmentTimeline,
}

/// The Representation ids, which are also the folders the segments live in.
pub const VIDEO_REPRESENTATION: &str = "source";
pub const AUDIO_REPRESENTATION: &str = "audio";

/// Renders the MPD as XML.
pub fn render_mpd(mpd: &Mpd) -> String {
    // alloc: one string per MPD change, rendered once and served to every viewer.
    let mut out = String::with_capacity(2048);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
         profiles=\"urn:mpeg:dash:profile:isoff-live:2011\"",
    );
    match &mpd.kind {
        MpdKind::Dynamic {
            minimum_update_period_ms,
            time_shift_buffer_depth_ms,
            suggested_presentation_delay_ms,
        } => {
            let _ = write!(
                out,
                " type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" \
                 minimumUpdatePeriod=\"{}\" timeShiftBufferDepth=\"{}\" \
                 suggestedPresentationDelay=\"{}\"",
                format_date_time(mpd.availability_start_ms),
                format_date_time(mpd.publish_time_ms),
                duration_ms(*minimum_update_period_ms),
                duration_ms(*time_shift_buffer_depth_ms),
                duration_ms(*suggested_presentation_delay_ms),
            );
        }
        MpdKind::Static { duration_ticks } => {
            let _ = write!(
                out,
                " type=\"static\" availabilityStartTime=\"{}\" publishTime=\"{}\" \
                 mediaPresentationDuration=\"{}\"",
                format_date_time(mpd.availability_start_ms),
                format_date_time(mpd.publish_time_ms),
                duration_ticks_90k(*duration_ticks),
            );
        }
    }
    let _ = writeln!(
        out,
        " minBufferTime=\"{}\" maxSegmentDuration=\"{}\">",
        duration_ms(mpd.min_buffer_time_ms),
        duration_ms(mpd.max_segment_duration_ms)
    );
    for period in &mpd.periods {
        render_period(&mut out, period);
    }
    let _ = writeln!(
        out,
        "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"{}\"/>",
        format_date_time(mpd.publish_time_ms)
    );
    out.push_str("</MPD>\n");
    out
}

fn render_period(out: &mut String, period: &Period) {
    let _ = writeln!(
        out,
        "  <Period id=\"{}\" start=\"{}\">",
        escape(&period.id),
        duration_ticks_90k(period.start_ticks)
    );
    if let Some(video) = &period.video {
        // One AdaptationSet per codec family (`avc1`, `hvc1`, `av01`, ...): players switch
        // Representations only within a set, and cannot switch codecs mid-stream (§5.3.3.1:
        // Representations of a set are perceptually equivalent and seamlessly switchable).
        // The first set keeps id 0; further ones take ids from 2 on (1 is audio's).
        let mut families: Vec<&str> = Vec::new();
        for representation in &video.representations {
            let family = codec_family(&representation.codecs);
            if !families.contains(&family) {
                families.push(family);
            }
        }
        for (index, family) in families.iter().enumerate() {
            let id = if index == 0 { 0 } else { index + 1 };
            render_video_set(out, video, id, family);
        }
    }
    render_audio_set(out, period);
    out.push_str("  </Period>\n");
}

/// The video AdaptationSet `id` with the Representations whose codecs are of `family`.
fn render_video_set(out: &mut String, video: &VideoAdaptationSet, id: usize, family: &str) {
    let _ = writeln!(
        out,
        "    <AdaptationSet id=\"{id}\" contentType=\"video\" mimeType=\"video/mp4\" \
         segmentAlignment=\"true\" startWithSAP=\"1\">"
    );
    render_template(out, &video.timeline);
    for representation in &video.representations {
        if codec_family(&representation.codecs) != family {
            continue;
        }
        let (num, den) = representation.frame_rate;
        let frame_rate = if den == 1 {
            num.to_string()
        } else {
            format!("{num}/{den}")
        };
        let _ = writeln!(
            out,
            "      <Representation id=\"{}\" codecs=\"{}\" width=\"{}\" \
             height=\"{}\" frameRate=\"{frame_rate}\" sar=\"1:1\" bandwidth=\"{}\"/>",
            escape(&representation.id),
            escape(&representation.codecs),
            representation.width,
            representation.height,
            representation.bandwidth
        );
    }
    out.push_str("    </AdaptationSet>\n");
}

/// The sample entry of an RFC 6381 codecs string (`av01` of `av01.0.04M.08`).
fn codec_family(codecs: &str) -> &str {
    codecs.split('.').next().unwrap_or(codecs)
}

fn render_audio_set(out: &mut String, period: &Period) {
    if let Some(audio) = &period.audio {
        out.push_str(
            "    <AdaptationSet id=\"1\" contentType=\"audio\" mimeType=\"audio/mp4\" \
             lang=\"und\" segmentAlignment=\"true\" startWithSAP=\"1\">\n",
        );
        let _ = writeln!(
            out,
            "      <AudioChannelConfiguration \
             schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" \
             value=\"{}\"/>",
            audio.channels
        );
        render_template(out, &audio.timeline);
        let _ = writeln!(
            out,
            "      <Representation id=\"{AUDIO_REPRESENTATION}\" codecs=\"{}\" \
             audioSamplingRate=\"{}\" bandwidth=\"{}\"/>",
            escape(&audio.codecs),
            audio.sample_rate,
            audio.bandwidth
        );
        out.push_str("    </AdaptationSet>\n");
    }
}

fn render_template(out: &mut String, timeline: &SegmentTimeline) {
    let _ = writeln!(
        out,
        "      <SegmentTemplate timescale=\"{}\" presentationTimeOffset=\"{}\" \
         initialization=\"$RepresentationID$/{}\" media=\"$RepresentationID$/$Number$.m4s\" \
         startNumber=\"{}\">",
        timeline.timescale,
        timeline.presentation_time_offset,
        escape(&timeline.init_name),
        timeline.start_number
    );
    out.push_str("        <SegmentTimeline>\n");
    // Run-length code equal, contiguous durations (§5.3.9.6.1: `@r` repeats, `@t` only where
    // the timeline does not simply continue).
    let mut run: Option<(u64, u64, u64)> = None; // (t, d, repeats)
    let mut next_t: Option<u64> = None;
    let flush = |out: &mut String, run: (u64, u64, u64), with_t: bool| {
        let (t, d, r) = run;
        out.push_str("          <S");
        if with_t {
            let _ = write!(out, " t=\"{t}\"");
        }
        let _ = write!(out, " d=\"{d}\"");
        if r > 0 {
            let _ = write!(out, " r=\"{r}\"");
        }
        out.push_str("/>\n");
    };
    let mut run_has_t = true;
    for &(t, d) in &timeline.segments {
        match run {
            Some((run_t, run_d, r)) if next_t == Some(t) && run_d == d => {
                run = Some((run_t, run_d, r + 1));
            }
            _ => {
                if let Some(previous) = run {
                    flush(out, previous, run_has_t);
                }
                run_has_t = next_t != Some(t);
                run = Some((t, d, 0));
            }
        }
        next_t = Some(t + d);
    }
    if let Some(previous) = run {
        flush(out, previous, run_has_t);
    }
    out.push_str("        </SegmentTimeline>\n      </SegmentTemplate>\n");
}

/// xs:duration of a number of milliseconds, e.g. `PT2.000S`.
fn duration_ms(ms: u64) -> String {
    format!("PT{}S", format_seconds(ms, 1000, 3))
}

/// xs:duration of a number of 90 kHz ticks, to the microsecond.
fn duration_ticks_90k(ticks: u64) -> String {
    format!("PT{}S", format_seconds(ticks, media::VIDEO_TIMESCALE, 6))
}

/// Escapes the XML special characters of an attribute value. Our values are codec strings and
/// numbers, but a codec string comes from the publisher's bytes.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(timescale: u32, segments: Vec<(u64, u64)>) -> SegmentTimeline {
        SegmentTimeline {
            timescale,
            presentation_time_offset: 0,
            init_name: "init.mp4".into(),
            start_number: 3,
            segments,
        }
    }

    #[test]
    fn dynamic_mpd_text() {
        let mpd = Mpd {
            kind: MpdKind::Dynamic {
                minimum_update_period_ms: 2000,
                time_shift_buffer_depth_ms: 12_000,
                suggested_presentation_delay_ms: 6000,
            },
            availability_start_ms: 1_709_294_400_000,
            publish_time_ms: 1_709_294_410_500,
            min_buffer_time_ms: 2000,
            max_segment_duration_ms: 2002,
            periods: vec![Period {
                id: "0".into(),
                start_ticks: 0,
                video: Some(VideoAdaptationSet {
                    representations: vec![
                        VideoRepresentation {
                            id: VIDEO_REPRESENTATION.into(),
                            codecs: "avc1.64001f".into(),
                            width: 1280,
                            height: 720,
                            frame_rate: (30, 1),
                            bandwidth: 2_000_000,
                        },
                        VideoRepresentation {
                            id: "360p".into(),
                            codecs: "avc1.64001e".into(),
                            width: 640,
                            height: 360,
                            frame_rate: (30, 1),
                            bandwidth: 800_000,
                        },
                    ],
                    timeline: timeline(90_000, vec![(6006, 180_000), (186_006, 180_000)]),
                }),
                audio: Some(AudioAdaptationSet {
                    codecs: "mp4a.40.2".into(),
                    sample_rate: 48_000,
                    channels: 2,
                    bandwidth: 130_000,
                    timeline: timeline(48_000, vec![(3072, 96_256), (99_328, 95_232)]),
                }),
            }],
        };
        let expected = r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic" availabilityStartTime="2024-03-01T12:00:00.000Z" publishTime="2024-03-01T12:00:10.500Z" minimumUpdatePeriod="PT2.000S" timeShiftBufferDepth="PT12.000S" suggestedPresentationDelay="PT6.000S" minBufferTime="PT2.000S" maxSegmentDuration="PT2.002S">
  <Period id="0" start="PT0.000000S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">
      <SegmentTemplate timescale="90000" presentationTimeOffset="0" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s" startNumber="3">
        <SegmentTimeline>
          <S t="6006" d="180000" r="1"/>
        </SegmentTimeline>
      </SegmentTemplate>
      <Representation id="source" codecs="avc1.64001f" width="1280" height="720" frameRate="30" sar="1:1" bandwidth="2000000"/>
      <Representation id="360p" codecs="avc1.64001e" width="640" height="360" frameRate="30" sar="1:1" bandwidth="800000"/>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" lang="und" segmentAlignment="true" startWithSAP="1">
      <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>
      <SegmentTemplate timescale="48000" presentationTimeOffset="0" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s" startNumber="3">
        <SegmentTimeline>
          <S t="3072" d="96256"/>
          <S d="95232"/>
        </SegmentTimeline>
      </SegmentTemplate>
      <Representation id="audio" codecs="mp4a.40.2" audioSamplingRate="48000" bandwidth="130000"/>
    </AdaptationSet>
  </Period>
  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:direct:2014" value="2024-03-01T12:00:10.500Z"/>
</MPD>
"#;
        assert_eq!(render_mpd(&mpd), expected);
    }

    #[test]
    fn each_video_codec_gets_its_own_adaptation_set() {
        let representation = |id: &str, codecs: &str| VideoRepresentation {
            id: id.into(),
            codecs: codecs.into(),
            width: 320,
            height: 180,
            frame_rate: (30, 1),
            bandwidth: 300_000,
        };
        let mpd = Mpd {
            kind: MpdKind::Static {
                duration_ticks: 180_000,
            },
            availability_start_ms: 0,
            publish_time_ms: 2000,
            min_buffer_time_ms: 2000,
            max_segment_duration_ms: 2000,
            periods: vec![Period {
                id: "0".into(),
                start_ticks: 0,
                video: Some(VideoAdaptationSet {
                    representations: vec![
                        representation("source", "avc1.64001f"),
                        representation("180p-av1", "av01.0.01M.08"),
                        representation("180p", "avc1.64000d"),
                    ],
                    timeline: timeline(90_000, vec![(0, 180_000)]),
                }),
                audio: None,
            }],
        };
        let text = render_mpd(&mpd);
        let sets: Vec<&str> = text.split("<AdaptationSet").skip(1).collect();
        assert_eq!(sets.len(), 2, "{text}");
        assert!(
            sets[0].starts_with(" id=\"0\" contentType=\"video\""),
            "{text}"
        );
        assert_eq!(sets[0].matches("codecs=\"avc1.").count(), 2, "{text}");
        assert!(!sets[0].contains("av01"), "{text}");
        assert!(
            sets[1].starts_with(" id=\"2\" contentType=\"video\""),
            "{text}"
        );
        assert!(sets[1].contains("<Representation id=\"180p-av1\" codecs=\"av01.0.01M.08\""));
        assert!(!sets[1].contains("avc1"), "{text}");
        // Both sets carry the shared timeline.
        assert_eq!(text.matches("<SegmentTimeline>").count(), 2, "{text}");
    }

    #[test]
    fn static_mpd_with_two_periods_and_a_timeline_gap() {
        let mut second_timeline = timeline(90_000, vec![(1_080_000, 90_000)]);
        second_timeline.presentation_time_offset = 1_080_000;
        second_timeline.init_name = "init-1.mp4".into();
        second_timeline.start_number = 5;
        let video = |timeline| VideoAdaptationSet {
            representations: vec![VideoRepresentation {
                id: VIDEO_REPRESENTATION.into(),
                codecs: "avc1.42c01e".into(),
                width: 640,
                height: 360,
                frame_rate: (30_000, 1001),
                bandwidth: 800_000,
            }],
            timeline,
        };
        let mpd = Mpd {
            kind: MpdKind::Static {
                duration_ticks: 1_170_000,
            },
            availability_start_ms: 0,
            publish_time_ms: 13_000,
            min_buffer_time_ms: 2000,
            max_segment_duration_ms: 3000,
            periods: vec![
                Period {
                    id: "0".into(),
                    start_ticks: 0,
                    video: Some(video(timeline(
                        90_000,
                        vec![(0, 180_000), (180_000, 180_000), (450_000, 90_000)],
                    ))),
                    audio: None,
                },
                Period {
                    id: "1".into(),
                    start_ticks: 1_080_000,
                    video: Some(video(second_timeline)),
                    audio: None,
                },
            ],
        };
        let text = render_mpd(&mpd);
        assert!(text.contains(
            " type=\"static\" availabilityStartTime=\"1970-01-01T00:00:00.000Z\" \
             publishTime=\"1970-01-01T00:00:13.000Z\" mediaPresentationDuration=\"PT13.000000S\" \
             minBufferTime=\"PT2.000S\" maxSegmentDuration=\"PT3.000S\">\n"
        ));
        assert!(!text.contains("minimumUpdatePeriod"));
        assert!(text.contains(
            "          <S t=\"0\" d=\"180000\" r=\"1\"/>\n          <S t=\"450000\" d=\"90000\"/>\n"
        ));
        assert!(text.contains("  <Period id=\"1\" start=\"PT12.000000S\">\n"));
        assert!(text.contains(
            "presentationTimeOffset=\"1080000\" initialization=\"$RepresentationID$/init-1.mp4\" \
             media=\"$RepresentationID$/$Number$.m4s\" startNumber=\"5\">"
        ));
        assert!(text.contains("frameRate=\"30000/1001\""));
        assert_eq!(text.matches("<AdaptationSet").count(), 2);
        assert_eq!(text.matches("</AdaptationSet>").count(), 2);
    }

    #[test]
    fn attribute_values_are_escaped() {
        assert_eq!(escape("a\"<&>'"), "a&quot;&lt;&amp;&gt;&apos;");
    }
}
