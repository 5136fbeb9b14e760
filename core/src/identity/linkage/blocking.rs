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
//! - `family+date`: family name, year of birth, and the day and month of birth
//!   in either order (a date exact, or with its day and month swapped);
//! - `names+year`: every name word, sorted, and the year of birth (a name in
//!   another order);
//! - `family+given+year` and `family+given+year-only`, the one rule whose stored
//!   and looked-up keys differ: family and given name and the year of birth, for
//!   a date recorded as the year only (1 January, the model's `year_only`
//!   level). Everyone is indexed under `family+given+year` and a record dated
//!   1 January looks it up; a record dated 1 January is also indexed under
//!   `family+given+year-only`, which everyone looks up. A middle name missing
//!   together with a year-only date is found both ways, and a lookup of an
//!   exactly dated record reads only the year-only records of its family and
//!   given name — not every namesake born that year (`blocking-4`'s symmetric
//!   `family+given+year` read 60,000 of the 74,000 rows a commune's first push
//!   read in a district of 360,000 residents, to queue no pair `family+date`
//!   and this rule miss: a middle name missing with a day or month mistyped
//!   scores below review).
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
//! scopes them ([`index_keys`]); each key also names its locality
//! ([`BlockingKey::locality`]), which a store may use to keep the keys of one part of the
//! country together. The identifiers' keys (CCCD, phone) reach across
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
pub const RULES_VERSION: &str = "blocking-5";

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
    /// The part of the country the key's holders share ([`BlockingKey::locality`]).
    locality: String,
}

fn key(rule: &'static str, value: String) -> BlockingKey {
    // A CCCD number's first three digits are the code of the province that registered it:
    // a CCCD key's first three characters keep them (pairs sorted, or the first digit alone
    // and then a sorted pair), so the holders of one province's numbers share a few localities.
    let locality = match is_cccd_rule(rule) {
        true => value.chars().take(3).collect(),
        false => String::new(),
    };
    BlockingKey { rule, value, locality }
}

impl BlockingKey {
    /// The part of the country the key's holders share, the same for every holder of the key:
    /// a name's or a date's key as [`index_keys`] scopes it, its district; a CCCD's key, the
    /// first three characters of its value (mostly the province that registered the number);
    /// a phone's key, none (empty). A store's index that keeps the keys of one locality
    /// together lets a commune's lookups read the few stretches of the index that hold its
    /// district and its province, instead of leaves all over it.
    pub fn locality(&self) -> &str {
        &self.locality
    }
}

/// The keys a record is indexed under (`stored`) and looked up by (`probes`), before a
/// store scopes them ([`index_keys`]): the same keys both ways but for the year-only rule
/// (the module's doc).
pub fn keys(person: &PersonKey) -> IndexKeys {
    let mut both = Vec::new();
    if let Some(digits) = cccd_digits(person.cccd.as_deref()) {
        both.push(key(CCCD_EVEN, pairs_sorted(&digits, 0)));
        both.push(key(CCCD_ODD, pairs_sorted(&digits, 1)));
    }
    if let Some(phone) = phone_digits(person.phone.as_deref()) {
        both.push(key("phone", phone));
    }
    let name = NameParts::new(&person.full_name);
    let (mut stored, mut probes) = (Vec::new(), Vec::new());
    if let Some(dob) = person.dob {
        let year = dob.year();
        if let Some(family) = name.family() {
            let (low, high) = (dob.month().min(dob.day()), dob.month().max(dob.day()));
            both.push(key("family+date", format!("{family}|{year}|{low}-{high}")));
        }
        if !name.tokens.is_empty() {
            let mut words = name.tokens.clone();
            words.sort_unstable();
            both.push(key("names+year", format!("{}|{year}", words.join(" "))));
        }
        if let (Some(family), Some(given)) = (name.family(), name.given()) {
            let names = format!("{family}|{given}|{year}");
            let year_only = dob.month() == 1 && dob.day() == 1;
            stored.push(key(FAMILY_GIVEN_YEAR, names.clone()));
            probes.push(key(FAMILY_GIVEN_YEAR_ONLY, names.clone()));
            if year_only {
                stored.push(key(FAMILY_GIVEN_YEAR_ONLY, names.clone()));
                probes.push(key(FAMILY_GIVEN_YEAR, names));
            }
        }
    }
    stored.splice(0..0, both.iter().cloned());
    probes.splice(0..0, both);
    IndexKeys { stored, probes }
}

