//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` header, parsed
//! and formatted, and the ids it carries. `tracestate` is not parsed: it is carried on
//! unchanged, so nothing here needs to know its members.
//!
//! A malformed `traceparent` is never an error the caller sees: the spec says to ignore it and
//! start a new trace, so [`TraceParent::parse`] returns why it was ignored (for a debug log) and
//! the caller starts afresh.

use std::fmt;

/// The request header that carries the caller's trace: `00-<trace id>-<parent id>-<flags>`.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The request header with vendor-specific trace data, carried through unchanged.
pub const TRACESTATE_HEADER: &str = "tracestate";
/// The response header that tells the caller which trace (and which server span) served it, in
/// the `traceparent` format (W3C Trace Context Level 2, `traceresponse`).
pub const TRACERESPONSE_HEADER: &str = "traceresponse";

/// The `sampled` flag: the caller may have recorded its span, and asks that this one be kept.
pub const FLAG_SAMPLED: u8 = 0x01;
/// The flags defined so far (Level 2 adds `random`, 0x02); others are zeroed when propagating,
/// as the spec asks.
const KNOWN_FLAGS: u8 = 0x03;

/// The longest `tracestate` carried on, in bytes. The spec asks to propagate at least 512
/// characters and allows dropping what does not fit; 8 KiB is far beyond any real one and
/// keeps a hostile header from riding along on every forwarded call.
pub const TRACESTATE_MAX_BYTES: usize = 8 * 1024;

/// A 16-byte trace id, shared by every span of one trace; never all zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id (the `parent-id` of a `traceparent`); never all zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A fresh random trace id, for a call that arrived without a valid `traceparent`.
    pub fn random() -> TraceId {
        // A v4 UUID is 122 random bits from the OS generator: plenty for a trace id, and no
        // extra dependency. Never zero (the version bits are set).
        TraceId(uuid::Uuid::new_v4().into_bytes())
    }
}

impl SpanId {
    /// A fresh random span id.
    pub fn random() -> SpanId {
        loop {
            let bits = uuid::Uuid::new_v4().as_u128();
            // Fold the two halves so that all 64 bits are random (each half has fixed bits).
            let folded = (bits as u64) ^ ((bits >> 64) as u64);
            if folded != 0 {
                return SpanId(folded.to_be_bytes());
            }
        }
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// A parsed `traceparent` (or `traceresponse`): which trace, which span of it, and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    /// The caller's span (in a `traceresponse`: the server's span).
    pub parent_id: SpanId,
    /// The trace flags; only [`FLAG_SAMPLED`] and Level 2's `random` are kept.
    pub flags: u8,
}

/// Why a `traceparent` was ignored. The call goes on with a new trace either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    #[error("traceparent is {len} characters; at least 55 are needed")]
    TooShort { len: usize },
    #[error("traceparent version 00 must be exactly 55 characters, not {len}")]
    WrongLength { len: usize },
    #[error("traceparent has a malformed version")]
    BadVersion,
    #[error("traceparent version ff is forbidden")]
    ForbiddenVersion,
    #[error("traceparent fields must be separated by single dashes")]
    BadDelimiter,
    #[error("traceparent has a malformed trace id (32 lowercase hex digits expected)")]
    BadTraceId,
    #[error("traceparent has an all-zero trace id")]
    ZeroTraceId,
    #[error("traceparent has a malformed parent id (16 lowercase hex digits expected)")]
    BadParentId,
    #[error("traceparent has an all-zero parent id")]
    ZeroParentId,
    #[error("traceparent has malformed flags (2 lowercase hex digits expected)")]
    BadFlags,
}

