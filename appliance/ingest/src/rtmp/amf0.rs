//! AMF0 values (Adobe "Action Message Format -- AMF 0", §2): what RTMP commands and data
//! messages are written in. A decoder over a byte slice with depth and size limits, and an
//! encoder into a caller's `Vec`.
//!
//! Supported markers: number, boolean, string, object, null, undefined, ECMA array, object end,
//! strict array, date, long string. Refused by marker: movieclip, reference, unsupported,
//! recordset, XML document, typed object, and the AMF3 switch (0x11).

/// One AMF0 value. Long strings decode into [`Amf0Value::String`]; the encoder picks the long
/// form when a string does not fit a 16-bit length.
#[derive(Clone, Debug, PartialEq)]
pub enum Amf0Value {
    Number(f64),
    Boolean(bool),
    String(String),
    /// Anonymous object: properties in wire order.
    Object(Vec<(String, Amf0Value)>),
    Null,
    Undefined,
    /// Associative array (marker 0x08); the count on the wire is only a hint and is ignored.
    EcmaArray(Vec<(String, Amf0Value)>),
    StrictArray(Vec<Amf0Value>),
    /// Milliseconds since the Unix epoch; the time zone field is written as 0 and ignored.
    Date(f64),
}

impl Amf0Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(number) => Some(*number),
            _ => None,
        }
    }

    /// The named property of an object or ECMA array.
    pub fn property(&self, name: &str) -> Option<&Amf0Value> {
        match self {
            Amf0Value::Object(properties) | Amf0Value::EcmaArray(properties) => properties
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value),
            _ => None,
        }
    }
}

/// Why AMF0 bytes did not decode, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("AMF0 at offset {offset}: {reason}")]
pub struct AmfError {
    pub offset: usize,
    pub reason: String,
}

/// Nesting deeper than this is refused: real commands nest two levels.
pub const MAX_DEPTH: usize = 32;
/// Values (at every depth) in one message above this are refused.
pub const MAX_VALUES: usize = 65_536;

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;
const DATE: u8 = 0x0b;
const LONG_STRING: u8 = 0x0c;

/// Decodes every value in `data` (a command or data message body).
pub fn decode_all(data: &[u8]) -> Result<Vec<Amf0Value>, AmfError> {
    let mut decoder = Decoder {
        data,
        pos: 0,
        values: 0,
    };
    let mut values = Vec::new();
    while decoder.pos < data.len() {
        values.push(decoder.value(0)?);
    }
    Ok(values)
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    values: usize,
}

