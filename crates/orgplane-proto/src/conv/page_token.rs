//! Page tokens: opaque to clients (URL-safe base64 of the key to resume after), so the key
//! layout can change without breaking them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::ConvError;

/// The longest page token accepted, in bytes; larger ones are refused before decoding.
pub const PAGE_TOKEN_MAX_BYTES: usize = 1024;

pub fn encode_page_token(resume_after: &str) -> String {
    URL_SAFE_NO_PAD.encode(resume_after.as_bytes())
}

/// Decodes a page token; the empty token means "from the start".
pub fn decode_page_token(token: &str) -> Result<Option<String>, ConvError> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > PAGE_TOKEN_MAX_BYTES {
        return Err(ConvError::new("page_token", "is too long"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ConvError::new("page_token", "is not a token this service issued"))?;
    String::from_utf8(bytes).map(Some).map_err(|_| ConvError::new("page_token", "is not a token this service issued"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        assert_eq!(decode_page_token(&encode_page_token("eu-abc")).unwrap().as_deref(), Some("eu-abc"));
        assert_eq!(decode_page_token("").unwrap(), None);
        assert!(decode_page_token("!!!").is_err());
        assert!(decode_page_token(&"a".repeat(2000)).is_err());
    }
}
