//! Input rules. Every check returns [`DomainError::InvalidArgument`] naming the field, so the
//! caller learns exactly what to fix.

use crate::error::DomainError;
use crate::resource::ConfigEntry;
use crate::role::Role;

/// The longest org name, in characters.
pub const ORG_NAME_MAX_CHARS: usize = 128;
/// The longest user id, in bytes.
pub const USER_ID_MAX_BYTES: usize = 256;
/// The longest request id, in bytes.
pub const REQUEST_ID_MAX_BYTES: usize = 128;
/// The longest email address, in bytes (RFC 5321's path limit).
pub const EMAIL_MAX_BYTES: usize = 254;
/// The longest integration name or kind, in characters.
pub const RESOURCE_NAME_MAX_CHARS: usize = 64;
/// The longest configuration key, in bytes.
pub const CONFIG_KEY_MAX_BYTES: usize = 128;
/// The longest configuration value, in bytes (room for a PEM key).
pub const CONFIG_VALUE_MAX_BYTES: usize = 8192;
/// The most keys an integration may have.
pub const CONFIG_MAX_KEYS: usize = 64;
/// The longest phone number label, in characters.
pub const LABEL_MAX_CHARS: usize = 128;
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

/// A custom role name for creating or changing a role: a valid name (see `Role::from_str`)
/// that is not a built-in role's. Returns the normalized (lowercase) name.
pub fn custom_role_name(name: &str) -> Result<String, DomainError> {
    match name.parse::<Role>() {
        Ok(Role::Custom(name)) => Ok(name),
        Ok(builtin) => Err(invalid("name", format!("{builtin} is a built-in role; custom roles need another name"))),
        Err(e) => Err(invalid("name", e.to_string())),
    }
}

/// A role given for a member or an invitation; a custom name must be well formed (whether the
/// org defines it is the state's question).
pub fn role(role: &Role) -> Result<(), DomainError> {
    match role {
        Role::Custom(name) => custom_role_name(name).and_then(|normal| {
            if &normal == name {
                Ok(())
            } else {
                Err(invalid("role", "a custom role name must be lowercase and trimmed"))
            }
        }),
        _ => Ok(()),
    }
}

/// An email address, normalized to trimmed lowercase: at most 254 bytes, one `@` with a
/// non-empty local part before it and a domain with a dot after it, no whitespace, control
/// characters or `/` (it is a key component). Lowercasing the local part is not RFC 5321, but
/// no identity provider we accept issues addresses that differ only in case.
pub fn email(address: &str) -> Result<String, DomainError> {
    let normal = address.trim().to_lowercase();
    if normal.is_empty() {
        return Err(invalid("email", "must not be empty"));
    }
    if normal.len() > EMAIL_MAX_BYTES {
        return Err(invalid("email", format!("must be at most {EMAIL_MAX_BYTES} bytes")));
    }
    if normal.chars().any(|c| c.is_control() || c.is_whitespace() || c == '/') {
        return Err(invalid("email", "must not contain whitespace, control characters or '/'"));
    }
    let Some((local, domain)) = normal.split_once('@') else {
        return Err(invalid("email", "must contain '@'"));
    };
    if local.is_empty() || domain.contains('@') {
        return Err(invalid("email", "must be one local part, '@' and a domain"));
    }
    if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        return Err(invalid("email", "must have a domain with a dot, like example.com"));
    }
    Ok(normal)
}

/// A phone number in E.164 form: `+`, then 8 to 15 digits, the first not `0` (no country code
/// starts with 0). Nothing else: no spaces, dashes or brackets, so one number has one form.
pub fn phone_number(number: &str) -> Result<(), DomainError> {
    let Some(digits) = number.strip_prefix('+') else {
        return Err(invalid("number", "must be E.164: '+' then the digits, like +14155550100"));
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("number", "must be E.164: only digits after '+'"));
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(invalid("number", "must be E.164: 8 to 15 digits"));
    }
    if digits.starts_with('0') {
        return Err(invalid("number", "must be E.164: the country code cannot start with 0"));
    }
    Ok(())
}

