//! Blocking: the keys under which a record is indexed and looked up, so that a
//! store compares a new record only with records that share a key, never with
//! every record it holds.
//!
//! The rules, each a key built from folded values:
//! - `cccd-digits`: the CCCD number's digits sorted, which finds the same
//!   number and a number with two digits transposed (a key of the number itself
//!   would find a subset of these pairs, at the cost of one more index entry a
//!   resident: `blocking-1` had one);
//! - `phone`: the phone number;
//! - `family+dob`: family name and date of birth;
//! - `family+given+year`: family and given name and the year of birth (a
//!   middle name missing together with a date recorded as the year only, or
//!   mistyped);
//! - `names+year`: every name word, sorted, and the year of birth (a name in
//!   another order).
//!
//! Each rule is narrower than "date of birth" or "given name and year" alone,
//! whose blocks hold a thousandth of a country: a pair that shares neither an
//! identifier nor the family name cannot reach the review threshold (the
//! family name's disagreement and the full name's weigh −9.5 bits), and
//! neither can a pair born in different years with nothing else in common
//! (a year one off weighs +4.8 bits at most), so the narrowing leaves out only
//! pairs the model would not queue. Measured on the labelled communes, the
//! queue is the same pair for pair as with the broader rules, from a twelfth of
//! the comparisons (docs/adr/0003-record-linkage.md).
//!
//! A store keeps the keys as keyed tokens (blind indexes), never in clear.

use chrono::Datelike;

use super::{NameParts, PersonKey};
use crate::identity::linkage::comparison::{cccd_digits, phone_digits, sorted_digits};

/// Names this set of rules; a store whose keys were made by other rules rebuilds them.
pub const RULES_VERSION: &str = "blocking-2";

/// One blocking key: the rule that made it and its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockingKey {
    /// The rule, e.g. `dob`.
    pub rule: &'static str,
    /// The folded value, e.g. `1990-03-15`.
    pub value: String,
}

fn key(rule: &'static str, value: String) -> BlockingKey {
    BlockingKey { rule, value }
}

/// The keys a record is indexed under, and looked up by.
pub fn keys(person: &PersonKey) -> Vec<BlockingKey> {
    let mut out = Vec::new();
    if let Some(digits) = cccd_digits(person.cccd.as_deref()) {
        out.push(key("cccd-digits", sorted_digits(&digits)));
    }
    if let Some(phone) = phone_digits(person.phone.as_deref()) {
        out.push(key("phone", phone));
    }
    let name = NameParts::new(&person.full_name);
    if let Some(dob) = person.dob {
        let year = dob.year();
        if let Some(family) = name.family() {
            out.push(key("family+dob", format!("{family}|{}", dob.format("%Y-%m-%d"))));
        }
        if let (Some(family), Some(given)) = (name.family(), name.given()) {
            out.push(key("family+given+year", format!("{family}|{given}|{year}")));
        }
        if !name.tokens.is_empty() {
            let mut words = name.tokens.clone();
            words.sort_unstable();
            out.push(key("names+year", format!("{}|{year}", words.join(" "))));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn p(name: &str, dob: &str, cccd: Option<&str>) -> PersonKey {
        PersonKey {
            full_name: name.into(),
            dob: NaiveDate::parse_from_str(dob, "%Y-%m-%d").ok(),
            sex: None,
            cccd: cccd.map(Into::into),
            phone: None,
        }
    }

    fn shares(a: &PersonKey, b: &PersonKey) -> bool {
        let probe = keys(a);
        keys(b).iter().any(|k| probe.contains(k))
    }

    #[test]
    fn each_error_kind_shares_a_key() {
        let base = p("Nguyễn Văn Hùng", "1990-03-15", Some("001090000123"));
        for (other, why) in [
            (p("Nguyen Van Hung", "1990-03-15", None), "no diacritics"),
            (p("Nguyễn Văn Hùng", "1990-01-01", None), "year only"),
            (p("Nguyễn Hùng", "1990-03-05", None), "middle omitted, day typo"),
            (p("Nguyễn Văn Hxng", "1990-03-15", None), "given typo"),
            (p("Hùng Nguyễn Văn", "1990-07-02", None), "given name first, another day"),
            (p("Trần Thị Lan", "2001-01-01", Some("001090000213")), "CCCD transposed"),
        ] {
            assert!(shares(&other, &base), "{why}");
            assert!(shares(&base, &other), "{why}, the other way");
        }
        assert!(!shares(&p("Lê Thị Mai", "1970-06-01", None), &base));
    }
}
