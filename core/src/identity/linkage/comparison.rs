//! The comparisons of the linkage model: each field of two records is put in
//! one agreement level, from exact agreement down to disagreement.
//!
//! Names are compared on their folded tokens ([`name_tokens`]): the first token
//! is the family name, the last the given name, those between the middle
//! name(s). The full name is compared first; only when it falls in no
//! structural level (exact, reordered, middle name missing) are the three
//! parts compared one by one, so that one agreement is never counted twice.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::identity::{Sex, name_tokens};

use super::PersonKey;

/// One compared field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// The whole folded name: exact, reordered, or a middle name missing.
    FullName,
    /// The family name (first token), when the full name is in no structural level.
    FamilyName,
    /// The middle name(s), likewise.
    MiddleName,
    /// The given name (last token), likewise.
    GivenName,
    /// Date of birth.
    DateOfBirth,
    /// Sex.
    Sex,
    /// CCCD number.
    Cccd,
    /// Phone number.
    Phone,
    /// Whether both records sit in one household.
    Household,
    /// How close the two records' areas are.
    Area,
}

impl Comparison {
    /// The comparison's name, as it is serialised (`date_of_birth`).
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::FullName => "full_name",
            Comparison::FamilyName => "family_name",
            Comparison::MiddleName => "middle_name",
            Comparison::GivenName => "given_name",
            Comparison::DateOfBirth => "date_of_birth",
            Comparison::Sex => "sex",
            Comparison::Cccd => "cccd",
            Comparison::Phone => "phone",
            Comparison::Household => "household",
            Comparison::Area => "area",
        }
    }

    /// Every comparison, in the order the model adds them.
    pub const ALL: [Comparison; 10] = [
        Comparison::FullName,
        Comparison::FamilyName,
        Comparison::MiddleName,
        Comparison::GivenName,
        Comparison::DateOfBirth,
        Comparison::Sex,
        Comparison::Cccd,
        Comparison::Phone,
        Comparison::Household,
        Comparison::Area,
    ];
}

/// An agreement level. Each comparison uses the levels that make sense for it;
/// [`Level::Missing`] and [`Level::Subsumed`] carry no evidence (weight 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Equal (names after folding; dates; numbers; the same household or commune).
    Exact,
    /// Name: the same tokens in another order (the given name first).
    Reordered,
    /// Name: same family and given name, one record lacks (part of) the middle name.
    MiddleMissing,
    /// Name: Jaro–Winkler similarity at least 0.92 (a typo).
    JaroWinklerHigh,
    /// Name: Jaro–Winkler similarity at least 0.80.
    JaroWinklerMid,
    /// Date of birth: day and month swapped.
    DayMonthSwapped,
    /// Date of birth: one record holds only the year (1 January).
    YearOnly,
    /// Date of birth: same year, and the month or the day differs.
    OneComponentOff,
    /// Date of birth: same day and month, the year one off.
    YearOffByOne,
    /// CCCD: the same digits with two adjacent ones swapped.
    Transposed,
    /// Area: another commune of the same district.
    SameDistrict,
    /// Area: another district of the same province.
    SameProvince,
    /// No agreement.
    Different,
    /// One record (or both) lacks the field.
    Missing,
    /// Already counted by the full-name comparison.
    Subsumed,
}

impl Level {
    /// The level's name, as it is serialised (`year_only`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Exact => "exact",
            Level::Reordered => "reordered",
            Level::MiddleMissing => "middle_missing",
            Level::JaroWinklerHigh => "jaro_winkler_high",
            Level::JaroWinklerMid => "jaro_winkler_mid",
            Level::DayMonthSwapped => "day_month_swapped",
            Level::YearOnly => "year_only",
            Level::OneComponentOff => "one_component_off",
            Level::YearOffByOne => "year_off_by_one",
            Level::Transposed => "transposed",
            Level::SameDistrict => "same_district",
            Level::SameProvince => "same_province",
            Level::Different => "different",
            Level::Missing => "missing",
            Level::Subsumed => "subsumed",
        }
    }

    /// Whether the level carries evidence (has a weight).
    pub fn is_evidence(self) -> bool {
        !matches!(self, Level::Missing | Level::Subsumed)
    }
}

