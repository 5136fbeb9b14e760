//! Duplicate scoring between two resident records.
//!
//! A shared CCCD number is decisive. Without one, the score combines name
//! similarity (on normalized names, so diacritics, Unicode form, case, spacing
//! and đ/d do not matter) with the date of birth; a different sex, a different
//! date of birth or two different CCCD numbers cap it.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use super::{Sex, name_tokens};

/// The identifying fields of one resident, as far as they are known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonKey {
    /// Full name as typed.
    pub full_name: String,
    /// Date of birth.
    pub dob: Option<NaiveDate>,
    /// Sex.
    pub sex: Option<Sex>,
    /// CCCD number (12 digits).
    pub cccd: Option<String>,
}

/// Why two records were scored as they were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchReason {
    /// Both carry the same CCCD number.
    SameCccd,
    /// Both carry CCCD numbers, and they differ.
    DifferentCccd,
    /// The normalized names are identical.
    SameName,
    /// The same name tokens in another order.
    ReorderedName,
    /// Same family and given name; one omits a middle name.
    MiddleNameOmitted,
    /// The names are close but not equal.
    SimilarName,
    /// The given names (the last word) differ.
    DifferentGivenName,
    /// Same date of birth.
    SameDob,
    /// Day and month swapped.
    DobDayMonthSwapped,
    /// The dates of birth differ.
    DifferentDob,
    /// The sexes differ.
    DifferentSex,
}

/// The outcome of comparing two records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateScore {
    /// From 0 (different people) to 1 (the same person).
    pub score: f64,
    /// What led to the score.
    pub reasons: Vec<MatchReason>,
}

impl DuplicateScore {
    /// At or above this, the pair is reported as a likely duplicate.
    pub const LIKELY: f64 = 0.85;
    /// At or above this, the pair is worth a human look.
    pub const REVIEW: f64 = 0.7;

    /// Whether the pair is a likely duplicate.
    pub fn is_likely(&self) -> bool {
        self.score >= Self::LIKELY
    }
}

fn name_score(a: &[String], b: &[String], reasons: &mut Vec<MatchReason>) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    if a == b {
        reasons.push(MatchReason::SameName);
        return 1.0;
    }
    let (mut sa, mut sb) = (a.to_vec(), b.to_vec());
    sa.sort();
    sb.sort();
    if sa == sb {
        reasons.push(MatchReason::ReorderedName);
        return 0.95;
    }
    let same_ends = a.first() == b.first() && a.last() == b.last();
    let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
    if same_ends && short.iter().all(|t| long.contains(t)) {
        reasons.push(MatchReason::MiddleNameOmitted);
        return 0.9;
    }
    let jw = strsim::jaro_winkler(&a.join(" "), &b.join(" "));
    if a.last() != b.last()
        && strsim::levenshtein(a.last().unwrap_or(&String::new()), b.last().unwrap_or(&String::new())) > 0
    {
        reasons.push(MatchReason::DifferentGivenName);
        return jw.min(0.6);
    }
    reasons.push(MatchReason::SimilarName);
    jw
}

fn dob_score(a: Option<NaiveDate>, b: Option<NaiveDate>, reasons: &mut Vec<MatchReason>) -> Option<f64> {
    let (a, b) = (a?, b?);
    if a == b {
        reasons.push(MatchReason::SameDob);
        Some(1.0)
    } else if a.year() == b.year() && a.day() == b.month() && a.month() == b.day() {
        reasons.push(MatchReason::DobDayMonthSwapped);
        Some(0.85)
    } else {
        reasons.push(MatchReason::DifferentDob);
        Some(0.0)
    }
}

