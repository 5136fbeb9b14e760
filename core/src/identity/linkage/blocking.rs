//! Blocking: the keys under which a record is indexed and looked up, so that a
//! store compares a new record only with records that share a key, never with
//! every record it holds.
//!
//! The rules, each a key built from folded values:
//! - `cccd-pairs-even` and `cccd-pairs-odd`: the CCCD number with each pair of
//!   digits sorted, the pairs taken from the first digit and from the second.
//!   The same number shares both keys; a number with two adjacent digits
//!   transposed shares the key whose pairing holds that pair. Each key is
//!   nearly as narrow as the number (`blocking-2` keyed the number's digits all
//!   sorted, which found the same pairs in blocks that grew with the store:
//!   numbers share a province code, a century and sex digit and a year, and
//!   random digits sorted collide by the thousand);
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
//! A store keeps the keys as keyed tokens (blind indexes), never in clear, and
//! scopes them ([`index_keys`]). The identifiers' keys (CCCD, phone) reach across
//! the country; the names' and dates' keys reach across the record's district
//! (the area code's first two levels, [`district_of`]): their blocks grow with
//! the population they cover, a thousand namesakes of a child's family and given
//! name born the same year in a province of three million, so a lookup that read
//! them province- or country-wide would cost what the server holds, not what
//! the commune does. A record and its re-registration in another district that
//! share no identifier are left to the operator's search. The store also
//! splits the keys by who holds a CCCD: two people with different
//! CCCD numbers are never one person (unless the digits are the same, a
//! transposition, which the CCCD's keys find), so a person with a CCCD is looked
//! up by its names and dates only among people without one. In a country where
//! nearly every adult holds a card, that keeps a lookup's rows to the few who
//! may be the same person, instead of every namesake born the same year.

use chrono::Datelike;

use super::{NameParts, PersonKey};
use crate::identity::linkage::comparison::{cccd_digits, phone_digits};

/// Names this set of rules; a store whose keys were made by other rules rebuilds them.
pub const RULES_VERSION: &str = "blocking-4";

/// The CCCD's key with its digits paired from the first.
const CCCD_EVEN: &str = "cccd-pairs-even";
/// The CCCD's key with its digits paired from the second.
const CCCD_ODD: &str = "cccd-pairs-odd";

/// `digits` with each pair sorted, pairs starting at `start` (a digit before it, or left
/// alone at the end, stays): an adjacent transposition within a pair leaves it unchanged.
fn pairs_sorted(digits: &str, start: usize) -> String {
    let mut v = digits.as_bytes().to_vec();
    for pair in v.get_mut(start..).unwrap_or_default().chunks_exact_mut(2) {
        pair.sort_unstable();
    }
    String::from_utf8(v).unwrap_or_default()
}

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
        out.push(key(CCCD_EVEN, pairs_sorted(&digits, 0)));
        out.push(key(CCCD_ODD, pairs_sorted(&digits, 1)));
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

/// Whether a key is one of the CCCD's: the keys a person with a CCCD is looked up by among
/// people who have one too.
fn is_cccd_rule(rule: &str) -> bool {
    rule == CCCD_EVEN || rule == CCCD_ODD
}

/// Whether a key is an identifier's (CCCD, phone): looked up across the country, where a
/// name's or a date's key is looked up within the record's district.
fn is_identifier_rule(rule: &str) -> bool {
    is_cccd_rule(rule) || rule == "phone"
}

/// The district of an area code: its first two levels (`01.001` of `01.001.00001`); a
/// shorter code is its own district.
pub fn district_of(area: &str) -> &str {
    match area.match_indices('.').nth(1) {
        Some((at, _)) => &area[..at],
        None => area,
    }
}

/// A person's keys as a store indexes them (`stored`) and looks them up (`probes`).
/// Every key but the CCCD's is split by whether its holder has a CCCD: a person with one
/// is stored under `…#with-cccd` and looks up `…#without-cccd`; a person without one is
/// stored under `…#without-cccd` and looks up both. A name's or a date's key also carries
/// the district (`…@01.001`). Two people share a probe and a stored key exactly when they
/// share a key of [`keys`], are not a pair of different CCCDs, and either the key is an
/// identifier's or they live in one district.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexKeys {
    /// The keys the person is indexed under.
    pub stored: Vec<BlockingKey>,
    /// The keys the person's lookup reads.
    pub probes: Vec<BlockingKey>,
}

