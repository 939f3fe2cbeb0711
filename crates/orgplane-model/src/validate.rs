//! Input rules. Every check returns [`DomainError::InvalidArgument`] naming the field, so the
//! caller learns exactly what to fix.

use crate::error::DomainError;

/// The longest org name, in characters.
pub const ORG_NAME_MAX_CHARS: usize = 128;
/// The longest user id, in bytes.
pub const USER_ID_MAX_BYTES: usize = 256;
/// The longest request id, in bytes.
pub const REQUEST_ID_MAX_BYTES: usize = 128;
/// The page size used when the caller asks for none.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page a caller may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

fn invalid(field: &'static str, reason: impl Into<String>) -> DomainError {
    DomainError::InvalidArgument { field: field.to_string(), reason: reason.into() }
}

/// An org name: 1 to 128 characters after trimming, no control characters. Returns the trimmed
/// name, which is what gets stored.
pub fn org_name(name: &str) -> Result<String, DomainError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if trimmed.chars().count() > ORG_NAME_MAX_CHARS {
        return Err(invalid("name", format!("must be at most {ORG_NAME_MAX_CHARS} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(invalid("name", "must not contain control characters"));
    }
    Ok(trimmed.to_string())
}

/// A user id as given by the identity provider: 1 to 256 bytes of visible ASCII or other
/// non-control characters, no whitespace, no `/` (it is a key component).
pub fn user_id(user: &str) -> Result<(), DomainError> {
    if user.is_empty() {
        return Err(invalid("user_id", "must not be empty"));
    }
    if user.len() > USER_ID_MAX_BYTES {
        return Err(invalid("user_id", format!("must be at most {USER_ID_MAX_BYTES} bytes")));
    }
    if user.chars().any(|c| c.is_control() || c.is_whitespace() || c == '/') {
        return Err(invalid("user_id", "must not contain whitespace, control characters or '/'"));
    }
    Ok(())
}

/// A request id chosen by the client: at most 128 bytes of visible ASCII.
pub fn request_id(id: &str) -> Result<(), DomainError> {
    if id.len() > REQUEST_ID_MAX_BYTES {
        return Err(invalid("request_id", format!("must be at most {REQUEST_ID_MAX_BYTES} bytes")));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("request_id", "must be visible ASCII characters"));
    }
    Ok(())
}

/// A page size: 0 means the default; more than the maximum is refused rather than clamped so a
/// caller does not silently get less than it asked for.
pub fn page_size(size: u32) -> Result<usize, DomainError> {
    match size as usize {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n > MAX_PAGE_SIZE => Err(invalid("page_size", format!("must be at most {MAX_PAGE_SIZE}"))),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_name(input: &str, expected: Result<&str, ()>) {
        assert_eq!(org_name(input).map_err(|_| ()), expected.map(str::to_string), "input {input:?}");
    }

    #[test]
    fn org_names() {
        check_name("Acme", Ok("Acme"));
        check_name("  Acme Ltd  ", Ok("Acme Ltd"));
        check_name("", Err(()));
        check_name("   ", Err(()));
        check_name("a\u{0}b", Err(()));
        check_name(&"é".repeat(128), Ok(&"é".repeat(128)));
        check_name(&"é".repeat(129), Err(()));
    }

    #[test]
    fn user_ids() {
        assert!(user_id("alice@example.com").is_ok());
        assert!(user_id("").is_err());
        assert!(user_id("a b").is_err());
        assert!(user_id("a/b").is_err());
        assert!(user_id(&"x".repeat(257)).is_err());
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(7).unwrap(), 7);
        assert!(page_size(1001).is_err());
    }
}