/// A record as the model compares it: a person, the household that holds it, and its area.
#[derive(Debug, Clone, Copy)]
pub struct PersonRecord<'a> {
    /// The identifying fields.
    pub key: &'a PersonKey,
    /// The household id.
    pub household_id: &'a str,
    /// The household's area code (`01.001.00001`).
    pub area: &'a str,
}

/// A folded name split into family, middle and given name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameParts {
    /// All folded tokens, in order.
    pub tokens: Vec<String>,
}

impl NameParts {
    /// Splits `full_name` after folding it.
    pub fn new(full_name: &str) -> NameParts {
        NameParts { tokens: name_tokens(full_name) }
    }

    /// The family name: the first token of a name of two or more.
    pub fn family(&self) -> Option<&str> {
        (self.tokens.len() >= 2).then(|| self.tokens[0].as_str())
    }

    /// The given name: the last token.
    pub fn given(&self) -> Option<&str> {
        self.tokens.last().map(String::as_str)
    }

    /// The middle name(s), joined by spaces; empty when there is none.
    pub fn middle(&self) -> String {
        if self.tokens.len() <= 2 { String::new() } else { self.tokens[1..self.tokens.len() - 1].join(" ") }
    }
}

/// The level of each comparison for one pair of records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComparisonVector {
    /// `(comparison, level)` in [`Comparison::ALL`] order.
    pub levels: Vec<(Comparison, Level)>,
}

impl ComparisonVector {
    /// The level of one comparison.
    pub fn level(&self, c: Comparison) -> Level {
        self.levels.iter().find(|(x, _)| *x == c).map(|(_, l)| *l).unwrap_or(Level::Missing)
    }
}

fn jw_level(a: &str, b: &str) -> Level {
    if a == b {
        return Level::Exact;
    }
    let jw = strsim::jaro_winkler(a, b);
    if jw >= 0.92 {
        Level::JaroWinklerHigh
    } else if jw >= 0.80 {
        Level::JaroWinklerMid
    } else {
        Level::Different
    }
}

fn full_name_level(a: &NameParts, b: &NameParts) -> Level {
    if a.tokens.is_empty() || b.tokens.is_empty() {
        return Level::Missing;
    }
    if a.tokens == b.tokens {
        return Level::Exact;
    }
    let (mut sa, mut sb) = (a.tokens.clone(), b.tokens.clone());
    sa.sort();
    sb.sort();
    if sa.len() >= 2 && sa == sb {
        return Level::Reordered;
    }
    if a.family().is_some() && a.family() == b.family() && a.given() == b.given() {
        let (short, long) = if a.tokens.len() < b.tokens.len() { (a, b) } else { (b, a) };
        let inner = &long.tokens[1..long.tokens.len() - 1];
        if short.tokens.len() < long.tokens.len()
            && short.tokens[1..short.tokens.len() - 1].iter().all(|t| inner.contains(t))
        {
            return Level::MiddleMissing;
        }
    }
    Level::Different
}

fn family_level(a: &NameParts, b: &NameParts) -> Level {
    match (a.family(), b.family()) {
        (Some(x), Some(y)) => jw_level(x, y),
        _ => Level::Missing,
    }
}

fn middle_level(a: &NameParts, b: &NameParts) -> Level {
    let (x, y) = (a.middle(), b.middle());
    if x.is_empty() || y.is_empty() {
        return Level::Missing;
    }
    match jw_level(&x, &y) {
        Level::JaroWinklerMid => Level::Different,
        l => l,
    }
}

fn given_level(a: &NameParts, b: &NameParts) -> Level {
    match (a.given(), b.given()) {
        (Some(x), Some(y)) => jw_level(x, y),
        _ => Level::Missing,
    }
}

