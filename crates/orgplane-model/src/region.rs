//! The regions an org can live in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A region: one Raft group of nodes that alone keeps the data of the orgs that live there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Us,
    Eu,
    Apac,
}

impl Region {
    /// Every region, in a stable order (the order user-wide lists are merged in).
    pub const ALL: [Region; 3] = [Region::Us, Region::Eu, Region::Apac];

    /// The lowercase name used in ids, flags, config files and data directories.
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Us => "us",
            Region::Eu => "eu",
            Region::Apac => "apac",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not the name of a region.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown region {given:?}: expected one of us, eu, apac")]
pub struct UnknownRegion {
    pub given: String,
}

impl FromStr for Region {
    type Err = UnknownRegion;

    /// Accepts the names case-insensitively (`EU` and `eu` are the same region).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "us" => Ok(Region::Us),
            "eu" => Ok(Region::Eu),
            "apac" => Ok(Region::Apac),
            _ => Err(UnknownRegion { given: s.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<Region>) {
        assert_eq!(input.parse::<Region>().ok(), expected, "input {input:?}");
    }

    #[test]
    fn parses_names_case_insensitively() {
        check("us", Some(Region::Us));
        check("EU", Some(Region::Eu));
        check(" apac ", Some(Region::Apac));
        check("", None);
        check("asia", None);
        check("u s", None);
    }

    #[test]
    fn names_round_trip() {
        for r in Region::ALL {
            assert_eq!(r.as_str().parse::<Region>().unwrap(), r);
        }
    }
}
