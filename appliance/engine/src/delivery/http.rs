//! Sans-IO HTTP/1.1 for playback: parse a request head from bytes, write a response head into
//! the caller's buffer. No sockets, no clock (the `Date` text comes in as an argument).
//!
//! Follows RFC 9112 (message syntax: §2.2 message parsing, §3.2 request target and Host,
//! §9.3 persistence) and RFC 9110 (§9 methods, §13.1.2 If-None-Match, §13.1.5 If-Range,
//! §14 range requests, §15 status codes). CORS headers per the WHATWG Fetch standard.
//!
//! Scope: GET, HEAD and OPTIONS of stored objects. Request bodies are not read: a request that
//! announces one is answered and the connection closed (we cannot tell where the next request
//! would start). Paths are percent-decoded (RFC 3986 §2.1) after the query is cut off, then
//! matched byte for byte; a path without `%` is borrowed as it is, so the usual request
//! allocates nothing. Multi-range requests get the whole object (RFC 9110 §14.2 allows ignoring Range).

use std::borrow::Cow;
use std::io::Write;

use bytes::Bytes;

use crate::store::{CachePolicy, StoredObject};

/// Header fields we accept in one request; more is answered 431.
pub const MAX_HEADERS: usize = 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    /// Anything else (answered 405).
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A parsed request head; the slices borrow the input bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    /// The path without query or fragment, percent-decoded; `*` for `OPTIONS *`.
    pub path: Cow<'a, str>,
    pub version: Version,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    pub range: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    /// Bytes of input this request head used.
    pub head_len: usize,
}

/// Why a request head is refused. Each maps to a status and ends the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// 400, with what was wrong.
    BadRequest(&'static str),
    /// 431: the head is longer than the limit or has too many fields.
    HeadTooLarge,
}

/// Parses one request head from the start of `input`. `Ok(None)`: need more bytes.
pub fn parse_request(input: &[u8], max_head: usize) -> Result<Option<Request<'_>>, Rejection> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if input.len() > max_head {
                Err(Rejection::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Rejection::HeadTooLarge),
        Err(_) => return Err(Rejection::BadRequest("malformed request head")),
    };
    if head_len > max_head {
        return Err(Rejection::HeadTooLarge);
    }
    let version = match parsed.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(Rejection::BadRequest("unsupported HTTP version")),
    };
    let method = match parsed.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("OPTIONS") => Method::Options,
        _ => Method::Other,
    };
    let target = parsed
        .path
        .ok_or(Rejection::BadRequest("no request target"))?;
    let path = percent_decoded(request_path(target, method)?)?;

    let mut close = false;
    let mut keep_alive_token = false;
    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut has_body = false;
    let mut range = None;
    let mut if_range = None;
    let mut if_none_match = None;
    for header in parsed.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = parse_decimal(value.trim_ascii())
                .ok_or(Rejection::BadRequest("invalid Content-Length"))?;
            if content_length.is_some_and(|seen| seen != length) {
                return Err(Rejection::BadRequest("conflicting Content-Length"));
            }
            content_length = Some(length);
            has_body |= length > 0;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        } else if name.eq_ignore_ascii_case("range") {
            range = Some(value);
        } else if name.eq_ignore_ascii_case("if-range") {
            if_range = Some(value);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            if_none_match = Some(value);
        }
    }
    // RFC 9112 §3.2: a 1.1 request without exactly one Host is answered 400.
    if version == Version::Http11 && hosts != 1 {
        return Err(Rejection::BadRequest(
            "HTTP/1.1 request needs exactly one Host",
        ));
    }
    let keep_alive = !has_body
        && !close
        && match version {
            Version::Http11 => true,
            Version::Http10 => keep_alive_token,
        };
    Ok(Some(Request {
        method,
        path,
        version,
        keep_alive,
        range,
        if_range,
        if_none_match,
        head_len,
    }))
}

