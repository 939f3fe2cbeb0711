//! Org ids. An id is `<region>-<26 lowercase Crockford base32 characters>`, for example
//! `eu-01jdq3n8x2k7m4p9r5t6v8w0yz`. The region is where the org was created, so any router can
//! route it without a lookup; the suffix is a 128-bit value (a UUIDv7 in practice, so ids sort by
//! creation time).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::region::Region;

/// Length of the suffix of an org id: 128 bits in base32 is 26 characters.
pub const ORG_ID_SUFFIX_LEN: usize = 26;
/// The longest text that can be an org id (`apac-` plus the suffix); longer input is refused
/// before any parsing.
pub const ORG_ID_MAX_LEN: usize = 5 + ORG_ID_SUFFIX_LEN;

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// The id of an org.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrgId {
    region: Region,
    /// The suffix, already validated: 26 characters of the Crockford alphabet.
    suffix: String,
}

/// Why a text is not an org id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgIdError {
    #[error("org id is empty")]
    Empty,
    #[error("org id is longer than {ORG_ID_MAX_LEN} characters")]
    TooLong,
    #[error("org id {given:?} is malformed: expected <region>-<{ORG_ID_SUFFIX_LEN} base32 characters>")]
    Malformed { given: String },
    #[error("org id {given:?} names an unknown region")]
    UnknownRegion { given: String },
}

impl OrgId {
    /// Builds the id of a new org in `region` from 128 bits that the caller chose (a UUIDv7).
    pub fn from_u128(region: Region, value: u128) -> OrgId {
        OrgId { region, suffix: base32_128(value) }
    }

    /// The region the org was created in, which the id names.
    pub fn region(&self) -> Region {
        self.region
    }

    pub fn as_string(&self) -> String {
        self.to_string()
    }
}

/// 128 bits as 26 lowercase Crockford base32 characters (the suffix of org and app ids).
pub(crate) fn base32_128(value: u128) -> String {
    let mut suffix = String::with_capacity(ORG_ID_SUFFIX_LEN);
    // 26 characters of 5 bits carry 130 bits; the first character holds the top 3 bits.
    for i in (0..ORG_ID_SUFFIX_LEN).rev() {
        let digit = ((value >> (i * 5)) & 0x1f) as usize;
        suffix.push(CROCKFORD[digit] as char);
    }
    suffix
}

/// Whether `suffix` is what [`base32_128`] makes.
pub(crate) fn is_base32_128(suffix: &str) -> bool {
    suffix.len() == ORG_ID_SUFFIX_LEN
        && suffix.bytes().all(|b| CROCKFORD.contains(&b))
        // The first character carries only the top 3 of 130 bits.
        && matches!(suffix.as_bytes()[0], b'0'..=b'7')
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.region, self.suffix)
    }
}

impl FromStr for OrgId {
    type Err = OrgIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(OrgIdError::Empty);
        }
        if s.len() > ORG_ID_MAX_LEN {
            return Err(OrgIdError::TooLong);
        }
        let malformed = || OrgIdError::Malformed { given: s.to_string() };
        let (region, suffix) = s.split_once('-').ok_or_else(malformed)?;
        let region: Region = match region {
            "us" | "eu" | "apac" => region.parse().map_err(|_| malformed())?,
            _ if region.bytes().all(|b| b.is_ascii_lowercase()) && !region.is_empty() => {
                return Err(OrgIdError::UnknownRegion { given: s.to_string() })
            }
            _ => return Err(malformed()),
        };
        if !is_base32_128(suffix) {
            return Err(malformed());
        }
        Ok(OrgId { region, suffix: suffix.to_string() })
    }
}

impl TryFrom<String> for OrgId {
    type Error = OrgIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<OrgId> for String {
    fn from(id: OrgId) -> String {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<Region, &str>) {
        let got = input.parse::<OrgId>().map(|id| id.region()).map_err(|e| match e {
            OrgIdError::Empty => "empty",
            OrgIdError::TooLong => "too long",
            OrgIdError::Malformed { .. } => "malformed",
            OrgIdError::UnknownRegion { .. } => "unknown region",
        });
        assert_eq!(got, expected, "input {input:?}");
    }

    #[test]
    fn parses_and_refuses() {
        let good = OrgId::from_u128(Region::Eu, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef).to_string();
        check(&good, Ok(Region::Eu));
        check("", Err("empty"));
        check("eu", Err("malformed"));
        check("eu-", Err("malformed"));
        check("eu-abc", Err("malformed"));
        check("mars-0000000000000000000000000a", Err("unknown region"));
        check("EU-00000000000000000000000000", Err("malformed"));
        check("eu-0000000000000000000000000u", Err("malformed")); // 'u' is not Crockford
        check("eu-80000000000000000000000000", Err("malformed")); // overflows 128 bits
        check("eu-0000000000000000000000000\u{0}", Err("malformed"));
        check(&"x".repeat(1000), Err("too long"));
        check("us-zzzzzzzzzzzzzzzzzzzzzzzzzz", Err("malformed"));
        check("us-7zzzzzzzzzzzzzzzzzzzzzzzzz", Ok(Region::Us));
    }

    #[test]
    fn round_trips_and_keeps_order() {
        let a = OrgId::from_u128(Region::Apac, 1);
        let b = OrgId::from_u128(Region::Apac, 2);
        assert_eq!(a.to_string().parse::<OrgId>().unwrap(), a);
        assert!(a.to_string() < b.to_string());
        assert_eq!(OrgId::from_u128(Region::Us, u128::MAX).to_string().parse::<OrgId>().unwrap().region(), Region::Us);
    }
}
