//! Checks shared by the end-to-end tests of rungs in another codec (AV1, HEVC) beside an H.264
//! rung of the same ladder: once the publisher is gone and every playlist has ended, each
//! segment of each such rung is read back with ffprobe / ffmpeg and compared with the H.264
//! rung's segment of the same number, and the multivariant playlist and the MPD are checked
//! for how they list the rungs (their own variants; their own AdaptationSet, since players
//! cannot switch codecs inside one).

use std::time::Duration;

use crate::{Server, TempDir, ffmpeg_decode_errors, ffprobe_json};

/// The rungs of one codec in a live stream, and what they must look like.
#[derive(Debug, Clone)]
pub struct CodecRungs<'a> {
    pub stream: &'a str,
    /// The H.264 rung whose IDRs the others must match.
    pub h264_rung: &'a str,
    pub rungs: &'a [&'a str],
    /// ffprobe's `codec_name` (`av1`, `hevc`).
    pub codec_name: &'a str,
    /// ffprobe's `codec_tag_string` where it matters (`hvc1`, not `hev1`).
    pub codec_tag: Option<&'a str>,
    /// How the rungs' CODECS attribute starts in the multivariant playlist (`av01.0.`).
    pub hls_codecs: &'a str,
    /// How their `codecs` attribute starts in the MPD (`av01`).
    pub dash_codecs: &'a str,
    pub size: (u32, u32),
    /// Whether a segment must hold no key frame but its first.
    pub one_key_frame_per_segment: bool,
}

/// (pts, key) of every packet of a file, as ffprobe reads them.
pub fn packets(path: &str) -> Vec<(i64, bool)> {
    let probe = ffprobe_json(&["-show_entries", "packet=pts,flags"], path);
    probe["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| {
            (
                p["pts"].as_i64().unwrap_or(-1),
                p["flags"].as_str().unwrap_or("").starts_with('K'),
            )
        })
        .collect()
}

impl CodecRungs<'_> {
    /// Waits up to `limit` for the source's, the H.264 rung's and these rungs' playlists to
    /// end, checks that they list the same segments (at least `min_segments`), then checks
    /// every segment, the multivariant playlist and the MPD.
    pub fn check_after_the_publish(&self, server: &Server, min_segments: usize, limit: Duration) {
        let names: Vec<&str> = ["source", self.h264_rung]
            .into_iter()
            .chain(self.rungs.iter().copied())
            .collect();
        let playlists = server.wait_until_ended(self.stream, &names, limit);
        let source = &playlists[0];
        assert!(source.segments.len() >= min_segments, "{}", source.text);
        for (playlist, name) in playlists.iter().zip(&names) {
            assert_eq!(
                playlist.segments, source.segments,
                "{name}: segments and durations"
            );
        }
        let uris: Vec<&str> = source
            .segments
            .iter()
            .map(|(uri, _, _)| uri.as_str())
            .collect();
        self.check_segments(server, &uris);
        self.check_multivariant(server);
        self.check_mpd(server);
    }

    fn check_segments(&self, server: &Server, uris: &[&str]) {
        let tmp = TempDir::new(&format!("rungs-{}", self.codec_name));
        let init = |name: &str| {
            let init = server.get(&format!("/live/{}/{name}/init.mp4", self.stream));
            assert_eq!(init.status, 200, "{name}/init.mp4");
            init.body
        };
        // init + segment in one file, which ffprobe and ffmpeg read on its own.
        let whole = |name: &str, uri: &str| {
            let segment = server.get(&format!("/live/{}/{name}/{uri}", self.stream));
            assert_eq!(segment.status, 200, "{name}/{uri}");
            let path = tmp.path().join(format!("{name}-{uri}.mp4"));
            std::fs::write(&path, [init(name).as_slice(), &segment.body].concat()).expect("write");
            path.to_str().expect("UTF-8 temp path").to_owned()
        };
        for uri in uris {
            let h264_packets = packets(&whole(self.h264_rung, uri));
            let idr = h264_packets.first().copied().expect("H.264 packets");
            assert!(idr.1, "{}/{uri} starts with an IDR", self.h264_rung);
            for name in self.rungs {
                let path = whole(name, uri);
                let probe = ffprobe_json(
                    &[
                        "-show_entries",
                        "stream=codec_name,codec_tag_string,width,height",
                    ],
                    &path,
                );
                let stream = &probe["streams"][0];
                assert_eq!(stream["codec_name"], self.codec_name, "{name}/{uri}");
                if let Some(tag) = self.codec_tag {
                    assert_eq!(stream["codec_tag_string"], tag, "{name}/{uri}");
                }
                assert_eq!(stream["width"], self.size.0, "{name}/{uri}");
                assert_eq!(stream["height"], self.size.1, "{name}/{uri}");
                let errors = ffmpeg_decode_errors(&path);
                assert!(errors.trim().is_empty(), "{name}/{uri}: {errors}");
                let rung_packets = packets(&path);
                assert_eq!(
                    rung_packets.first().copied(),
                    Some(idr),
                    "{name}/{uri}: key frame at the H.264 rung's IDR pts"
                );
                if self.one_key_frame_per_segment {
                    assert_eq!(
                        rung_packets.iter().filter(|p| p.1).count(),
                        1,
                        "{name}/{uri}: one key frame, at the start"
                    );
                }
                assert_eq!(
                    rung_packets.len(),
                    h264_packets.len(),
                    "{name}/{uri}: frames"
                );
            }
        }
    }

    /// Each rung is its own variant, with its CODECS and RESOLUTION.
    fn check_multivariant(&self, server: &Server) {
        let multivariant = server
            .get(&format!("/live/{}/index.m3u8", self.stream))
            .text();
        let resolution = format!("RESOLUTION={}x{}", self.size.0, self.size.1);
        for name in self.rungs {
            let attributes = multivariant
                .lines()
                .collect::<Vec<_>>()
                .windows(2)
                .find(|pair| pair[1] == format!("{name}/index.m3u8"))
                .map(|pair| pair[0].to_owned())
                .unwrap_or_else(|| panic!("{name} not listed:\n{multivariant}"));
            assert!(
                attributes.contains(&format!("CODECS=\"{}", self.hls_codecs)),
                "{attributes}"
            );
            assert!(attributes.contains(&resolution), "{attributes}");
        }
    }

    /// The rungs' Representations sit in one AdaptationSet without avc1 ones.
    fn check_mpd(&self, server: &Server) {
        let mpd = server
            .get(&format!("/live/{}/index.mpd", self.stream))
            .text();
        let codecs = format!("codecs=\"{}", self.dash_codecs);
        let set = mpd
            .split("<AdaptationSet")
            .skip(1)
            .find(|set| set.contains(&codecs))
            .unwrap_or_else(|| panic!("no {} AdaptationSet:\n{mpd}", self.codec_name));
        assert!(!set.contains("codecs=\"avc1"), "{mpd}");
        for name in self.rungs {
            assert!(set.contains(&format!("id=\"{name}\"")), "{mpd}");
        }
    }
}
