//! SRT stream ids: what a caller asks for, read from the `streamid` it sends (SRTO_STREAMID,
//! carried in the handshake's SRT_CMD_SID extension, SRT RFC draft §3.2.1.3). Pure parsing:
//! the engine's listener calls [`parse_stream_id`] from libsrt's access hook.
//!
//! Two spellings are accepted:
//! - corecast's short form: `publish:APP/NAME` (send a stream) and `read:APP/NAME` (receive
//!   one), as ffmpeg users write it (`srt://host:9000?streamid=publish:live/cam1`);
//! - the standard access-control form of libsrt's docs/features/access-control.md:
//!   `#!::r=APP/NAME,m=publish`, keys in any order, `m=request` (the default) to receive,
//!   `m=publish` to send; `u=` (user) is kept for the logs; `s=` (session) and `h=` (host)
//!   are ignored; `t=` must be `stream` when present; unknown keys are ignored as the
//!   document asks.
//!
//! `APP/` may be left out (`publish:cam1`): the name is then in the default app. A stream id
//! that is empty means "no stream id": the listener maps it to a stream by its port.
//! Anything else is refused with a [`StreamIdError`] saying what was wrong.

/// What the caller wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrtMode {
    /// The caller sends a stream (it is the publisher).
    Publish,
    /// The caller receives a stream (`read:` or `m=request`).
    Read,
}

/// A parsed stream id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRequest {
    pub mode: SrtMode,
    /// The application part (`live`), when the id had one.
    pub app: Option<String>,
    /// The stream name.
    pub name: String,
    /// `u=` of the access-control form, for logs only.
    pub user: Option<String>,
}

/// Why a stream id was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamIdError {
    #[error("stream id {0:?} is not publish:APP/NAME, read:APP/NAME or #!::r=APP/NAME,m=MODE")]
    UnknownForm(String),
    #[error("stream id {id:?}: mode {mode:?} is not publish or request")]
    UnknownMode { id: String, mode: String },
    #[error("stream id {id:?}: type {kind:?} is not supported (only t=stream)")]
    UnsupportedType { id: String, kind: String },
    #[error("stream id {0:?} names no resource (r=)")]
    NoResource(String),
    #[error("stream id {id:?}: resource {resource:?} is not APP/NAME or NAME")]
    BadResource { id: String, resource: String },
}

/// Reads a stream id. `Ok(None)`: the caller sent none (an empty id).
pub fn parse_stream_id(id: &str) -> Result<Option<StreamRequest>, StreamIdError> {
    let id = id.trim();
    if id.is_empty() {
        return Ok(None);
    }
    if let Some(body) = id.strip_prefix("#!::") {
        return parse_access_control(id, body).map(Some);
    }
    let (mode, resource) = if let Some(resource) = id.strip_prefix("publish:") {
        (SrtMode::Publish, resource)
    } else if let Some(resource) = id.strip_prefix("read:") {
        (SrtMode::Read, resource)
    } else {
        return Err(StreamIdError::UnknownForm(id.to_owned()));
    };
    let (app, name) = split_resource(id, resource)?;
    Ok(Some(StreamRequest {
        mode,
        app,
        name,
        user: None,
    }))
}

fn parse_access_control(id: &str, body: &str) -> Result<StreamRequest, StreamIdError> {
    let mut resource = None;
    let mut mode = SrtMode::Read;
    let mut user = None;
    for pair in body.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key.trim() {
            "r" => resource = Some(value.trim()),
            "m" => {
                mode = match value.trim() {
                    "publish" => SrtMode::Publish,
                    "request" => SrtMode::Read,
                    other => {
                        return Err(StreamIdError::UnknownMode {
                            id: id.to_owned(),
                            mode: other.to_owned(),
                        });
                    }
                }
            }
            "u" => user = Some(value.trim().to_owned()),
            "t" if value.trim() != "stream" => {
                return Err(StreamIdError::UnsupportedType {
                    id: id.to_owned(),
                    kind: value.trim().to_owned(),
                });
            }
            // s= (session), h= (host), t=stream and keys of other schemes: nothing to do.
            _ => {}
        }
    }
    let resource = resource
        .filter(|r| !r.is_empty())
        .ok_or_else(|| StreamIdError::NoResource(id.to_owned()))?;
    let (app, name) = split_resource(id, resource)?;
    Ok(StreamRequest {
        mode,
        app,
        name,
        user,
    })
}