impl TraceParent {
    /// Parses a `traceparent` value as the spec's processing model says: version 00 is exactly
    /// `vv-<32 hex>-<16 hex>-<2 hex>`; a later version is read the same way as far as version
    /// 00 goes, and may continue after a dash. Hex must be lowercase; all-zero ids and version
    /// `ff` are invalid.
    pub fn parse(value: &str) -> Result<TraceParent, TraceParentError> {
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return Err(TraceParentError::TooShort { len: bytes.len() });
        }
        let version = hex_field::<1>(&bytes[0..2]).ok_or(TraceParentError::BadVersion)?[0];
        if version == 0xff {
            return Err(TraceParentError::ForbiddenVersion);
        }
        if version == 0 && bytes.len() != 55 {
            return Err(TraceParentError::WrongLength { len: bytes.len() });
        }
        // A later version may append fields, always after a dash.
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' || (bytes.len() > 55 && bytes[55] != b'-') {
            return Err(TraceParentError::BadDelimiter);
        }
        let trace_id = hex_field::<16>(&bytes[3..35]).ok_or(TraceParentError::BadTraceId)?;
        if trace_id == [0; 16] {
            return Err(TraceParentError::ZeroTraceId);
        }
        let parent_id = hex_field::<8>(&bytes[36..52]).ok_or(TraceParentError::BadParentId)?;
        if parent_id == [0; 8] {
            return Err(TraceParentError::ZeroParentId);
        }
        let flags = hex_field::<1>(&bytes[53..55]).ok_or(TraceParentError::BadFlags)?[0];
        Ok(TraceParent { trace_id: TraceId(trace_id), parent_id: SpanId(parent_id), flags: flags & KNOWN_FLAGS })
    }

    /// Whether the caller asks for the trace to be recorded.
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
}

/// Formats as version 00, the only version this code writes.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }
}

/// `N` bytes from exactly `2 * N` lowercase hex digits.
fn hex_field<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `value` and checks the outcome; a valid value must also format back to the
    /// version-00 form `formatted`.
    fn check(value: &str, expected: Result<&str, TraceParentError>) {
        let parsed = TraceParent::parse(value);
        match (parsed, expected) {
            (Ok(parsed), Ok(formatted)) => assert_eq!(parsed.to_string(), formatted, "{value:?}"),
            (Err(got), Err(want)) => assert_eq!(got, want, "{value:?}"),
            (got, want) => panic!("{value:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn accepts_the_specs_valid_examples() {
        // The examples of the spec's traceparent section.
        for value in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-00",
        ] {
            check(value, Ok(value));
        }
        let parsed = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(parsed.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(parsed.sampled());
        assert!(!TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-00").unwrap().sampled());
    }

    #[test]
    fn reads_later_versions_as_far_as_version_00_goes() {
        // The spec's "future version" example: parsed as version 00, extra fields dropped.
        check(
            "cc-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01-what-the-future-will-be-like",
            Ok("00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"),
        );
        check(
            "01-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01",
            Ok("00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"),
        );
        check("cc-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01.what", Err(TraceParentError::BadDelimiter));
        check("cc-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-0", Err(TraceParentError::TooShort { len: 54 }));
    }

    #[test]
    fn keeps_only_known_flags() {
        check(
            "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-ff",
            Ok("00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-03"),
        );
        check(
            "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-09",
            Ok("00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"),
        );
    }

    #[test]
    fn refuses_the_specs_invalid_examples() {
        use TraceParentError::*;
        let cases = [
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", ZeroTraceId),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ZeroParentId),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ForbiddenVersion),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", BadTraceId),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", BadParentId),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0X", BadFlags),
            ("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", BadVersion),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", WrongLength { len: 56 }),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", WrongLength { len: 61 }),
            ("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", BadDelimiter),
            ("00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", BadDelimiter),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", TooShort { len: 54 }),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01", TooShort { len: 54 }),
            ("", TooShort { len: 0 }),
            ("00-xyz", TooShort { len: 6 }),
            ("00-4bf92f3577b34da6a3ce929d0e0e47 6-00f067aa0ba902b7-01", BadTraceId),
            ("00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", BadTraceId),
        ];
        for (value, error) in cases {
            check(value, Err(error));
        }
        // Multi-byte characters where digits belong are refused, not sliced mid-character.
        check(
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
            Err(TraceParentError::WrongLength { len: 56 }),
        );
        check("00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01", Err(TraceParentError::BadTraceId));
        check("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902é-01", Err(TraceParentError::BadParentId));
    }

    #[test]
    fn random_ids_are_valid_and_distinct() {
        let (a, b) = (TraceId::random(), TraceId::random());
        assert_ne!(a, b);
        assert_ne!(a.0, [0; 16]);
        let (a, b) = (SpanId::random(), SpanId::random());
        assert_ne!(a, b);
        assert_ne!(a.0, [0; 8]);
        let formatted = TraceParent { trace_id: TraceId::random(), parent_id: a, flags: FLAG_SAMPLED }.to_string();
        assert_eq!(TraceParent::parse(&formatted).unwrap().parent_id, a, "{formatted}");
    }
}