/// Family and given name and year: every record's, looked up by a record dated 1 January.
const FAMILY_GIVEN_YEAR: &str = "family+given+year";
/// Family and given name and year of a record dated 1 January, looked up by every record.
const FAMILY_GIVEN_YEAR_ONLY: &str = "family+given+year-only";

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
/// Scoped by [`index_keys`], every key but the CCCD's is split by whether its holder has a
/// CCCD: a person with one is stored under `…#with-cccd` and looks up `…#without-cccd`; a
/// person without one is stored under `…#without-cccd` and looks up both. A name's or a
/// date's key also carries the district (`…@01.001`). Two people share a probe and a stored
/// key exactly when one's probe of [`keys`] is the other's stored key, they are not a pair of
/// different CCCDs, and either the key is an identifier's or they live in one district.
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
        true => BlockingKey { value: format!("{}#{holder}", k.value), ..k.clone() },
        false => {
            BlockingKey { rule: k.rule, value: format!("{}#{holder}@{district}", k.value), locality: district.into() }
        }
    }
}

/// The keys of `person`, a resident of `area`, as a store indexes and looks them up
/// ([`IndexKeys`]).
pub fn index_keys(person: &PersonKey, area: &str) -> IndexKeys {
    let has_cccd = cccd_digits(person.cccd.as_deref()).is_some();
    let district = district_of(area);
    let plain = keys(person);
    let mut out = IndexKeys { stored: Vec::new(), probes: Vec::new() };
    for k in plain.stored {
        out.stored.push(match is_cccd_rule(k.rule) {
            true => k,
            false => flavoured(&k, has_cccd, district),
        });
    }
    for k in plain.probes {
        if is_cccd_rule(k.rule) {
            out.probes.push(k);
            continue;
        }
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

    /// Whether a lookup of `a` reads `b` (unscoped keys).
    fn shares(a: &PersonKey, b: &PersonKey) -> bool {
        let stored = keys(b).stored;
        keys(a).probes.iter().any(|k| stored.contains(k))
    }

    #[test]
    fn each_error_kind_shares_a_key() {
        let base = p("Nguyễn Văn Hùng", "1990-03-15", Some("001090000123"));
        for (other, why) in [
            (p("Nguyen Van Hung", "1990-03-15", None), "no diacritics"),
            (p("Nguyễn Văn Hùng", "1990-01-01", None), "year only"),
            (p("Nguyễn Hùng", "1990-01-01", None), "middle omitted, year only"),
            (p("Nguyễn Văn Hxng", "1990-03-15", None), "given typo"),
            (p("Hùng Nguyễn Văn", "1990-07-02", None), "given name first, another day"),
            (p("Trần Thị Lan", "2001-01-01", Some("001090000213")), "CCCD transposed"),
        ] {
            assert!(shares(&other, &base), "{why}");
            assert!(shares(&base, &other), "{why}, the other way");
        }
        assert!(!shares(&p("Lê Thị Mai", "1970-06-01", None), &base));
        // Two exactly dated namesakes of one year, no middle name in common: no shared key
        // (a lookup reads only the year-only records of a family and given name).
        assert!(!shares(&p("Nguyễn Hùng", "1990-03-05", None), &base));
        assert!(!shares(&base, &p("Nguyễn Hùng", "1990-03-05", None)));
        // A middle name missing with the day and month swapped.
        let early = p("Nguyễn Văn Hùng", "1990-03-05", None);
        assert!(
            shares(&p("Nguyễn Hùng", "1990-05-03", None), &early)
                && shares(&early, &p("Nguyễn Hùng", "1990-05-03", None))
        );
        // Two records dated 1 January find each other.
        let year_only = p("Nguyễn Văn Hùng", "1990-01-01", None);
        assert!(shares(&p("Nguyễn Hùng", "1990-01-01", None), &year_only));
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
        // Each key's locality: the district of a name's or a date's, a CCCD's first three
        // characters (of `001090456123`, paired from the first digit `000…`, from the second `001…`).
        for k in index_keys(&card, "01.001.00001").stored {
            let expected = match k.rule {
                CCCD_EVEN => "000",
                CCCD_ODD => "001",
                _ => "01.001",
            };
            assert_eq!(k.locality(), expected, "{}", k.rule);
        }
        let with_phone = index_keys(&phone, "01.001.00001").stored;
        assert!(with_phone.iter().any(|k| k.rule == "phone" && k.locality().is_empty()));
        assert_eq!(district_of("01.001.00001"), "01.001");
        assert_eq!(district_of("01.001"), "01.001");
        assert_eq!(district_of("01"), "01");
    }
}