/// Origin form (`/a?q`), absolute form (`http://host/a`) or `*` (OPTIONS only); RFC 9112 §3.2.
fn request_path(target: &str, method: Method) -> Result<&str, Rejection> {
    let path = if target.starts_with('/') {
        target
    } else if target == "*" {
        return if method == Method::Options {
            Ok(target)
        } else {
            Err(Rejection::BadRequest("'*' target outside OPTIONS"))
        };
    } else {
        let scheme_end = target
            .find("://")
            .ok_or(Rejection::BadRequest("request target is not a path"))?;
        let scheme = &target[..scheme_end];
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(Rejection::BadRequest("unknown scheme in request target"));
        }
        let after_authority = &target[scheme_end + 3..];
        match after_authority.find('/') {
            Some(slash) => &after_authority[slash..],
            None => "/",
        }
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    Ok(&path[..end])
}

/// Percent-decodes a path (RFC 3986 §2.1). Borrowed when it has no `%`; an escape that is not
/// two hex digits, or bytes that are not UTF-8 once decoded, are a 400.
fn percent_decoded(path: &str) -> Result<Cow<'_, str>, Rejection> {
    if !path.contains('%') {
        return Ok(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    // alloc: only for a path with an escape, which corecast's own URLs never have.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte != b'%' {
            decoded.push(byte);
            at += 1;
            continue;
        }
        let hex = |i: usize| bytes.get(i).and_then(|b| (*b as char).to_digit(16));
        match (hex(at + 1), hex(at + 2)) {
            (Some(high), Some(low)) => decoded.push((high * 16 + low) as u8),
            _ => return Err(Rejection::BadRequest("bad percent-escape in the path")),
        }
        at += 3;
    }
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| Rejection::BadRequest("percent-decoded path is not UTF-8"))
}

/// Digits only; `None` for anything else or a value past `u64::MAX`.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Like [`parse_decimal`], but a value past `u64::MAX` is `u64::MAX` (a last-byte position
/// beyond any object just means "to the end").
fn parse_decimal_saturating(digits: &[u8]) -> Option<u64> {
    if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
        Some(parse_decimal(digits).unwrap_or(u64::MAX))
    } else {
        None
    }
}

/// What the caller sends after the head it found in its buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// A view of the object's bytes (whole or a range); `None` when the body, if any, is
    /// already in the head buffer.
    pub body: Option<Bytes>,
    /// Close the connection once this response is out.
    pub close: bool,
}

const ALLOW: &str = "GET, HEAD, OPTIONS";
const CORS: &str = "Access-Control-Allow-Origin: *\r\n\
    Access-Control-Expose-Headers: Content-Length, Content-Range, Accept-Ranges, ETag, Date\r\n";
const TEXT: &str = "text/plain; charset=utf-8";

/// Writes the answer to a parsed request into `out` (appending) and says what body follows.
/// `object` is the stored object at `request.path`, if any; `date` is the `Date` value to
/// send, or empty for none.
pub fn answer(
    request: &Request<'_>,
    object: Option<&StoredObject>,
    date: &[u8],
    out: &mut Vec<u8>,
) -> Answer {
    let close = !request.keep_alive;
    let connection = match (close, request.version) {
        (true, _) => "Connection: close\r\n",
        (false, Version::Http10) => "Connection: keep-alive\r\n",
        (false, Version::Http11) => "",
    };
    match request.method {
        Method::Other => {
            status_line(out, 405, "Method Not Allowed");
            let _ = write!(out, "Allow: {ALLOW}\r\n");
            text_body(out, date, connection, b"method not allowed\n", true);
            Answer {
                status: 405,
                body: None,
                close,
            }
        }
        Method::Options => {
            // CORS preflight (Fetch §3.2.3); 204 carries no Content-Length (RFC 9110 §8.6).
            status_line(out, 204, "No Content");
            let _ = write!(
                out,
                "Allow: {ALLOW}\r\nAccess-Control-Allow-Methods: {ALLOW}\r\n\
                 Access-Control-Allow-Headers: Range, If-None-Match, If-Range, Origin, Accept\r\n\
                 Access-Control-Max-Age: 86400\r\n"
            );
            common(out, date, connection);
            out.extend_from_slice(b"\r\n");
            Answer {
                status: 204,
                body: None,
                close,
            }
        }
        Method::Get | Method::Head => {
            let with_body = request.method == Method::Get;
            match object {
                None => {
                    status_line(out, 404, "Not Found");
                    out.extend_from_slice(b"Cache-Control: no-cache\r\n");
                    text_body(out, date, connection, b"not found\n", with_body);
                    Answer {
                        status: 404,
                        body: None,
                        close,
                    }
                }
                Some(object) => answer_object(request, object, date, connection, with_body, out),
            }
        }
    }
}

