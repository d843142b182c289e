//! Byte-vector tests of the HTTP layer.

use bytes::Bytes;

use super::*;
use crate::store::{CachePolicy, StoredObject, content_type};

const LIMIT: usize = 8192;
const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

fn parse(input: &[u8]) -> Request<'_> {
    parse_request(input, LIMIT)
        .expect("valid request")
        .expect("complete request")
}

fn segment() -> StoredObject {
    let mut object = StoredObject::new(
        Bytes::from_static(b"0123456789"),
        content_type::MP4_VIDEO,
        CachePolicy::Immutable,
    );
    object.etag = 0x2a;
    object
}

fn respond(input: &[u8], object: Option<&StoredObject>) -> (String, Answer) {
    let request = parse(input);
    let mut out = Vec::new();
    let answer = answer(&request, object, DATE, &mut out);
    (String::from_utf8(out).expect("ascii head"), answer)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|line| {
        let (field, value) = line.split_once(": ")?;
        field.eq_ignore_ascii_case(name).then_some(value)
    })
}

#[test]
fn parses_get_with_query_and_keep_alive() {
    let input = b"GET /live/demo/index.m3u8?_HLS_msn=3 HTTP/1.1\r\nHost: x\r\n\r\nGET";
    let request = parse(input);
    assert_eq!(request.method, Method::Get);
    assert_eq!(request.path, "/live/demo/index.m3u8");
    assert_eq!(request.version, Version::Http11);
    assert!(request.keep_alive);
    assert_eq!(request.head_len, input.len() - 3);
}

#[test]
fn partial_head_needs_more_and_oversize_is_431() {
    assert_eq!(
        parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n", LIMIT),
        Ok(None)
    );
    assert_eq!(parse_request(b"", LIMIT), Ok(None));
    let mut long = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    long.resize(LIMIT + 1, b'a');
    assert_eq!(parse_request(&long, LIMIT), Err(Rejection::HeadTooLarge));
    long.extend_from_slice(b"\r\nHost: x\r\n\r\n");
    assert_eq!(parse_request(&long, LIMIT), Err(Rejection::HeadTooLarge));
    let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(parse_request(&many, LIMIT), Err(Rejection::HeadTooLarge));
}