/// The level of two dates of birth.
pub fn dob_level(a: Option<NaiveDate>, b: Option<NaiveDate>) -> Level {
    let (Some(a), Some(b)) = (a, b) else { return Level::Missing };
    let jan1 = |d: NaiveDate| d.month() == 1 && d.day() == 1;
    if a == b {
        Level::Exact
    } else if a.year() == b.year() && a.day() == b.month() && a.month() == b.day() {
        Level::DayMonthSwapped
    } else if a.year() == b.year() && (jan1(a) || jan1(b)) {
        Level::YearOnly
    } else if a.year() == b.year() && (a.month() == b.month() || a.day() == b.day()) {
        Level::OneComponentOff
    } else if a.month() == b.month() && a.day() == b.day() && (a.year() - b.year()).abs() == 1 {
        Level::YearOffByOne
    } else {
        Level::Different
    }
}

/// The digits of a CCCD number, white space and punctuation ignored; `None` when it holds none.
pub fn cccd_digits(cccd: Option<&str>) -> Option<String> {
    let digits: String = cccd?.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

/// The digits of a CCCD number in ascending order: equal for two numbers one transposition apart.
pub fn sorted_digits(digits: &str) -> String {
    let mut v: Vec<char> = digits.chars().collect();
    v.sort_unstable();
    v.into_iter().collect()
}

/// Whether `a` turns into `b` by swapping two adjacent characters.
pub fn is_transposition(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() || a == b {
        return false;
    }
    let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    diff.len() == 2 && diff[1] == diff[0] + 1 && a[diff[0]] == b[diff[1]] && a[diff[1]] == b[diff[0]]
}

/// The level of two CCCD numbers.
pub fn cccd_level(a: Option<&str>, b: Option<&str>) -> Level {
    match (cccd_digits(a), cccd_digits(b)) {
        (Some(x), Some(y)) if x == y => Level::Exact,
        (Some(x), Some(y)) if is_transposition(&x, &y) => Level::Transposed,
        (Some(_), Some(_)) => Level::Different,
        _ => Level::Missing,
    }
}

/// A phone number's digits, a leading `84` country code written as `0`; `None` when too short to be one.
pub fn phone_digits(phone: Option<&str>) -> Option<String> {
    let digits: String = phone?.chars().filter(char::is_ascii_digit).collect();
    let digits = match digits.strip_prefix("84") {
        Some(rest) if digits.len() == 11 => format!("0{rest}"),
        _ => digits,
    };
    (digits.len() >= 8).then_some(digits)
}

/// The level of two phone numbers.
pub fn phone_level(a: Option<&str>, b: Option<&str>) -> Level {
    match (phone_digits(a), phone_digits(b)) {
        (Some(x), Some(y)) if x == y => Level::Exact,
        (Some(_), Some(_)) => Level::Different,
        _ => Level::Missing,
    }
}

fn sex_level(a: Option<Sex>, b: Option<Sex>) -> Level {
    match (a, b) {
        (Some(x), Some(y)) if x == y => Level::Exact,
        (Some(_), Some(_)) => Level::Different,
        _ => Level::Missing,
    }
}

fn area_level(a: &str, b: &str) -> Level {
    if a.is_empty() || b.is_empty() {
        return Level::Missing;
    }
    if a == b {
        return Level::Exact;
    }
    let (x, y): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    if x.len() >= 2 && y.len() >= 2 && x[..2] == y[..2] {
        Level::SameDistrict
    } else if x[0] == y[0] {
        Level::SameProvince
    } else {
        Level::Different
    }
}

/// Puts every field of a pair in its level.
pub fn compare(a: &PersonRecord<'_>, b: &PersonRecord<'_>) -> ComparisonVector {
    compare_parts(a, &NameParts::new(&a.key.full_name), b, &NameParts::new(&b.key.full_name))
}

/// [`compare`] with names already split (a caller comparing one record with many splits it once).
pub fn compare_parts(a: &PersonRecord<'_>, na: &NameParts, b: &PersonRecord<'_>, nb: &NameParts) -> ComparisonVector {
    let full = full_name_level(na, nb);
    let parts = |f: fn(&NameParts, &NameParts) -> Level| {
        if matches!(full, Level::Different) { f(na, nb) } else { Level::Subsumed }
    };
    let household = if a.household_id == b.household_id { Level::Exact } else { Level::Different };
    ComparisonVector {
        levels: vec![
            (Comparison::FullName, full),
            (Comparison::FamilyName, parts(family_level)),
            (Comparison::MiddleName, parts(middle_level)),
            (Comparison::GivenName, parts(given_level)),
            (Comparison::DateOfBirth, dob_level(a.key.dob, b.key.dob)),
            (Comparison::Sex, sex_level(a.key.sex, b.key.sex)),
            (Comparison::Cccd, cccd_level(a.key.cccd.as_deref(), b.key.cccd.as_deref())),
            (Comparison::Phone, phone_level(a.key.phone.as_deref(), b.key.phone.as_deref())),
            (Comparison::Household, household),
            (Comparison::Area, area_level(a.area, b.area)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
    }

    #[test]
    fn date_levels() {
        assert_eq!(dob_level(d("1990-03-05"), d("1990-03-05")), Level::Exact);
        assert_eq!(dob_level(d("1990-03-05"), d("1990-05-03")), Level::DayMonthSwapped);
        assert_eq!(dob_level(d("1990-03-15"), d("1990-01-01")), Level::YearOnly);
        assert_eq!(dob_level(d("1990-03-15"), d("1990-03-07")), Level::OneComponentOff);
        assert_eq!(dob_level(d("1990-03-15"), d("1990-04-15")), Level::OneComponentOff);
        assert_eq!(dob_level(d("1990-03-15"), d("1991-03-15")), Level::YearOffByOne);
        assert_eq!(dob_level(d("1990-03-15"), d("2016-03-15")), Level::Different);
        assert_eq!(dob_level(None, d("2016-03-15")), Level::Missing);
    }

    #[test]
    fn cccd_levels() {
        assert_eq!(cccd_level(Some("001090000123"), Some("001 090 000 123")), Level::Exact);
        assert_eq!(cccd_level(Some("001090000123"), Some("001090000213")), Level::Transposed);
        assert_eq!(cccd_level(Some("001090000123"), Some("001090000124")), Level::Different);
        assert_eq!(cccd_level(Some("001090000123"), Some("001090000321")), Level::Different);
        assert_eq!(cccd_level(None, Some("001090000123")), Level::Missing);
    }

    #[test]
    fn phone_levels() {
        assert_eq!(phone_level(Some("0912 345 678"), Some("+84912345678")), Level::Exact);
        assert_eq!(phone_level(Some("0912345678"), Some("0912345679")), Level::Different);
        assert_eq!(phone_level(Some("0912345678"), Some("12")), Level::Missing);
    }

    #[test]
    fn name_levels() {
        let n = NameParts::new;
        assert_eq!(full_name_level(&n("Nguyễn Thị Hồng Nhung"), &n("NGUYEN thi hong nhung")), Level::Exact);
        assert_eq!(full_name_level(&n("Nguyễn Thị Hồng Nhung"), &n("Nhung Nguyễn Thị Hồng")), Level::Reordered);
        assert_eq!(full_name_level(&n("Nguyễn Thị Hồng Nhung"), &n("Nguyễn Hồng Nhung")), Level::MiddleMissing);
        assert_eq!(full_name_level(&n("Nguyễn Văn An"), &n("Nguyễn An")), Level::MiddleMissing);
        assert_eq!(full_name_level(&n("Nguyễn Văn An"), &n("Nguyễn Văn Anh")), Level::Different);
        assert_eq!(given_level(&n("Nguyễn Văn Hùng"), &n("Nguyễn Văn Hxng")), Level::JaroWinklerMid);
        assert_eq!(given_level(&n("Nguyễn Văn Thắng"), &n("Nguyễn Văn Thang")), Level::Exact);
        assert_eq!(n("Lê Thị Mai Anh").middle(), "thi mai");
        assert_eq!(n("An").family(), None);
    }

    #[test]
    fn area_levels() {
        assert_eq!(area_level("01.001.00001", "01.001.00001"), Level::Exact);
        assert_eq!(area_level("01.001.00001", "01.001.00002"), Level::SameDistrict);
        assert_eq!(area_level("01.001.00001", "01.002.00002"), Level::SameProvince);
        assert_eq!(area_level("01.001.00001", "79.002.00002"), Level::Different);
    }
}
