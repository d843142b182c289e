//! SRT settings: the listener (`srt = ADDR`), per-stream settings (`[[srt_stream]]`) and
//! caller pulls (`[[source]] url = "srt://..."`). docs/srt.md and docs/configuration.md.

use std::net::SocketAddr;
use std::time::Duration;

/// libsrt's default latency, and ours.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(120);

/// The SRT listener and its streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrtConfig {
    /// UDP address of the main listener (stream ids pick the stream).
    pub listen: SocketAddr,
    /// The application part of stream ids (`publish:<app>/<name>`); RTMP's app.
    pub app: String,
    /// Latency of streams without their own.
    pub latency: Duration,
    /// Per-stream settings; streams not listed publish and play unencrypted.
    pub streams: Vec<SrtStreamConfig>,
    /// A publisher that sends no media for this long is dropped.
    pub timeout: Duration,
}

impl Default for SrtConfig {
    fn default() -> Self {
        SrtConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9000)),
            app: "live".to_owned(),
            latency: DEFAULT_LATENCY,
            streams: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// One `[[srt_stream]]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtStreamConfig {
    pub name: String,
    /// Required of every caller of this stream (publish and read) when set; 10 to 79
    /// characters. The caller picks the AES key length (16, 24 or 32 bytes).
    pub passphrase: Option<String>,
    /// Key length this side announces when it is the sender (read connections).
    pub key_length: Option<u8>,
    pub latency: Duration,
    /// A listener of its own on this UDP port (same address as the main one): callers that
    /// send no stream id publish this stream.
    pub port: Option<u16>,
}

impl std::fmt::Debug for SrtStreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtStreamConfig")
            .field("name", &self.name)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "***"))
            .field("key_length", &self.key_length)
            .field("latency", &self.latency)
            .field("port", &self.port)
            .finish()
    }
}

impl SrtConfig {
    /// The settings of `name`, if it has any.
    pub fn stream(&self, name: &str) -> Option<&SrtStreamConfig> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// Checks what the config file cannot express by its types.
    pub fn validate(&self) -> Result<(), String> {
        for (index, stream) in self.streams.iter().enumerate() {
            let label = format!("srt_stream[{index}] (name {:?})", stream.name);
            if !crate::hub::valid_stream_name(&stream.name) {
                return Err(format!(
                    "{label}: use letters, digits, '-', '_' and '.' in the name"
                ));
            }
            if self.streams[..index].iter().any(|s| s.name == stream.name) {
                return Err(format!("{label}: two entries for one stream"));
            }
            if let Some(p) = &stream.passphrase {
                libsrt::check_passphrase(p).map_err(|why| format!("{label}: passphrase: {why}"))?;
            }
            if let Some(k) = stream.key_length
                && libsrt::KeyLength::from_bytes(u32::from(k)).is_none()
            {
                return Err(format!(
                    "{label}: key_length = {k}: use 16, 24 or 32 (AES-128/192/256)"
                ));
            }
            check_latency(&label, stream.latency)?;
            if let Some(port) = stream.port {
                if port == 0 || port == self.listen.port() {
                    return Err(format!(
                        "{label}: port = {port}: a port other than 0 and the main listener's"
                    ));
                }
                if self.streams[..index].iter().any(|s| s.port == Some(port)) {
                    return Err(format!("{label}: port {port} is used by another stream"));
                }
            }
        }
        check_latency("srt_latency_ms", self.latency)
    }
}

fn check_latency(label: &str, latency: Duration) -> Result<(), String> {
    if !(Duration::from_millis(20)..=Duration::from_secs(10)).contains(&latency) {
        return Err(format!(
            "{label}: latency {} ms: must be 20 to 10000 ms",
            latency.as_millis()
        ));
    }
    Ok(())
}

/// One `[[source]]` with an `srt://` URL: corecast calls a remote SRT listener and publishes
/// what it receives.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtSourceConfig {
    /// The stream name it publishes.
    pub name: String,
    /// The URL as configured (logs redact its passphrase).
    pub url: String,
    /// `host:port`, resolved at each attempt.
    pub host: String,
    pub port: u16,
    pub stream_id: Option<String>,
    pub passphrase: Option<String>,
    pub key_length: Option<u8>,
    pub latency: Duration,
    /// No media for this long and the connection is dropped and retried.
    pub timeout: Duration,
}