#[test]
fn malformed_heads_are_rejected() {
    for bad in [
        &b"GET\r\n\r\n"[..],
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET relative HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET ftp://x/a HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
    ] {
        assert!(
            matches!(parse_request(bad, LIMIT), Err(Rejection::BadRequest(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn absolute_form_and_options_star() {
    let request = parse(b"GET http://example.com/live/a/x.m4s?q HTTP/1.1\r\nHost: e\r\n\r\n");
    assert_eq!(request.path, "/live/a/x.m4s");
    assert_eq!(
        parse(b"GET https://h HTTP/1.1\r\nHost: e\r\n\r\n").path,
        "/"
    );
    assert_eq!(parse(b"OPTIONS * HTTP/1.1\r\nHost: e\r\n\r\n").path, "*");
}

#[test]
fn paths_are_percent_decoded_after_the_query_is_cut_and_borrowed_without_escapes() {
    let plain = parse(b"GET /live/demo/1.m4s?a=%41 HTTP/1.1\r\nHost: e\r\n\r\n");
    assert!(matches!(
        plain.path,
        std::borrow::Cow::Borrowed("/live/demo/1.m4s")
    ));
    let escaped = parse(b"GET /live/cam%201/index%2Em3u8?x HTTP/1.1\r\nHost: e\r\n\r\n");
    assert_eq!(escaped.path, "/live/cam 1/index.m3u8");
    // UTF-8 in escapes; %25 is a literal percent sign, not the start of another escape.
    let utf8 = parse(b"GET /live/caf%C3%A9/%2541 HTTP/1.1\r\nHost: e\r\n\r\n");
    assert_eq!(utf8.path, "/live/caf\u{e9}/%41");
    for bad in [
        &b"GET /live/%4 HTTP/1.1\r\nHost: e\r\n\r\n"[..],
        b"GET /live/%zz/x HTTP/1.1\r\nHost: e\r\n\r\n",
        b"GET /live/% HTTP/1.1\r\nHost: e\r\n\r\n",
        b"GET /live/%FF%FE HTTP/1.1\r\nHost: e\r\n\r\n",
    ] {
        assert!(
            matches!(parse_request(bad, LIMIT), Err(Rejection::BadRequest(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn persistence_rules() {
    assert!(!parse(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!parse(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, CLOSE\r\n\r\n").keep_alive);
    assert!(!parse(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    // A body we will not read ends the connection after the answer.
    assert!(!parse(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n").keep_alive);
    assert!(!parse(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").keep_alive);
    assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").keep_alive);
}

#[test]
fn pipelined_requests_parse_one_at_a_time() {
    let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c";
    let first = parse(input);
    assert_eq!(first.path, "/a");
    let rest = &input[first.head_len..];
    let second = parse(rest);
    assert_eq!((second.method, &*second.path), (Method::Head, "/b"));
    assert_eq!(parse_request(&rest[second.head_len..], LIMIT), Ok(None));
}

#[test]
fn get_of_an_object() {
    let object = segment();
    let (head, answer) = respond(
        b"GET /live/a/1.m4s HTTP/1.1\r\nHost: x\r\n\r\n",
        Some(&object),
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"));
    assert_eq!(header(&head, "content-type"), Some("video/mp4"));
    assert_eq!(header(&head, "content-length"), Some("10"));
    assert_eq!(
        header(&head, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(header(&head, "etag"), Some("\"000000000000002a\""));
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
    assert!(header(&head, "access-control-expose-headers").is_some());
    assert_eq!(header(&head, "date"), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_eq!(header(&head, "connection"), None);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.as_deref(), Some(&b"0123456789"[..]));
    assert!(!answer.close);
}

#[test]
fn head_has_the_same_headers_and_no_body() {
    let object = segment();
    let (get, _) = respond(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", Some(&object));
    let (head, answer) = respond(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n", Some(&object));
    assert_eq!(head, get);
    assert_eq!(answer.body, None);
    let (missing, answer) = respond(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n", None);
    assert!(missing.ends_with("\r\n\r\n"), "no body after a HEAD 404");
    assert_eq!(answer.status, 404);
}

#[test]
fn cache_control_follows_the_policy() {
    let mut object = segment();
    object.cache = CachePolicy::Live { max_age_secs: 1 };
    let (head, _) = respond(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", Some(&object));
    assert_eq!(header(&head, "cache-control"), Some("public, max-age=1"));
    object.cache = CachePolicy::NoCache;
    let (head, _) = respond(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", Some(&object));
    assert_eq!(header(&head, "cache-control"), Some("no-cache"));
}

#[test]
fn not_found_method_not_allowed_and_options() {
    let (head, answer) = respond(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", None);
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"));
    assert!(head.ends_with("\r\n\r\nnot found\n"));
    assert_eq!(header(&head, "content-length"), Some("10"));
    assert_eq!((answer.status, answer.body), (404, None));

    let (head, answer) = respond(b"DELETE /x HTTP/1.1\r\nHost: x\r\n\r\n", Some(&segment()));
    assert!(head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    assert_eq!(header(&head, "allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(answer.status, 405);

    let (head, answer) = respond(
        b"OPTIONS /live/a/1.m4s HTTP/1.1\r\nHost: x\r\nOrigin: https://player\r\n\
          Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: range\r\n\r\n",
        None,
    );
    assert!(head.starts_with("HTTP/1.1 204 No Content\r\n"));
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(&head, "access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS")
    );
    assert!(header(&head, "access-control-allow-headers").is_some_and(|h| h.contains("Range")));
    assert_eq!(header(&head, "content-length"), None);
    assert_eq!(answer.status, 204);
}

#[test]
fn connection_header_reflects_persistence() {
    let object = segment();
    let (head, answer) = respond(
        b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Some(&object),
    );
    assert_eq!(header(&head, "connection"), Some("close"));
    assert!(answer.close);
    let (head, answer) = respond(b"GET /x HTTP/1.0\r\n\r\n", Some(&object));
    assert_eq!(header(&head, "connection"), Some("close"));
    assert!(answer.close);
    let (head, answer) = respond(
        b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        Some(&object),
    );
    assert_eq!(header(&head, "connection"), Some("keep-alive"));
    assert!(!answer.close);
}

#[test]
fn if_none_match_gives_304() {
    let object = segment();
    for list in [
        "\"000000000000002a\"",
        "W/\"000000000000002a\"",
        "\"other\", \"000000000000002a\"",
        "*",
    ] {
        let request = format!("GET /x HTTP/1.1\r\nHost: x\r\nIf-None-Match: {list}\r\n\r\n");
        let (head, answer) = respond(request.as_bytes(), Some(&object));
        assert!(head.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{list}");
        assert_eq!(header(&head, "etag"), Some("\"000000000000002a\""));
        assert_eq!(answer.body, None);
    }
    let (_, answer) = respond(
        b"GET /x HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"000000000000002b\"\r\n\r\n",
        Some(&object),
    );
    assert_eq!(answer.status, 200);
}

#[test]
fn ranges() {
    let object = segment();
    let get = |range: &str| {
        let request = format!("GET /x HTTP/1.1\r\nHost: x\r\nRange: {range}\r\n\r\n");
        respond(request.as_bytes(), Some(&object))
    };
    let (head, answer) = get("bytes=2-4");
    assert!(head.starts_with("HTTP/1.1 206 Partial Content\r\n"));
    assert_eq!(header(&head, "content-range"), Some("bytes 2-4/10"));
    assert_eq!(header(&head, "content-length"), Some("3"));
    assert_eq!(answer.body.as_deref(), Some(&b"234"[..]));
    assert_eq!(get("bytes=7-").1.body.as_deref(), Some(&b"789"[..]));
    assert_eq!(get("bytes=-3").1.body.as_deref(), Some(&b"789"[..]));
    assert_eq!(get("bytes=-30").1.body.as_deref(), Some(&b"0123456789"[..]));
    assert_eq!(get("bytes=8-100").1.body.as_deref(), Some(&b"89"[..]));
    let (head, answer) = get("bytes=10-");
    assert!(head.starts_with("HTTP/1.1 416 "));
    assert_eq!(header(&head, "content-range"), Some("bytes */10"));
    assert_eq!((answer.status, answer.body), (416, None));
    assert_eq!(get("bytes=-0").1.status, 416);
    // Ignored: several ranges, another unit, nonsense.
    for ignored in [
        "bytes=0-1,3-4",
        "items=0-1",
        "bytes=5-2",
        "bytes=x-",
        "bytes",
    ] {
        assert_eq!(get(ignored).1.status, 200, "{ignored}");
    }
    // If-Range with another version: the whole object.
    let (_, answer) = respond(
        b"GET /x HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\nIf-Range: \"1\"\r\n\r\n",
        Some(&object),
    );
    assert_eq!(answer.status, 200);
    let (_, answer) = respond(
        b"GET /x HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\nIf-Range: \"000000000000002a\"\r\n\r\n",
        Some(&object),
    );
    assert_eq!(answer.status, 206);
}

#[test]
fn byte_range_edges() {
    assert_eq!(byte_range(b"bytes=0-0", 0), RangeOutcome::Unsatisfiable);
    assert_eq!(byte_range(b"bytes=-5", 0), RangeOutcome::Unsatisfiable);
    assert_eq!(
        byte_range(b" Bytes = 0 - 99999999999999999999 ", 3),
        RangeOutcome::Partial { first: 0, last: 2 }
    );
    assert_eq!(
        byte_range(b"bytes=99999999999999999999-", 3),
        RangeOutcome::Full
    );
    assert_eq!(
        byte_range(b"bytes=-99999999999999999999", 3),
        RangeOutcome::Partial { first: 0, last: 2 }
    );
}

#[test]
fn rejections_and_timeout_close() {
    let mut out = Vec::new();
    let answer = answer_rejection(Rejection::BadRequest("x"), DATE, &mut out);
    let head = String::from_utf8(out).expect("ascii");
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
    assert_eq!(header(&head, "connection"), Some("close"));
    assert!(head.ends_with("bad request\n"));
    assert!(answer.close);
    let mut out = Vec::new();
    assert_eq!(
        answer_rejection(Rejection::HeadTooLarge, b"", &mut out).status,
        431
    );
    assert!(out.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    assert!(!String::from_utf8_lossy(&out).contains("Date:"));
    let mut out = Vec::new();
    assert_eq!(answer_timeout(DATE, &mut out).status, 408);
    assert!(out.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
}

#[test]
fn http_dates() {
    assert_eq!(&format_http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(
        &format_http_date(784_111_777),
        b"Sun, 06 Nov 1994 08:49:37 GMT"
    );
    // 2000-02-29 (leap day of a century leap year) 23:59:59.
    assert_eq!(
        &format_http_date(951_868_799),
        b"Tue, 29 Feb 2000 23:59:59 GMT"
    );
    assert_eq!(
        &format_http_date(1_798_761_600),
        b"Fri, 01 Jan 2027 00:00:00 GMT"
    );
}
