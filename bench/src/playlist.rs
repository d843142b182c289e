//! The few parts of an HLS media playlist (RFC 8216) a live player needs: the target duration
//! (§4.4.3.1), the media sequence (§4.4.3.2), each segment's URI and `EXTINF` duration
//! (§4.4.4.1), the `EXT-X-MAP` init segment in force (§4.4.4.5), `EXT-X-GAP` (§4.4.4.7) and
//! `EXT-X-ENDLIST` (§4.4.3.4). Everything else is skipped. Pure: bytes in, values out.

/// One listed segment.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedSegment {
    /// Media sequence number (§4.4.3.2: the first segment's is `EXT-X-MEDIA-SEQUENCE`).
    pub sequence: u64,
    pub uri: String,
    /// `EXTINF` duration in seconds.
    pub duration: f64,
    /// The `EXT-X-MAP` URI in force for this segment (fMP4), if any.
    pub map_uri: Option<String>,
    /// `EXT-X-GAP`: not fetchable; a player skips it.
    pub gap: bool,
}

/// A parsed media playlist.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaPlaylist {
    pub target_duration: f64,
    pub segments: Vec<ListedSegment>,
    pub ended: bool,
}

impl MediaPlaylist {
    /// Parses a media playlist. `None` when it is not one (no `#EXTM3U` first line, or no
    /// target duration), which the caller counts as a bad response.
    pub fn parse(bytes: &[u8]) -> Option<MediaPlaylist> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines().map(str::trim);
        if lines.next()? != "#EXTM3U" {
            return None;
        }
        let mut playlist = MediaPlaylist::default();
        let mut sequence = 0u64;
        let mut duration = None;
        let mut gap = false;
        let mut map_uri: Option<String> = None;
        for line in lines {
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                playlist.target_duration = v.parse().ok()?;
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                sequence = v.parse().ok()?;
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                duration = v.split(',').next().and_then(|d| d.trim().parse().ok());
            } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
                map_uri = quoted_attribute(v, "URI").map(str::to_owned);
            } else if line == "#EXT-X-GAP" {
                gap = true;
            } else if line == "#EXT-X-ENDLIST" {
                playlist.ended = true;
            } else if !line.is_empty() && !line.starts_with('#') {
                playlist.segments.push(ListedSegment {
                    sequence,
                    uri: line.to_owned(),
                    duration: duration.take().unwrap_or(playlist.target_duration),
                    map_uri: map_uri.clone(),
                    gap,
                });
                sequence += 1;
                gap = false;
            }
        }
        (playlist.target_duration > 0.0).then_some(playlist)
    }

    pub fn last_sequence(&self) -> Option<u64> {
        self.segments.last().map(|s| s.sequence)
    }

    pub fn first_sequence(&self) -> Option<u64> {
        self.segments.first().map(|s| s.sequence)
    }
}

/// The value of `NAME="value"` in an attribute list (§4.2).
fn quoted_attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = list;
    while let Some(at) = rest.find(name) {
        let after = &rest[at + name.len()..];
        let boundary = at == 0 || rest[..at].ends_with(',');
        if boundary && let Some(value) = after.strip_prefix("=\"") {
            return value.split('"').next();
        }
        rest = after;
    }
    None
}

/// Resolves a URI from a playlist against the playlist's own path (RFC 3986 §5.2, for the
/// relative and absolute-path forms playlists use). Returns a path for the request line.
pub fn resolve(playlist_path: &str, uri: &str) -> String {
    if let Some(rest) = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
    {
        return rest
            .find('/')
            .map_or("/".to_owned(), |i| rest[i..].to_owned());
    }
    if uri.starts_with('/') {
        return uri.to_owned();
    }
    let dir = playlist_path
        .rfind('/')
        .map_or("/", |i| &playlist_path[..=i]);
    format!("{dir}{uri}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORECAST_FMP4: &[u8] = b"#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n\
        #EXT-X-PROGRAM-DATE-TIME:2024-03-01T12:00:00.000Z\n#EXTINF:2.000000,\n7.m4s\n\
        #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-1.mp4\"\n\
        #EXT-X-PROGRAM-DATE-TIME:2024-03-01T12:00:02.002Z\n#EXTINF:2.002000,\n8.m4s\n\
        #EXT-X-GAP\n#EXTINF:2.000000,\n9.m4s\n";

    #[test]
    fn parses_corecast_fmp4_playlist() {
        let p = MediaPlaylist::parse(CORECAST_FMP4).unwrap();
        assert_eq!(p.target_duration, 2.0);
        assert!(!p.ended);
        let seqs: Vec<u64> = p.segments.iter().map(|s| s.sequence).collect();
        assert_eq!(seqs, [7, 8, 9]);
        assert_eq!(p.segments[0].uri, "7.m4s");
        assert_eq!(p.segments[0].map_uri.as_deref(), Some("init.mp4"));
        assert_eq!(p.segments[1].map_uri.as_deref(), Some("init-1.mp4"));
        assert_eq!(p.segments[1].duration, 2.002);
        assert!(p.segments[2].gap && !p.segments[1].gap);
        assert_eq!((p.first_sequence(), p.last_sequence()), (Some(7), Some(9)));
    }

    #[test]
    fn parses_ts_playlist_with_endlist() {
        let p = MediaPlaylist::parse(
            b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:20\n\
              #EXTINF:2.5,\n20.ts\n#EXT-X-ENDLIST\n",
        )
        .unwrap();
        assert!(p.ended);
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].map_uri, None);
    }

    #[test]
    fn rejects_what_is_not_a_media_playlist() {
        assert_eq!(MediaPlaylist::parse(b"<html>"), None);
        assert_eq!(MediaPlaylist::parse(b"#EXTM3U\n#EXTINF:2,\na.ts\n"), None);
        assert_eq!(MediaPlaylist::parse(&[0xff, 0xfe]), None);
        assert_eq!(
            MediaPlaylist::parse(b"#EXTM3U\n#EXT-X-TARGETDURATION:x\n"),
            None
        );
    }

    #[test]
    fn map_uri_needs_the_whole_attribute_name() {
        assert_eq!(
            quoted_attribute("XURI=\"no\",URI=\"yes\"", "URI"),
            Some("yes")
        );
        assert_eq!(quoted_attribute("BYTERANGE=\"1@0\"", "URI"), None);
    }

    #[test]
    fn resolves_uris_against_the_playlist() {
        let base = "/live/demo/source/index.m3u8";
        assert_eq!(resolve(base, "7.m4s"), "/live/demo/source/7.m4s");
        assert_eq!(resolve(base, "/x/y.ts"), "/x/y.ts");
        assert_eq!(resolve(base, "http://h:1/a/b.ts"), "/a/b.ts");
        assert_eq!(resolve("index.m3u8", "a.ts"), "/a.ts");
    }
}