impl std::fmt::Debug for SrtSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtSourceConfig")
            .field("name", &self.name)
            .field("url", &crate::sources::redact_url(&self.url))
            .field("stream_id", &self.stream_id)
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl SrtSourceConfig {
    /// Reads `srt://HOST:PORT[?streamid=ID][&passphrase=P][&pbkeylen=16|24|32]
    /// [&latency=MS][&mode=caller]`. Latency is in milliseconds, as in libsrt's URIs and
    /// srt-live-transmit (ffmpeg's `latency` is in microseconds: not this). Values may be
    /// percent-encoded.
    pub fn from_url(name: &str, url: &str, timeout: Duration) -> Result<Self, String> {
        let rest = url
            .strip_prefix("srt://")
            .ok_or_else(|| "not an srt:// URL".to_owned())?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_end_matches('/');
        let (host, port) = authority
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .filter(|(h, p)| !h.is_empty() && *p != 0)
            .ok_or_else(|| format!("{authority:?} is not HOST:PORT (the listener to call)"))?;
        let mut config = SrtSourceConfig {
            name: name.to_owned(),
            url: url.to_owned(),
            host: host.to_owned(),
            port,
            stream_id: None,
            passphrase: None,
            key_length: None,
            latency: DEFAULT_LATENCY,
            timeout,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match key {
                "streamid" => config.stream_id = Some(value).filter(|v| !v.is_empty()),
                "passphrase" => {
                    libsrt::check_passphrase(&value).map_err(|why| format!("passphrase: {why}"))?;
                    config.passphrase = Some(value);
                }
                "pbkeylen" => {
                    config.key_length = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|k| matches!(k, 16 | 24 | 32))
                            .ok_or_else(|| format!("pbkeylen={value:?}: use 16, 24 or 32"))?,
                    );
                }
                "latency" => {
                    let ms: u64 = value
                        .parse()
                        .map_err(|_| format!("latency={value:?}: milliseconds"))?;
                    config.latency = Duration::from_millis(ms);
                    check_latency("latency", config.latency).map_err(|e| {
                        format!("{e} (milliseconds, as in libsrt URIs; not ffmpeg's microseconds)")
                    })?;
                }
                "mode" if value == "caller" => {}
                "mode" => {
                    return Err(format!(
                        "mode={value:?}: a [[source]] calls out (mode=caller); remote callers \
                         publish to the listener (srt = ADDR) instead"
                    ));
                }
                other => {
                    return Err(format!(
                        "unknown option {other:?} (known: streamid, passphrase, pbkeylen, \
                         latency, mode)"
                    ));
                }
            }
        }
        Ok(config)
    }
}

/// `%XX` escapes decoded (stream ids often carry `#!::` and `,`, escaped or not).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_urls() {
        let t = Duration::from_secs(10);
        let c = SrtSourceConfig::from_url(
            "relay",
            "srt://10.0.0.5:9000?streamid=%23!::r=live/cam1,m=request&passphrase=abcdefghij&pbkeylen=32&latency=200",
            t,
        )
        .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("10.0.0.5", 9000));
        assert_eq!(c.stream_id.as_deref(), Some("#!::r=live/cam1,m=request"));
        assert_eq!(c.passphrase.as_deref(), Some("abcdefghij"));
        assert_eq!(c.key_length, Some(32));
        assert_eq!(c.latency, Duration::from_millis(200));
        assert!(!format!("{c:?}").contains("abcdefghij"));
        let c = SrtSourceConfig::from_url("r", "srt://encoder.local:4200", t).unwrap();
        assert_eq!(c.host, "encoder.local");
        assert_eq!(c.latency, DEFAULT_LATENCY);
        assert_eq!(c.stream_id, None);
        for (url, expected) in [
            ("udp://x:1", "not an srt://"),
            ("srt://host", "not HOST:PORT"),
            ("srt://:9000", "not HOST:PORT"),
            ("srt://h:0", "not HOST:PORT"),
            ("srt://h:1?passphrase=short", "10 to 79"),
            ("srt://h:1?pbkeylen=20", "16, 24 or 32"),
            ("srt://h:1?latency=120000", "microseconds"),
            ("srt://h:1?mode=listener", "mode=\"listener\""),
            ("srt://h:1?ttl=3", "unknown option \"ttl\""),
        ] {
            let err = SrtSourceConfig::from_url("r", url, t).unwrap_err();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn stream_settings_are_checked() {
        let stream = |name: &str, passphrase: Option<&str>, port: Option<u16>| SrtStreamConfig {
            name: name.into(),
            passphrase: passphrase.map(str::to_owned),
            key_length: None,
            latency: DEFAULT_LATENCY,
            port,
        };
        let mut config = SrtConfig {
            streams: vec![stream("cam", Some("0123456789"), Some(9001))],
            ..SrtConfig::default()
        };
        assert_eq!(config.validate(), Ok(()));
        assert!(!format!("{:?}", config.streams[0]).contains("0123456789"));
        for (bad, expected) in [
            (stream("a/b", None, None), "letters"),
            (stream("cam", None, None), "two entries"),
            (stream("x", Some("short"), None), "10 to 79"),
            (stream("x", None, Some(9000)), "port = 9000"),
            (stream("x", None, Some(9001)), "used by another"),
        ] {
            config.streams.push(bad);
            let err = config.validate().unwrap_err();
            assert!(err.contains(expected), "{err}");
            config.streams.pop();
        }
        assert_eq!(percent_decode("%23!%3a%zz%"), "#!:%zz%");
    }
}
