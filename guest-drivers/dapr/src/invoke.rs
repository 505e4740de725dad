//! Just enough of the protobuf wire format to retarget a `dapr.proto.runtime.v1.InvokeServiceRequest`
//! (field 1 `id`, field 3 `message`, a `common.v1.InvokeRequest` whose field 1 is `method`)
//! without the dapr protos: the two strings are replaced and every other field is copied
//! byte for byte, as Go's unmarshal/marshal round trip keeps unknown fields.

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// One field as it appeared on the wire.
struct Field<'a> {
    number: u64,
    wire_type: u8,
    /// The whole field, tag included, for copying it.
    raw: &'a [u8],
    /// The content of a length-delimited field.
    content: &'a [u8],
}

fn undecodable(what: &str) -> String {
    format!("the payload is no InvokeServiceRequest: {what}")
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf
            .get(*pos)
            .ok_or_else(|| undecodable("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(undecodable("varint longer than 10 bytes"))
}

fn advance(buf: &[u8], pos: &mut usize, len: u64) -> Result<(), String> {
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| pos.checked_add(len))
        .filter(|&end| end <= buf.len())
        .ok_or_else(|| undecodable("field runs past the end"))?;
    *pos = end;
    Ok(())
}

/// Reads the tag at `pos`: (field number, wire type).
fn read_tag(buf: &[u8], pos: &mut usize) -> Result<(u64, u8), String> {
    let tag = read_varint(buf, pos)?;
    let number = tag >> 3;
    if number == 0 {
        return Err(undecodable("field number 0"));
    }
    Ok((number, (tag & 7) as u8))
}

/// Skips the value of a field of `wire_type` whose tag was just read.
fn skip_value(buf: &[u8], pos: &mut usize, number: u64, wire_type: u8) -> Result<(), String> {
    match wire_type {
        VARINT => read_varint(buf, pos).map(drop),
        FIXED64 => advance(buf, pos, 8),
        LEN => {
            let len = read_varint(buf, pos)?;
            advance(buf, pos, len)
        }
        FIXED32 => advance(buf, pos, 4),
        // A (deprecated) group runs to the end-group tag of the same number.
        START_GROUP => loop {
            let (inner, inner_type) = read_tag(buf, pos)?;
            if inner_type == END_GROUP {
                return if inner == number {
                    Ok(())
                } else {
                    Err(undecodable("mismatched end of group"))
                };
            }
            skip_value(buf, pos, inner, inner_type)?;
        },
        _ => Err(undecodable("unknown wire type")),
    }
}

fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let (number, wire_type) = read_tag(buf, &mut pos)?;
        let value_start = pos;
        skip_value(buf, &mut pos, number, wire_type)?;
        let content = if wire_type == LEN {
            // Past the length prefix, which skip_value just validated.
            let mut at = value_start;
            read_varint(buf, &mut at)?;
            &buf[at..pos]
        } else {
            &[]
        };
        out.push(Field {
            number,
            wire_type,
            raw: &buf[start..pos],
            content,
        });
    }
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, (number << 3) | u64::from(LEN));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A proto3 string: left out when empty, as Go's marshal does.
fn put_string(out: &mut Vec<u8>, number: u64, text: &str) {
    if !text.is_empty() {
        put_bytes(out, number, text.as_bytes());
    }
}

/// `payload` with `id` = `app_id` and `message.method` = `method`. Repeated occurrences of
/// `message` are merged, as protobuf merges a singular message field seen twice.
pub fn retarget(payload: &[u8], app_id: &str, method: &str) -> Result<Vec<u8>, String> {
    let mut message = Vec::new();
    let mut others = Vec::new();
    for field in fields(payload)? {
        match (field.number, field.wire_type) {
            (1, LEN) => {}
            (3, LEN) => message.extend_from_slice(field.content),
            (1 | 3, _) => return Err(undecodable("id or message of the wrong wire type")),
            _ => others.extend_from_slice(field.raw),
        }
    }
    let mut request = Vec::with_capacity(message.len() + method.len() + 4);
    put_string(&mut request, 1, method);
    for field in fields(&message)? {
        match (field.number, field.wire_type) {
            (1, LEN) => {}
            (1, _) => return Err(undecodable("method of the wrong wire type")),
            _ => request.extend_from_slice(field.raw),
        }
    }
    let mut out = Vec::with_capacity(request.len() + app_id.len() + others.len() + 8);
    put_string(&mut out, 1, app_id);
    put_bytes(&mut out, 3, &request);
    out.extend_from_slice(&others);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{id: "dummy-id", message: {method: "dummy-method", data: {value: "{}"},
    /// content_type: "application/json"}}` plus an unknown field 9 = 150 (varint).
    fn request() -> Vec<u8> {
        let mut data = Vec::new();
        put_bytes(&mut data, 2, b"{}");
        let mut message = Vec::new();
        put_string(&mut message, 1, "dummy-method");
        put_bytes(&mut message, 2, &data);
        put_string(&mut message, 3, "application/json");
        let mut out = Vec::new();
        put_string(&mut out, 1, "dummy-id");
        put_bytes(&mut out, 3, &message);
        out.extend_from_slice(&[9 << 3, 0x96, 0x01]);
        out
    }

    #[test]
    fn replaces_id_and_method_and_keeps_the_rest() {
        let out = retarget(&request(), "busi", "busi.Busi/TransOut").unwrap();
        let mut message = Vec::new();
        put_string(&mut message, 1, "busi.Busi/TransOut");
        let mut data = Vec::new();
        put_bytes(&mut data, 2, b"{}");
        put_bytes(&mut message, 2, &data);
        put_string(&mut message, 3, "application/json");
        let mut expected = Vec::new();
        put_string(&mut expected, 1, "busi");
        put_bytes(&mut expected, 3, &message);
        expected.extend_from_slice(&[9 << 3, 0x96, 0x01]);
        assert_eq!(out, expected);
    }

    #[test]
    fn an_empty_request_gets_a_message() {
        assert_eq!(
            retarget(&[], "a", "M").unwrap(),
            b"\x0a\x01a\x1a\x03\x0a\x01M"
        );
        assert_eq!(retarget(&[], "", "").unwrap(), b"\x1a\x00");
    }

    #[test]
    fn groups_and_fixed_fields_are_skipped_whole() {
        // field 5 group holding field 1 fixed32, then field 6 fixed64.
        let mut payload = vec![(5 << 3) | 3, (1 << 3) | 5, 1, 2, 3, 4, (5 << 3) | 4];
        payload.extend_from_slice(&[(6 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8]);
        let out = retarget(&payload, "a", "M").unwrap();
        assert!(out.ends_with(&payload), "{out:?}");
    }

    #[test]
    fn rejects_what_does_not_decode() {
        for bad in [
            &[0x0a, 0x05, b'a'][..],
            &[0x08][..],
            &[0x08, 0x01][..],
            &[0x1a, 0x02, 0x08, 0x01][..],
            &[0x00][..],
            &[(5 << 3) | 3, (6 << 3) | 4][..],
            &[0x0f][..],
            &[0xff; 11][..],
        ] {
            assert!(retarget(bad, "a", "M").is_err(), "{bad:?}");
        }
    }
}
