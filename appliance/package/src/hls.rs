//! HLS playlist writers (RFC 8216 / draft-pantos-hls-rfc8216bis).