fn answer_object(
    request: &Request<'_>,
    object: &StoredObject,
    date: &[u8],
    connection: &str,
    with_body: bool,
    out: &mut Vec<u8>,
) -> Answer {
    let close = !request.keep_alive;
    let etag = EntityTag::new(object.etag);
    if request
        .if_none_match
        .is_some_and(|list| etag.matches_weakly(list))
    {
        status_line(out, 304, "Not Modified");
        object_validators(out, object, &etag);
        common(out, date, connection);
        out.extend_from_slice(b"\r\n");
        return Answer {
            status: 304,
            body: None,
            close,
        };
    }
    let len = object.body.len() as u64;
    // RFC 9110 §13.1.5: Range applies only if If-Range names this exact (strong) version.
    let range_applies = request
        .if_range
        .is_none_or(|validator| validator.trim_ascii() == etag.as_bytes());
    let outcome = match request.range {
        Some(range) if range_applies => byte_range(range, len),
        _ => RangeOutcome::Full,
    };
    let (status, start, end) = match outcome {
        RangeOutcome::Full => (200, 0, len),
        RangeOutcome::Partial { first, last } => (206, first, last + 1),
        RangeOutcome::Unsatisfiable => {
            status_line(out, 416, "Range Not Satisfiable");
            let _ = write!(out, "Content-Range: bytes */{len}\r\n");
            object_validators(out, object, &etag);
            out.extend_from_slice(b"Content-Length: 0\r\n");
            common(out, date, connection);
            out.extend_from_slice(b"\r\n");
            return Answer {
                status: 416,
                body: None,
                close,
            };
        }
    };
    if status == 206 {
        status_line(out, 206, "Partial Content");
        let _ = write!(out, "Content-Range: bytes {start}-{}/{len}\r\n", end - 1);
    } else {
        status_line(out, 200, "OK");
    }
    let _ = write!(
        out,
        "Content-Type: {}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n",
        object.content_type,
        end - start
    );
    object_validators(out, object, &etag);
    common(out, date, connection);
    out.extend_from_slice(b"\r\n");
    let body = (with_body && end > start).then(|| {
        if status == 206 {
            object.body.slice(start as usize..end as usize)
        } else {
            object.body.clone()
        }
    });
    Answer {
        status,
        body,
        close,
    }
}

fn status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
}