/// Scores how likely two records describe the same person.
pub fn score_pair(a: &PersonKey, b: &PersonKey) -> DuplicateScore {
    let mut reasons = Vec::new();
    let cccd_a = a.cccd.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let cccd_b = b.cccd.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if let (Some(x), Some(y)) = (cccd_a, cccd_b)
        && x == y
    {
        return DuplicateScore { score: 1.0, reasons: vec![MatchReason::SameCccd] };
    }
    let name = name_score(&name_tokens(&a.full_name), &name_tokens(&b.full_name), &mut reasons);
    let dob = dob_score(a.dob, b.dob, &mut reasons);
    let mut score = 0.6 * name + 0.4 * dob.unwrap_or(0.5);
    if dob == Some(0.0) {
        score = score.min(0.5);
    }
    if let (Some(x), Some(y)) = (a.sex, b.sex)
        && x != y
    {
        reasons.push(MatchReason::DifferentSex);
        score = score.min(0.5);
    }
    if cccd_a.is_some() && cccd_b.is_some() {
        reasons.push(MatchReason::DifferentCccd);
        score = score.min(0.3);
    }
    DuplicateScore { score, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicode_normalization::UnicodeNormalization;

    fn p(name: &str, dob: &str, sex: Option<Sex>, cccd: Option<&str>) -> PersonKey {
        PersonKey {
            full_name: name.to_string(),
            dob: NaiveDate::parse_from_str(dob, "%Y-%m-%d").ok(),
            sex,
            cccd: cccd.map(str::to_string),
        }
    }

    const F: Option<Sex> = Some(Sex::Female);
    const M: Option<Sex> = Some(Sex::Male);

    #[test]
    fn tricky_pairs() {
        let nfd: String = "Nguyễn Thị Hồng Nhung".nfd().collect();
        // (a, b, expected likely duplicate, why)
        let table: Vec<(PersonKey, PersonKey, bool, &str)> = vec![
            (p("Nguyễn Thị Hồng Nhung", "1990-03-15", F, None), p(&nfd, "1990-03-15", F, None), true, "NFC vs NFD"),
            (
                p("Nguyễn Thị Hồng Nhung", "1990-03-15", F, None),
                p("Nguyen Thi Hong Nhung", "1990-03-15", F, None),
                true,
                "no diacritics",
            ),
            (
                p("Nguyễn Thị Hồng Nhung", "1990-03-15", F, None),
                p("Nguyễn Thị Hông Nhưng", "1990-03-15", F, None),
                true,
                "wrong diacritics",
            ),
            (p("Đặng Văn Đạt", "1985-01-02", M, None), p("Dang Van Dat", "1985-01-02", M, None), true, "đ/d"),
            (
                p("Đặng Văn Đạt", "1985-01-02", M, None),
                p("  ĐẶNG   văn  đạt ", "1985-01-02", M, None),
                true,
                "case and spacing",
            ),
            (
                p("Nguyễn Thị Hồng Nhung", "1990-03-15", F, None),
                p("Nhung Nguyễn Thị Hồng", "1990-03-15", F, None),
                true,
                "reordered",
            ),
            (
                p("Nguyễn Thị Hồng Nhung", "1990-03-15", F, None),
                p("Nguyễn Hồng Nhung", "1990-03-15", F, None),
                true,
                "middle name omitted",
            ),
            (
                p("Nguyễn Thị Hồng Nhung", "1990-03-05", F, None),
                p("Nguyễn Thị Hồng Nhung", "1990-05-03", F, None),
                true,
                "day/month swapped",
            ),
            (
                p("Trần Văn Hùng", "1970-06-01", M, Some("001070000001")),
                p("Tran Van Hung", "1970-06-01", M, Some("001070000001")),
                true,
                "same CCCD",
            ),
            (
                p("Trần Văn Hùng", "1970-06-01", M, Some("001070000001")),
                p("Trần Văn Hưng", "1971-06-01", M, Some("001070000001")),
                true,
                "same CCCD, typo and wrong dob",
            ),
            (
                p("Nguyễn Văn An", "1960-02-02", M, None),
                p("Nguyễn Văn An", "1990-02-02", M, None),
                false,
                "father and son",
            ),
            (
                p("Nguyễn Văn An", "1990-02-02", M, Some("001090000001")),
                p("Nguyễn Văn An", "1990-02-02", M, Some("001090000002")),
                false,
                "same name and dob, different CCCD",
            ),
            (
                p("Nguyễn Văn An", "1990-02-02", M, None),
                p("Nguyễn Thị Anh", "1990-02-02", F, None),
                false,
                "An and Anh, different sex",
            ),
            (p("Trần Minh Hải", "2001-09-09", M, None), p("Trần Minh Hùng", "2001-09-09", M, None), false, "twins"),
            (
                p("Lê Thị Mai", "1980-01-01", F, None),
                p("Phạm Văn Long", "1980-01-01", M, None),
                false,
                "strangers born the same day",
            ),
            (
                p("Lê Thị Mai", "1980-01-01", F, None),
                p("Lê Thị Mai", "1980-01-01", M, None),
                false,
                "same name, different sex",
            ),
        ];
        for (a, b, likely, why) in table {
            let s = score_pair(&a, &b);
            assert_eq!(s.is_likely(), likely, "{why}: {s:?}");
            let back = score_pair(&b, &a);
            assert!((back.score - s.score).abs() < 1e-9, "{why}: not symmetric");
        }
    }

    #[test]
    fn reasons_explain_the_score() {
        let s = score_pair(
            &p("Nguyễn Thị Hồng Nhung", "1990-03-15", F, None),
            &p("Nguyen Thi Hong Nhung", "1990-03-15", F, None),
        );
        assert_eq!(s.reasons, vec![MatchReason::SameName, MatchReason::SameDob]);
        let s = score_pair(&p("A B", "1990-03-15", F, Some("1")), &p("A B", "1990-03-15", F, Some("2")));
        assert!(s.reasons.contains(&MatchReason::DifferentCccd));
        assert!(s.score <= 0.3);
    }

    #[test]
    fn empty_names_score_low() {
        let s = score_pair(&p("", "1990-03-15", F, None), &p("", "1990-03-15", F, None));
        assert!(!s.is_likely());
    }
}