/// `APP/NAME` or `NAME`. The name's alphabet is the hub's business; this only refuses what
/// cannot be a name at all.
fn split_resource(id: &str, resource: &str) -> Result<(Option<String>, String), StreamIdError> {
    let bad = || StreamIdError::BadResource {
        id: id.to_owned(),
        resource: resource.to_owned(),
    };
    let resource = resource.trim_matches('/');
    let (app, name) = match resource.split_once('/') {
        Some((app, name)) => (Some(app.to_owned()), name),
        None => (None, resource),
    };
    if name.is_empty() || name.contains('/') || app.as_deref() == Some("") {
        return Err(bad());
    }
    Ok((app, name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(mode: SrtMode, app: Option<&str>, name: &str) -> StreamRequest {
        StreamRequest {
            mode,
            app: app.map(str::to_owned),
            name: name.to_owned(),
            user: None,
        }
    }

    #[test]
    fn short_form() {
        assert_eq!(
            parse_stream_id("publish:live/cam1"),
            Ok(Some(request(SrtMode::Publish, Some("live"), "cam1")))
        );
        assert_eq!(
            parse_stream_id("read:live/cam1"),
            Ok(Some(request(SrtMode::Read, Some("live"), "cam1")))
        );
        assert_eq!(
            parse_stream_id("publish:cam1"),
            Ok(Some(request(SrtMode::Publish, None, "cam1")))
        );
        assert_eq!(parse_stream_id(""), Ok(None));
        assert_eq!(parse_stream_id("  "), Ok(None));
    }

    #[test]
    fn access_control_form_in_any_order() {
        // As srt-live-transmit and libsrt's docs write it.
        assert_eq!(
            parse_stream_id("#!::r=live/cam1,m=publish"),
            Ok(Some(request(SrtMode::Publish, Some("live"), "cam1")))
        );
        assert_eq!(
            parse_stream_id("#!::m=publish,r=live/cam1"),
            Ok(Some(request(SrtMode::Publish, Some("live"), "cam1")))
        );
        // m= defaults to request.
        assert_eq!(
            parse_stream_id("#!::r=live/cam1"),
            Ok(Some(request(SrtMode::Read, Some("live"), "cam1")))
        );
        let with_user = parse_stream_id("#!::u=alice,r=cam1,m=request,s=abc123,t=stream,x=1")
            .unwrap()
            .unwrap();
        assert_eq!(with_user.mode, SrtMode::Read);
        assert_eq!(with_user.name, "cam1");
        assert_eq!(with_user.user.as_deref(), Some("alice"));
    }

    #[test]
    fn refusals_say_why() {
        for (id, expected) in [
            ("live/cam1", "is not publish:"),
            ("play:live/cam1", "is not publish:"),
            ("#!::m=publish", "names no resource"),
            ("#!::r=,m=publish", "names no resource"),
            ("#!::r=live/cam1,m=bidirectional", "mode \"bidirectional\""),
            ("#!::r=live/cam1,t=file", "type \"file\""),
            ("publish:live/a/b", "is not APP/NAME"),
            ("publish:/", "is not APP/NAME"),
            ("read:", "is not APP/NAME"),
        ] {
            let error = parse_stream_id(id).unwrap_err().to_string();
            assert!(error.contains(expected), "{id}: {error}");
        }
    }

    #[test]
    fn odd_bytes_never_panic() {
        for id in [
            "#!::",
            "#!::,,,",
            "#!::=",
            "#!::r",
            "publish:\u{0}",
            "#!::r=\u{fffd}/\u{fffd}",
            "read://",
        ] {
            let _ = parse_stream_id(id);
        }
    }
}