fn common(out: &mut Vec<u8>, date: &[u8], connection: &str) {
    out.extend_from_slice(CORS.as_bytes());
    out.extend_from_slice(b"Server: corecast\r\n");
    if !date.is_empty() {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(connection.as_bytes());
}

fn object_validators(out: &mut Vec<u8>, object: &StoredObject, etag: &EntityTag) {
    out.extend_from_slice(b"ETag: ");
    out.extend_from_slice(etag.as_bytes());
    out.extend_from_slice(b"\r\n");
    match object.cache {
        CachePolicy::Immutable => {
            out.extend_from_slice(b"Cache-Control: public, max-age=31536000, immutable\r\n");
        }
        CachePolicy::Live { max_age_secs } => {
            let _ = write!(out, "Cache-Control: public, max-age={max_age_secs}\r\n");
        }
        CachePolicy::NoCache => out.extend_from_slice(b"Cache-Control: no-cache\r\n"),
    }
}

/// A small text body written into the head buffer itself (so no second iovec is needed).
fn text_body(out: &mut Vec<u8>, date: &[u8], connection: &str, body: &[u8], with_body: bool) {
    let _ = write!(
        out,
        "Content-Type: {TEXT}\r\nContent-Length: {}\r\n",
        body.len()
    );
    common(out, date, connection);
    out.extend_from_slice(b"\r\n");
    if with_body {
        out.extend_from_slice(body);
    }
}

/// Writes the answer to a request head we refused (400 or 431); the connection closes.
pub fn answer_rejection(rejection: Rejection, date: &[u8], out: &mut Vec<u8>) -> Answer {
    let (status, body): (u16, &[u8]) = match rejection {
        Rejection::BadRequest(_) => (400, b"bad request\n"),
        Rejection::HeadTooLarge => (431, b"request header fields too large\n"),
    };
    let reason = if status == 400 {
        "Bad Request"
    } else {
        "Request Header Fields Too Large"
    };
    status_line(out, status, reason);
    text_body(out, date, "Connection: close\r\n", body, true);
    Answer {
        status,
        body: None,
        close: true,
    }
}

/// Writes a 408 for a client whose request head did not arrive in time; the connection closes.
pub fn answer_timeout(date: &[u8], out: &mut Vec<u8>) -> Answer {
    status_line(out, 408, "Request Timeout");
    text_body(
        out,
        date,
        "Connection: close\r\n",
        b"request timeout\n",
        true,
    );
    Answer {
        status: 408,
        body: None,
        close: true,
    }
}

/// An object's ETag as sent: `"` + 16 hex digits + `"` (RFC 9110 §8.8.3).
struct EntityTag([u8; 18]);

impl EntityTag {
    fn new(etag: u64) -> EntityTag {
        let mut text = [b'"'; 18];
        for (i, digit) in text[1..17].iter_mut().enumerate() {
            let nibble = (etag >> (60 - 4 * i)) & 0xf;
            *digit = b"0123456789abcdef"[nibble as usize];
        }
        EntityTag(text)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// If-None-Match uses weak comparison (RFC 9110 §13.1.2): `W/` is ignored; `*` matches.
    fn matches_weakly(&self, list: &[u8]) -> bool {
        list.split(|&b| b == b',').any(|candidate| {
            let candidate = candidate.trim_ascii();
            let candidate = candidate.strip_prefix(b"W/").unwrap_or(candidate);
            candidate == b"*" || candidate == self.as_bytes()
        })
    }
}

/// How a `Range` header applies to an object of a given length (RFC 9110 §14.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// No usable single range (invalid syntax, other unit, several ranges): send it all.
    Full,
    /// Inclusive byte positions.
    Partial { first: u64, last: u64 },
    /// 416.
    Unsatisfiable,
}

pub fn byte_range(header: &[u8], len: u64) -> RangeOutcome {
    let header = header.trim_ascii();
    let Some(unit_end) = header.iter().position(|&b| b == b'=') else {
        return RangeOutcome::Full;
    };
    if !header[..unit_end]
        .trim_ascii()
        .eq_ignore_ascii_case(b"bytes")
    {
        return RangeOutcome::Full;
    }
    let spec = header[unit_end + 1..].trim_ascii();
    if spec.contains(&b',') {
        return RangeOutcome::Full;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeOutcome::Full;
    };
    let first = spec[..dash].trim_ascii();
    let last = spec[dash + 1..].trim_ascii();
    match (first.is_empty(), last.is_empty()) {
        (true, true) => RangeOutcome::Full,
        (true, false) => match parse_decimal_saturating(last) {
            None => RangeOutcome::Full,
            Some(0) => RangeOutcome::Unsatisfiable,
            Some(_) if len == 0 => RangeOutcome::Unsatisfiable,
            Some(suffix) => RangeOutcome::Partial {
                first: len - suffix.min(len),
                last: len - 1,
            },
        },
        (false, open_end) => {
            let Some(first) = parse_decimal(first) else {
                return RangeOutcome::Full;
            };
            let last = if open_end {
                u64::MAX
            } else {
                match parse_decimal_saturating(last) {
                    Some(last) if last >= first => last,
                    _ => return RangeOutcome::Full,
                }
            };
            if first >= len {
                RangeOutcome::Unsatisfiable
            } else {
                RangeOutcome::Partial {
                    first,
                    last: last.min(len - 1),
                }
            }
        }
    }
}

/// Formats an IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn format_http_date(unix_secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut text = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    text[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    two_digits(&mut text[5..7], day);
    text[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    let year = year.min(9999);
    two_digits(&mut text[12..14], year / 100);
    two_digits(&mut text[14..16], year % 100);
    two_digits(&mut text[17..19], secs_of_day / 3600);
    two_digits(&mut text[20..22], secs_of_day / 60 % 60);
    two_digits(&mut text[23..25], secs_of_day % 60);
    text
}

fn two_digits(out: &mut [u8], value: u64) {
    out[0] = b'0' + (value / 10 % 10) as u8;
    out[1] = b'0' + (value % 10) as u8;
}

/// Days since 1970-01-01 to (year, month 1–12, day 1–31), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
