//! Administrative area codes: province, district, commune, … as dot-separated
//! segments of digits (`01`, `01.001`, `01.001.00001`).
//!
//! An area arrives as text from enrolment codes, operator forms, query strings and
//! pushed documents. It is parsed once into an [`Area`]: only digits and dots, no
//! empty segment, a bounded length. Nothing else — a `%`, an `_`, a letter, a
//! space — reaches a query or a prefix test, where such characters could widen what
//! an area covers.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest area code accepted, in bytes.
pub const MAX_AREA_LEN: usize = 64;
/// Most segments an area code may have.
pub const MAX_AREA_SEGMENTS: usize = 8;

/// Why a text is not an area code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AreaError {
    /// Nothing was given.
    #[error("an area code is empty")]
    Empty,
    /// Over [`MAX_AREA_LEN`] bytes or [`MAX_AREA_SEGMENTS`] segments.
    #[error("an area code is at most {MAX_AREA_LEN} characters in {MAX_AREA_SEGMENTS} parts")]
    TooLong,
    /// A character other than a digit or a dot, or an empty segment.
    #[error("an area code is digits in dot-separated parts, like 01.001.00001: {0:?} is not")]
    Malformed(String),
}

/// A validated area code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Area(String);

impl Area {
    /// Parses an area code (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Area, AreaError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AreaError::Empty);
        }
        if text.len() > MAX_AREA_LEN || text.split('.').count() > MAX_AREA_SEGMENTS {
            return Err(AreaError::TooLong);
        }
        let shown: String = text.chars().take(MAX_AREA_LEN).collect();
        if !text.split('.').all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit())) {
            return Err(AreaError::Malformed(shown));
        }
        Ok(Area(text.to_string()))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first segment: the province.
    pub fn province(&self) -> &str {
        self.0.split('.').next().unwrap_or(&self.0)
    }

    /// Whether `other` is this area or lies within it.
    pub fn contains(&self, other: &Area) -> bool {
        crate::sync::protocol::area_within(&other.0, &self.0)
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Area {
    type Err = AreaError;

    fn from_str(s: &str) -> Result<Area, AreaError> {
        Area::parse(s)
    }
}

impl AsRef<str> for Area {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Area> for String {
    fn from(a: Area) -> String {
        a.0
    }
}

impl Serialize for Area {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Area {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Area, D::Error> {
        let text = String::deserialize(d)?;
        Area::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_digits_in_dotted_parts_parse() {
        for ok in ["01", "01.001", "01.001.00001", " 79.760.26734 "] {
            assert_eq!(Area::parse(ok).unwrap().as_str(), ok.trim());
        }
        assert_eq!(Area::parse("01.001.00001").unwrap().province(), "01");
    }

    #[test]
    fn wildcards_letters_and_empty_parts_are_refused() {
        for bad in
            ["%", "_", "01.0%", "01._01", "01.001.*", "01..001", ".01", "01.", "01 001", "0l", "01.001/x", "１２"]
        {
            assert!(matches!(Area::parse(bad), Err(AreaError::Malformed(_))), "{bad:?}");
        }
        assert_eq!(Area::parse("  "), Err(AreaError::Empty));
        assert_eq!(Area::parse(&"1".repeat(65)), Err(AreaError::TooLong));
        assert_eq!(Area::parse("1.2.3.4.5.6.7.8.9"), Err(AreaError::TooLong));
    }

    #[test]
    fn an_area_contains_itself_and_its_sub_areas_only() {
        let district = Area::parse("01.001").unwrap();
        assert!(district.contains(&district));
        assert!(district.contains(&Area::parse("01.001.00001").unwrap()));
        assert!(!district.contains(&Area::parse("01.0012").unwrap()));
        assert!(!district.contains(&Area::parse("01").unwrap()));
    }

    #[test]
    fn areas_deserialize_only_when_valid() {
        assert_eq!(serde_json::from_str::<Area>("\"01.002\"").unwrap().as_str(), "01.002");
        assert!(serde_json::from_str::<Area>("\"01.%\"").is_err());
    }
}