fn flavoured(k: &BlockingKey, with_cccd: bool, district: &str) -> BlockingKey {
    let holder = if with_cccd { "with-cccd" } else { "without-cccd" };
    match is_identifier_rule(k.rule) {
        true => key(k.rule, format!("{}#{holder}", k.value)),
        false => key(k.rule, format!("{}#{holder}@{district}", k.value)),
    }
}

/// The keys of `person`, a resident of `area`, as a store indexes and looks them up
/// ([`IndexKeys`]).
pub fn index_keys(person: &PersonKey, area: &str) -> IndexKeys {
    let has_cccd = cccd_digits(person.cccd.as_deref()).is_some();
    let district = district_of(area);
    let mut out = IndexKeys { stored: Vec::new(), probes: Vec::new() };
    for k in keys(person) {
        if is_cccd_rule(k.rule) {
            out.stored.push(k.clone());
            out.probes.push(k);
            continue;
        }
        out.stored.push(flavoured(&k, has_cccd, district));
        out.probes.push(flavoured(&k, false, district));
        if !has_cccd {
            out.probes.push(flavoured(&k, true, district));
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

    /// Whether a lookup of `a` reads `b` from a store, both of one commune.
    fn finds(a: &PersonKey, b: &PersonKey) -> bool {
        finds_in(a, "01.001.00001", b, "01.001.00001")
    }

    /// Whether a lookup of `a`, of area `area_a`, reads `b`, of `area_b`, from a store.
    fn finds_in(a: &PersonKey, area_a: &str, b: &PersonKey, area_b: &str) -> bool {
        let stored = index_keys(b, area_b).stored;
        index_keys(a, area_a).probes.iter().any(|k| stored.contains(k))
    }

    #[test]
    fn a_lookup_reads_what_shares_a_key_except_pairs_of_different_cccds() {
        let with = p("Nguyễn Văn Hùng", "1990-03-15", Some("001090000123"));
        let without = p("Nguyễn Văn Hùng", "1990-03-15", None);
        let other_card = p("Nguyễn Văn Hùng", "1990-03-15", Some("001090555555"));
        let transposed = p("Nguyễn Văn Hùng", "1990-03-15", Some("001090000213"));
        for (a, b, expected, why) in [
            (&with, &without, true, "one card, one without"),
            (&without, &with, true, "the other way"),
            (&without, &without, true, "neither has a card"),
            (&with, &with, true, "the same card"),
            (&with, &transposed, true, "a transposition"),
            (&with, &other_card, false, "two different cards"),
            (&other_card, &with, false, "two different cards, the other way"),
        ] {
            assert_eq!(finds(a, b), expected, "{why}");
        }
        // Stored keys of a card holder and of a person without one never collide.
        let (s1, s2) = (index_keys(&with, "01.001.00001").stored, index_keys(&without, "01.001.00001").stored);
        assert!(s1.iter().all(|k| is_cccd_rule(k.rule) || !s2.contains(k)));
    }

    #[test]
    fn every_adjacent_transposition_shares_a_cccd_key() {
        let number = "001090456123";
        let card = |n: &str| p("Lê Văn Minh", "1990-03-15", Some(n));
        for i in 0..number.len() - 1 {
            let mut swapped = number.as_bytes().to_vec();
            swapped.swap(i, i + 1);
            let swapped = String::from_utf8(swapped).unwrap();
            assert!(finds(&card(number), &card(&swapped)), "digits {i} and {} swapped", i + 1);
        }
        // Two digits apart, or two numbers with the same digits in another order: no key shared.
        assert!(!finds(&card(number), &card("001090654123")));
        assert!(!finds(&card(number), &card("100090456123")));
    }

    #[test]
    fn names_and_dates_are_looked_up_within_the_district_identifiers_everywhere() {
        let child = p("Nguyễn Văn Hùng", "2015-03-15", None);
        let phone = PersonKey { phone: Some("0912345678".into()), ..child.clone() };
        let card = p("Lê Văn Minh", "1990-03-15", Some("001090456123"));
        for (a, area_a, b, area_b, expected, why) in [
            (&child, "01.001.00001", &child, "01.001.00002", true, "another commune of the district"),
            (&child, "01.001.00001", &child, "01.002.00011", false, "another district"),
            (&phone, "01.001.00001", &phone, "79.760.26734", true, "one phone, another province"),
            (&card, "01.001.00001", &card, "79.760.26734", true, "one card, another province"),
        ] {
            assert_eq!(finds_in(a, area_a, b, area_b), expected, "{why}");
        }
        assert_eq!(district_of("01.001.00001"), "01.001");
        assert_eq!(district_of("01.001"), "01.001");
        assert_eq!(district_of("01"), "01");
    }
}