/// An integration's name or kind: 1 to 64 characters of `a-z`, `0-9`, `-`, `_`, `.`, starting
/// with a letter or digit. Lowercase is required rather than folded, so the name a caller
/// gives is the name they find.
pub fn resource_name(field: &'static str, name: &str) -> Result<(), DomainError> {
    if name.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if name.len() > RESOURCE_NAME_MAX_CHARS {
        return Err(invalid(field, format!("must be at most {RESOURCE_NAME_MAX_CHARS} characters")));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(invalid(field, "must start with a-z or 0-9"));
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')) {
        return Err(invalid(field, "must be only a-z, 0-9, '-', '_' and '.'"));
    }
    Ok(())
}

/// A configuration key: 1 to 128 bytes of ASCII letters, digits, `-`, `_`, `.`.
pub fn config_key(key: &str) -> Result<(), DomainError> {
    if key.is_empty() || key.len() > CONFIG_KEY_MAX_BYTES {
        return Err(invalid("config", format!("keys must be 1 to {CONFIG_KEY_MAX_BYTES} bytes")));
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(invalid("config", format!("key {key:?} must be only letters, digits, '-', '_' and '.'")));
    }
    Ok(())
}

/// Configuration entries: valid keys, each named once, values of at most 8192 bytes without
/// NUL. Refusals name the key, never the value (it may be a secret).
pub fn config_entries(entries: &[ConfigEntry]) -> Result<(), DomainError> {
    if entries.len() > CONFIG_MAX_KEYS {
        return Err(invalid("config", format!("must have at most {CONFIG_MAX_KEYS} keys")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for entry in entries {
        config_key(&entry.key)?;
        if !seen.insert(entry.key.as_str()) {
            return Err(invalid("config", format!("key {:?} is given twice", entry.key)));
        }
        let text = entry.value.text();
        if text.len() > CONFIG_VALUE_MAX_BYTES {
            return Err(invalid(
                "config",
                format!("the value of {:?} is over {CONFIG_VALUE_MAX_BYTES} bytes", entry.key),
            ));
        }
        if text.contains('\0') {
            return Err(invalid("config", format!("the value of {:?} contains NUL", entry.key)));
        }
    }
    Ok(())
}

/// The largest app definition, in bytes of canonical JSON.
pub const APP_DEFINITION_MAX_BYTES: usize = 1024 * 1024;
/// The most binding slots an app may have.
pub const APP_MAX_SLOTS: usize = 64;
/// The most assets an app may have.
pub const APP_MAX_ASSETS: usize = 32;
/// The most bytes all of an app's assets may hold together: assets are small files (icons,
/// templates), replicated with every change of the app.
pub const APP_ASSETS_MAX_BYTES: usize = 256 * 1024;

/// An app name: the rules of an org name (1 to 128 characters after trimming, no control
/// characters). Returns the trimmed name.
pub fn app_name(name: &str) -> Result<String, DomainError> {
    org_name(name)
}

/// An app definition: a JSON object of at most 1 MiB once canonical. Returns its canonical
/// text (keys sorted, no insignificant whitespace), which is what gets stored and exported, so
/// the same document always gives the same bytes.
pub fn app_definition(text: &str) -> Result<String, DomainError> {
    if text.len() > APP_DEFINITION_MAX_BYTES * 4 {
        // Whitespace could shrink it, but not by this much; refused before parsing.
        return Err(invalid("definition", format!("must be at most {APP_DEFINITION_MAX_BYTES} bytes")));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid("definition", format!("is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(invalid("definition", "must be a JSON object"));
    }
    // serde_json's map is a BTreeMap (no `preserve_order`), so this prints keys sorted.
    let canonical = value.to_string();
    if canonical.len() > APP_DEFINITION_MAX_BYTES {
        return Err(invalid("definition", format!("must be at most {APP_DEFINITION_MAX_BYTES} bytes")));
    }
    Ok(canonical)
}

/// A slot name: 1 to 64 characters of `a-z`, `0-9`, `-`, `_` (the app archive's rule, so
/// every app can be exported).
pub fn slot_name(name: &str) -> Result<(), DomainError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err(invalid("slot", format!("{name:?} must be 1 to 64 characters of a-z, 0-9, '-' and '_'")));
    }
    Ok(())
}

/// An app's slots: at most 64, each with a valid [`slot_name`].
pub fn app_slots<'a>(names: impl ExactSizeIterator<Item = &'a String>) -> Result<(), DomainError> {
    if names.len() > APP_MAX_SLOTS {
        return Err(invalid("slots", format!("must be at most {APP_MAX_SLOTS}")));
    }
    for name in names {
        slot_name(name)?;
    }
    Ok(())
}

/// An asset name: a relative path of 1 to 255 bytes, segments of ASCII letters, digits, `-`,
/// `_` and `.`, none empty, `.` or `..`.
pub fn asset_name(name: &str) -> Result<(), DomainError> {
    let ok = (1..=255).contains(&name.len())
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if !ok {
        return Err(invalid(
            "assets",
            format!("name {name:?} must be a relative path of letters, digits, '-', '_', '.'"),
        ));
    }
    Ok(())
}

/// An app's assets: at most 32, each with a valid [`asset_name`], holding at most 256 KiB
/// together.
pub fn app_assets(assets: &std::collections::BTreeMap<String, Vec<u8>>) -> Result<(), DomainError> {
    if assets.len() > APP_MAX_ASSETS {
        return Err(invalid("assets", format!("must be at most {APP_MAX_ASSETS}")));
    }
    for name in assets.keys() {
        asset_name(name)?;
    }
    let total: usize = assets.values().map(Vec::len).sum();
    if total > APP_ASSETS_MAX_BYTES {
        return Err(invalid("assets", format!("must hold at most {APP_ASSETS_MAX_BYTES} bytes together")));
    }
    Ok(())
}

/// A label: at most 128 characters, no control characters; may be empty. Returns it trimmed.
pub fn label(text: &str) -> Result<String, DomainError> {
    let trimmed = text.trim();
    if trimmed.chars().count() > LABEL_MAX_CHARS {
        return Err(invalid("label", format!("must be at most {LABEL_MAX_CHARS} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(invalid("label", "must not contain control characters"));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_name(input: &str, expected: Result<&str, ()>) {
        assert_eq!(org_name(input).map_err(|_| ()), expected.map(str::to_string), "input {input:?}");
    }

    #[test]
    fn app_definitions_are_canonical_objects() {
        assert_eq!(app_definition(r#"{ "b": 1,  "a": [true, null] }"#).unwrap(), r#"{"a":[true,null],"b":1}"#);
        assert!(app_definition("[1]").is_err());
        assert!(app_definition("{").is_err());
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(APP_DEFINITION_MAX_BYTES));
        assert!(app_definition(&big).is_err());
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

    #[test]
    fn emails() {
        assert_eq!(email("  Alice@Example.COM ").unwrap(), "alice@example.com");
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a@b@c.com",
            "a b@c.com",
            "a/b@c.com",
            "alice@.com",
            "alice@example.",
            "alice@ex..com",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn phone_numbers() {
        for good in ["+14155550100", "+4930123456", "+12345678", "+123456789012345"] {
            assert!(phone_number(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "14155550100",
            "+",
            "+1234567",
            "+1234567890123456",
            "+0123456789",
            "+1 415 555 0100",
            "+1-415-555-0100",
            "++14155550100",
            "+１４１５５５５０１００",
        ] {
            assert!(phone_number(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resource_names_and_config() {
        assert!(resource_name("name", "twilio-main").is_ok());
        assert!(resource_name("name", "Twilio").is_err());
        assert!(resource_name("name", "-x").is_err());
        assert!(resource_name("name", "a/b").is_err());
        assert!(resource_name("name", "").is_err());
        let secret = "sk-very-secret-value";
        let too_long = ConfigEntry::secret("token", format!("{secret}{}", "x".repeat(CONFIG_VALUE_MAX_BYTES)));
        let err = config_entries(&[too_long]).unwrap_err().to_string();
        assert!(!err.contains(secret), "a refusal must not echo the value: {err}");
        assert!(config_entries(&[ConfigEntry::plain("a", "1"), ConfigEntry::secret("a", "2")]).is_err());
        assert!(config_entries(&[ConfigEntry::plain("bad key", "1")]).is_err());
        assert!(config_entries(&[ConfigEntry::plain("region", "eu"), ConfigEntry::secret("api_key", "k")]).is_ok());
    }

    #[test]
    fn custom_role_names() {
        assert_eq!(custom_role_name(" Billing ").unwrap(), "billing");
        assert!(custom_role_name("admin").is_err());
        assert!(custom_role_name("Viewer").is_err());
        assert!(custom_role_name("no spaces").is_err());
        assert!(role(&Role::Custom("Billing".into())).is_err());
        assert!(role(&Role::Custom("billing".into())).is_ok());
        assert!(role(&Role::Custom("admin".into())).is_err());
    }
}