impl Decoder<'_> {
    fn fail(&self, reason: impl Into<String>) -> AmfError {
        AmfError {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&[u8], AmfError> {
        let bytes = self
            .pos
            .checked_add(len)
            .and_then(|end| self.data.get(self.pos..end))
            .ok_or_else(|| {
                self.fail(format!(
                    "{what} needs {len} bytes, {} left",
                    self.data.len().saturating_sub(self.pos)
                ))
            })?;
        self.pos += len;
        Ok(bytes)
    }

    fn u8(&mut self, what: &str) -> Result<u8, AmfError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, AmfError> {
        let bytes = self.take(2, what)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, AmfError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn f64(&mut self, what: &str) -> Result<f64, AmfError> {
        let bytes = self.take(8, what)?;
        let mut raw = [0; 8];
        raw.copy_from_slice(bytes);
        Ok(f64::from_be_bytes(raw))
    }

    fn utf8(&mut self, len: usize, what: &str) -> Result<String, AmfError> {
        // Names from encoders are ASCII; a stray invalid byte is not worth ending a session.
        Ok(String::from_utf8_lossy(self.take(len, what)?).into_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, AmfError> {
        if depth > MAX_DEPTH {
            return Err(self.fail(format!("nested deeper than {MAX_DEPTH}")));
        }
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(self.fail(format!("more than {MAX_VALUES} values")));
        }
        let marker_at = self.pos;
        let marker = self.u8("type marker")?;
        Ok(match marker {
            NUMBER => Amf0Value::Number(self.f64("number")?),
            BOOLEAN => Amf0Value::Boolean(self.u8("boolean")? != 0),
            STRING => {
                let len = self.u16("string length")?;
                Amf0Value::String(self.utf8(usize::from(len), "string")?)
            }
            LONG_STRING => {
                let len = self.u32("long string length")?;
                Amf0Value::String(self.utf8(len as usize, "long string")?)
            }
            OBJECT => Amf0Value::Object(self.properties(depth)?),
            NULL => Amf0Value::Null,
            UNDEFINED => Amf0Value::Undefined,
            ECMA_ARRAY => {
                self.u32("ECMA array count")?;
                Amf0Value::EcmaArray(self.properties(depth)?)
            }
            STRICT_ARRAY => {
                let count = self.u32("strict array count")?;
                // alloc: grown as elements arrive, never sized from the untrusted count.
                let mut items = Vec::new();
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            DATE => {
                let millis = self.f64("date")?;
                self.u16("date time zone")?;
                Amf0Value::Date(millis)
            }
            OBJECT_END => {
                return Err(AmfError {
                    offset: marker_at,
                    reason: "object end marker outside an object".into(),
                });
            }
            other => {
                return Err(AmfError {
                    offset: marker_at,
                    reason: format!("unsupported type marker 0x{other:02x}"),
                });
            }
        })
    }

    /// Properties up to the empty name + object end marker (§2.5).
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>, AmfError> {
        let mut properties = Vec::new();
        loop {
            let len = self.u16("property name length")?;
            if len == 0 && self.data.get(self.pos) == Some(&OBJECT_END) {
                self.pos += 1;
                return Ok(properties);
            }
            let name = self.utf8(usize::from(len), "property name")?;
            let value = self.value(depth + 1)?;
            properties.push((name, value));
        }
    }
}

/// Appends the encoding of `value` to `out`.
pub fn encode(value: &Amf0Value, out: &mut Vec<u8>) {
    match value {
        Amf0Value::Number(number) => {
            out.push(NUMBER);
            out.extend_from_slice(&number.to_be_bytes());
        }
        Amf0Value::Boolean(flag) => out.extend_from_slice(&[BOOLEAN, u8::from(*flag)]),
        Amf0Value::String(text) => match u16::try_from(text.len()) {
            Ok(len) => {
                out.push(STRING);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            Err(_) => {
                out.push(LONG_STRING);
                // Our own strings; none comes near 4 GiB.
                out.extend_from_slice(&(text.len() as u32).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        },
        Amf0Value::Object(properties) => {
            out.push(OBJECT);
            encode_properties(properties, out);
        }
        Amf0Value::Null => out.push(NULL),
        Amf0Value::Undefined => out.push(UNDEFINED),
        Amf0Value::EcmaArray(properties) => {
            out.push(ECMA_ARRAY);
            out.extend_from_slice(&(properties.len() as u32).to_be_bytes());
            encode_properties(properties, out);
        }
        Amf0Value::StrictArray(items) => {
            out.push(STRICT_ARRAY);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                encode(item, out);
            }
        }
        Amf0Value::Date(millis) => {
            out.push(DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
    }
}

fn encode_properties(properties: &[(String, Amf0Value)], out: &mut Vec<u8>) {
    for (name, value) in properties {
        // Property names are ours and short; a longer one is cut rather than mis-framed.
        let name = &name.as_bytes()[..name.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name);
        encode(value, out);
    }
    out.extend_from_slice(&[0, 0, OBJECT_END]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `connect` as ffmpeg 5.1 sends it to rtmp://127.0.0.1/live (tcUrl shortened).
    fn ffmpeg_connect() -> Vec<u8> {
        let mut bytes = vec![0x02, 0x00, 0x07];
        bytes.extend_from_slice(b"connect");
        bytes.extend_from_slice(&[0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]); // 1.0
        bytes.push(0x03);
        bytes.extend_from_slice(&[0x00, 0x03]);
        bytes.extend_from_slice(b"app");
        bytes.extend_from_slice(&[0x02, 0x00, 0x04]);
        bytes.extend_from_slice(b"live");
        bytes.extend_from_slice(&[0x00, 0x04]);
        bytes.extend_from_slice(b"type");
        bytes.extend_from_slice(&[0x02, 0x00, 0x0a]);
        bytes.extend_from_slice(b"nonprivate");
        bytes.extend_from_slice(&[0x00, 0x00, 0x09]);
        bytes
    }

    #[test]
    fn ffmpeg_connect_decodes() {
        let values = decode_all(&ffmpeg_connect()).unwrap();
        assert_eq!(values[0], Amf0Value::String("connect".into()));
        assert_eq!(values[1], Amf0Value::Number(1.0));
        assert_eq!(
            values[2].property("app").and_then(Amf0Value::as_str),
            Some("live")
        );
        assert_eq!(
            values[2].property("type").and_then(Amf0Value::as_str),
            Some("nonprivate")
        );
        assert_eq!(values.len(), 3);
    }

    #[test]
    fn every_type_round_trips() {
        let value = Amf0Value::StrictArray(vec![
            Amf0Value::Number(-2.5),
            Amf0Value::Boolean(true),
            Amf0Value::String("x".repeat(70_000)),
            Amf0Value::Object(vec![("a".into(), Amf0Value::Null)]),
            Amf0Value::Undefined,
            Amf0Value::EcmaArray(vec![("duration".into(), Amf0Value::Number(0.0))]),
            Amf0Value::Date(1.7e12),
            Amf0Value::String(String::new()),
        ]);
        let mut bytes = Vec::new();
        encode(&value, &mut bytes);
        // The 70,000-byte string took the long form.
        assert!(
            bytes
                .windows(5)
                .any(|w| w == [LONG_STRING, 0, 1, 0x11, 0x70])
        );
        assert_eq!(decode_all(&bytes).unwrap(), vec![value]);
    }

    #[test]
    fn onmetadata_ecma_array_matches_bytes() {
        let value = Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(640.0))]);
        let mut bytes = Vec::new();
        encode(&value, &mut bytes);
        let mut expected = vec![0x08, 0, 0, 0, 1, 0, 5];
        expected.extend_from_slice(b"width");
        expected.extend_from_slice(&[0x00, 0x40, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn malformed_values_are_errors_with_offsets() {
        let connect = ffmpeg_connect();
        for len in 1..connect.len() {
            // Cuts at a value boundary decode fine; every other cut is an error, not a panic.
            if let Err(err) = decode_all(&connect[..len]) {
                assert!(err.offset <= len, "{err}");
            }
        }
        assert_eq!(decode_all(&[0x09]).unwrap_err().offset, 0);
        let err = decode_all(&[0x02, 0x00, 0x01, 0x61, 0x11]).unwrap_err();
        assert_eq!(err.offset, 4);
        assert!(err.reason.contains("0x11"), "{err}");
        // A strict array claiming 4 billion elements fails on the data, not on allocation.
        assert!(decode_all(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x05]).is_err());
        let deep: Vec<u8> = std::iter::repeat_n([0x0a, 0, 0, 0, 1], 100)
            .flatten()
            .collect();
        assert!(decode_all(&deep).unwrap_err().reason.contains("deeper"));
    }
}
