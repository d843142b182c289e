//! HTTP/1.1 response heads (RFC 9112 §4, §6.3) and the sample checks on bodies. Pure.

/// What the load generator needs from a response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Bytes of the head, including the blank line.
    pub head_len: usize,
    /// `Content-Length` (RFC 9112 §6.3: without it, and without chunked coding, a keep-alive
    /// response to GET is not delimitable; corecast always sends it).
    pub content_length: u64,
    /// `Connection: close`: the server ends the connection after this response.
    pub close: bool,
}

/// Why a response could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Not parseable as HTTP/1.x.
    Malformed,
    /// No (or an invalid) `Content-Length`, or chunked coding, which we do not follow.
    NoLength,
}

/// Parses a response head. `Ok(None)`: need more bytes.
pub fn parse_head(bytes: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HeadError::Malformed),
    };
    let status = response.code.ok_or(HeadError::Malformed)?;
    let mut content_length = None;
    let mut close = response.version == Some(0);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).map_err(|_| HeadError::NoLength)?;
            content_length = Some(value.trim().parse().map_err(|_| HeadError::NoLength)?);
        } else if header.name.eq_ignore_ascii_case("connection") {
            let value = header.value.to_ascii_lowercase();
            if value.windows(5).any(|w| w == b"close") {
                close = true;
            } else if value.windows(10).any(|w| w == b"keep-alive") {
                close = false;
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::NoLength);
        }
    }
    // 204 and 304 have no body (RFC 9110 §15.3.5, §15.4.5).
    let content_length = match status {
        204 | 304 => 0,
        _ => content_length.ok_or(HeadError::NoLength)?,
    };
    Ok(Some(ResponseHead {
        status,
        head_len,
        content_length,
        close,
    }))
}

/// What a body's first bytes must look like for the kind of object requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// fMP4 (ISO/IEC 14496-12 §4.2): a sequence of boxes, `size(4) type(4)`.
    Mp4,
    /// MPEG-TS (ISO/IEC 13818-1 §2.4.3.2): 188-byte packets starting with 0x47.
    Ts,
    /// Anything else: no check.
    Other,
}

impl BodyKind {
    pub fn from_path(path: &str) -> BodyKind {
        let ext = path.rsplit('.').next().unwrap_or("");
        match ext {
            "mp4" | "m4s" | "m4v" | "m4a" | "cmfv" | "cmfa" => BodyKind::Mp4,
            "ts" => BodyKind::Ts,
            _ => BodyKind::Other,
        }
    }
}

/// Checks the start of a body (every response: costs nothing). A prefix may be short.
pub fn check_prefix(kind: BodyKind, prefix: &[u8]) -> bool {
    match kind {
        BodyKind::Mp4 => match prefix.get(..8) {
            Some(head) => {
                let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                (size == 1 || size >= 8) && head[4..8].iter().all(u8::is_ascii_graphic)
            }
            None => true,
        },
        BodyKind::Ts => prefix.first().is_none_or(|&b| b == 0x47),
        BodyKind::Other => true,
    }
}

/// Checks a whole body (a sample of responses): for fMP4 the top-level boxes tile the body
/// exactly; for TS every packet starts with the sync byte and the length is whole packets.
pub fn check_body(kind: BodyKind, body: &[u8]) -> bool {
    match kind {
        BodyKind::Mp4 => {
            let mut at = 0usize;
            while at < body.len() {
                let Some(head) = body.get(at..at + 8) else {
                    return false;
                };
                if !check_prefix(BodyKind::Mp4, head) {
                    return false;
                }
                let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
                let size = if size == 1 {
                    match body.get(at + 8..at + 16) {
                        Some(large) => {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(large);
                            usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX)
                        }
                        None => return false,
                    }
                } else {
                    size
                };
                at = match at.checked_add(size) {
                    Some(next) => next,
                    None => return false,
                };
            }
            at == body.len() && !body.is_empty()
        }
        BodyKind::Ts => {
            !body.is_empty()
                && body.len().is_multiple_of(188)
                && body.chunks(188).all(|p| p[0] == 0x47)
        }
        BodyKind::Other => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_corecast_style_head() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 1234\r\n\
                    Cache-Control: public, max-age=31536000, immutable\r\n\r\nBODY";
        let head = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.content_length, 1234);
        assert_eq!(&raw[head.head_len..], b"BODY");
        assert!(!head.close);
    }

    #[test]
    fn partial_head_needs_more() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le"), Ok(None));
        assert_eq!(parse_head(b""), Ok(None));
    }

    #[test]
    fn close_and_http10() {
        let close = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        assert!(parse_head(close).unwrap().unwrap().close);
        let old = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n";
        assert!(parse_head(old).unwrap().unwrap().close);
        let kept = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\n";
        assert!(!parse_head(kept).unwrap().unwrap().close);
    }

    #[test]
    fn length_is_required_except_for_204_and_304() {
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(HeadError::NoLength)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::NoLength)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Err(HeadError::NoLength)
        );
        let not_modified = parse_head(b"HTTP/1.1 304 Not Modified\r\n\r\n").unwrap();
        assert_eq!(not_modified.unwrap().content_length, 0);
        assert_eq!(
            parse_head(b"SIP/2.0 200 OK\r\n\r\n"),
            Err(HeadError::Malformed)
        );
    }

    fn mp4_box(kind: &[u8; 4], size: u32) -> Vec<u8> {
        let mut b = size.to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.resize(size as usize, 0);
        b
    }

    #[test]
    fn fmp4_bodies() {
        let mut body = mp4_box(b"styp", 12);
        body.extend(mp4_box(b"moof", 100));
        body.extend(mp4_box(b"mdat", 3000));
        assert!(check_prefix(BodyKind::Mp4, &body));
        assert!(check_body(BodyKind::Mp4, &body));
        assert!(!check_body(BodyKind::Mp4, &body[..body.len() - 1]));
        assert!(!check_body(BodyKind::Mp4, &[]));
        let mut junk = body.clone();
        junk[0..8].copy_from_slice(b"<html>\n\n");
        assert!(!check_prefix(BodyKind::Mp4, &junk));
        assert!(check_prefix(BodyKind::Mp4, &body[..3]), "short prefix");
    }

    #[test]
    fn ts_bodies() {
        let mut body = vec![0u8; 188 * 3];
        for p in body.chunks_mut(188) {
            p[0] = 0x47;
        }
        assert!(check_body(BodyKind::Ts, &body));
        assert!(!check_body(BodyKind::Ts, &body[..300]));
        body[188] = 0;
        assert!(!check_body(BodyKind::Ts, &body));
        assert!(!check_prefix(BodyKind::Ts, b"HTTP"));
        assert_eq!(BodyKind::from_path("/live/demo/ts/5.ts"), BodyKind::Ts);
        assert_eq!(
            BodyKind::from_path("/live/demo/source/5.m4s"),
            BodyKind::Mp4
        );
        assert_eq!(BodyKind::from_path("/index.m3u8"), BodyKind::Other);
    }
}
