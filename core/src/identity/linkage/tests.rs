//! Tricky pairs, scored by the shipped model.

use chrono::NaiveDate;
use unicode_normalization::UnicodeNormalization;

use super::*;

const F: Option<Sex> = Some(Sex::Female);
const M: Option<Sex> = Some(Sex::Male);

fn p(name: &str, dob: &str, sex: Option<Sex>, cccd: Option<&str>) -> PersonKey {
    PersonKey {
        full_name: name.to_string(),
        dob: NaiveDate::parse_from_str(dob, "%Y-%m-%d").ok(),
        sex,
        cccd: cccd.map(str::to_string),
        phone: None,
    }
}

fn phone(mut k: PersonKey) -> PersonKey {
    k.phone = Some("0912 345 678".into());
    k
}

/// What an operator should see for a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Likely the same person.
    Likely,
    /// Worth a review, not likely.
    Review,
    /// At least worth a review (likely or not).
    Queued,
    /// Not queued at all.
    NotQueued,
    /// Not likely (may or may not be queued).
    NotLikely,
}

fn check(model: &LinkageModel, a: &PersonRecord<'_>, b: &PersonRecord<'_>, expect: Expect, why: &str) -> MatchScore {
    let s = model.score(a, b);
    let back = model.score(b, a);
    assert!((back.probability - s.probability).abs() < 1e-9, "{why}: not symmetric: {s:?} / {back:?}");
    let (review, likely) = (model.is_review(s.probability), model.is_likely(s.probability));
    let ok = match expect {
        Expect::Likely => likely,
        Expect::Review => review && !likely,
        Expect::Queued => review,
        Expect::NotQueued => !review,
        Expect::NotLikely => !likely,
    };
    assert!(ok, "{why}: expected {expect:?}, got p = {:.4}: {s:#?}", s.probability);
    s
}

#[test]
fn tricky_pairs() {
    let model = LinkageModel::shipped();
    let nfd: String = "Nguyễn Thị Hồng Nhung".nfd().collect();
    let nhung = p("Nguyễn Thị Hồng Nhung", "1990-03-15", F, None);
    let nhung_id = phone(p("Nguyễn Thị Hồng Nhung", "1990-03-15", F, Some("001190012345")));
    use Expect::*;
    // Re-registrations in another household of the same commune: every error kind the generator makes.
    let table: Vec<(PersonKey, PersonKey, Expect, &str)> = vec![
        (nhung_id.clone(), p(&nfd, "1990-03-15", F, Some("001190012345")), Likely, "NFC vs NFD, same CCCD"),
        (nhung_id.clone(), p("Nguyen Thi Hong Nhung", "1990-03-15", F, Some("001190012345")), Likely, "no diacritics"),
        (nhung_id.clone(), p("NGUYỄN THỊ HỒNG NHUNG", "1990-03-15", F, Some("001190012345")), Likely, "upper case"),
        (
            nhung_id.clone(),
            p("  nguyễn thị hồng nhung ", "1990-03-15", F, Some("001190012345")),
            Likely,
            "case, spaces",
        ),
        (nhung_id.clone(), p("Nguyễn Hồng Nhung", "1990-03-15", F, Some("001190012345")), Likely, "middle omitted"),
        (nhung_id.clone(), p("Nguyễn Thị Hồng Nhxng", "1990-03-15", F, Some("001190012345")), Likely, "given typo"),
        (nhung_id.clone(), p("Nguyễn Thị Hồng Nhung", "1990-01-01", F, Some("001190012345")), Likely, "year only"),
        (nhung_id.clone(), p("Nguyễn Thị Hồng Nhung", "1990-03-05", F, Some("001190012345")), Likely, "dob day typo"),
        // Without the CCCD on one side, name and date must carry it: queued for review.
        (nhung_id.clone(), p("Nguyen Thi Hong Nhung", "1990-03-15", F, None), Queued, "no diacritics, CCCD missing"),
        (nhung_id.clone(), p("Nguyễn Hồng Nhung", "1990-03-15", F, None), Queued, "middle omitted, CCCD missing"),
        (nhung_id.clone(), p("Nguyễn Thị Hồng Nhung", "1990-01-01", F, None), Queued, "year only, CCCD missing"),
        (
            nhung_id.clone(),
            phone(p("Nguyễn Thị Hồng Nhung", "1990-03-05", F, None)),
            Queued,
            "day typo, CCCD missing, same phone",
        ),
        // A day typo with nothing else to go on is too weak: strangers share a name and a month.
        (nhung_id.clone(), p("Nguyễn Thị Hồng Nhung", "1990-03-05", F, None), NotLikely, "day typo, CCCD missing"),
        (
            p("Nguyễn Thị Hồng Nhung", "1990-03-05", F, None),
            p("Nguyễn Thị Hồng Nhung", "1990-05-03", F, None),
            Queued,
            "day/month swapped",
        ),
        (nhung.clone(), p("Nhung Nguyễn Thị Hồng", "1990-03-15", F, None), Queued, "given name first"),
        (
            phone(nhung.clone()),
            phone(p("Nguyễn Thị Hồng Nhung", "1991-03-15", F, None)),
            Queued,
            "year off by one, same phone",
        ),
        (nhung.clone(), p("Nguyễn Thị Hồng Nhung", "1991-03-15", F, None), NotLikely, "year off by one"),
        (nhung.clone(), p("Nguyễn Thị Hồng Nhxng", "1990-03-15", F, None), Queued, "given typo, no CCCD"),
        (p("Đặng Văn Đạt", "1985-01-02", M, None), p("Dang Van Dat", "1985-01-02", M, None), Queued, "đ/d"),
        // The same name born on the same day in another household, no CCCD: review, never likely.
        (nhung.clone(), nhung.clone(), Review, "same name and day, no CCCD"),
        // A CCCD transposition: review.
        (
            p("Trần Văn Hùng", "1970-06-01", M, Some("001070000123")),
            p("Trần Văn Hùng", "1970-06-01", M, Some("001070000213")),
            Review,
            "CCCD transposition",
        ),
        // Hard non-duplicates and strangers.
        (
            p("Nguyễn Văn An", "1990-02-02", M, Some("001090000001")),
            p("Nguyễn Văn An", "1990-02-02", M, Some("001090000002")),
            NotQueued,
            "same name and dob, different CCCD",
        ),
        (
            p("Nguyễn Văn An", "1990-02-02", M, None),
            p("Nguyễn Thị Anh", "1990-02-02", F, None),
            NotQueued,
            "An and Anh, different sex",
        ),
        (
            p("Lê Thị Mai", "1980-01-01", F, None),
            p("Phạm Văn Long", "1980-01-01", M, None),
            NotQueued,
            "strangers born the same day",
        ),
        (
            p("Hồ Mai Mai", "1980-05-05", F, None),
            p("Trần Hồng Mai", "1980-05-05", F, None),
            NotQueued,
            "different family names",
        ),
        (
            p("Lê Thị Mai", "1980-04-01", F, None),
            p("Lê Thị Mai", "1980-04-01", M, None),
            NotLikely,
            "same name, different sex",
        ),
        (
            p("Lê Thị Mai", "1980-04-09", F, None),
            p("Lê Thị Mai", "1983-11-21", F, None),
            NotQueued,
            "same name, other dob",
        ),
    ];
    let (ha, hb) = ("01.001.00001-000001", "01.001.00001-000002");
    for (a, b, expect, why) in &table {
        let ra = PersonRecord { key: a, household_id: ha, area: "01.001.00001" };
        let rb = PersonRecord { key: b, household_id: hb, area: "01.001.00001" };
        check(model, &ra, &rb, *expect, why);
    }
}

#[test]
fn hard_non_duplicates_in_one_household() {
    let model = LinkageModel::shipped();
    let h = "01.001.00001-000007";
    let rec = |k| PersonRecord { key: k, household_id: h, area: "01.001.00001" };
    // Twins: same family and day, different given names.
    let (a, b) = (p("Trần Minh Hải", "2015-09-09", M, None), p("Trần Minh Hùng", "2015-09-09", M, None));
    let s = check(model, &rec(&a), &rec(&b), Expect::NotQueued, "twins");
    assert_eq!(s.rule, Some(HardRule::Twins));
    // A son named after his father.
    let (a, b) = (p("Nguyễn Văn An", "1960-02-02", M, Some("001060000001")), p("Nguyễn Văn An", "1986-02-02", M, None));
    let s = check(model, &rec(&a), &rec(&b), Expect::NotQueued, "father and son");
    assert_eq!(s.rule, Some(HardRule::ParentAndChild));
    // The same person entered twice in one household is still found.
    let a = p("Nguyễn Văn An", "1960-02-02", M, Some("001060000001"));
    check(model, &rec(&a), &rec(&a.clone()), Expect::Likely, "entered twice, same CCCD");
}

#[test]
fn every_comparison_carries_its_weight() {
    let model = LinkageModel::shipped();
    let (a, b) = (
        p("Nguyễn Thị Hồng Nhung", "1990-03-15", F, Some("001190012345")),
        p("Nguyen Thi Hong Nhung", "1990-01-01", F, None),
    );
    let s = model.score(
        &PersonRecord { key: &a, household_id: "h1", area: "01.001.00001" },
        &PersonRecord { key: &b, household_id: "h2", area: "01.001.00001" },
    );
    let level = |c| s.comparisons.iter().find(|w| w.comparison == c).unwrap();
    assert_eq!(s.comparisons.len(), Comparison::ALL.len());
    assert_eq!(level(Comparison::FullName).level, Level::Exact);
    assert!(level(Comparison::FullName).weight > 5.0);
    assert_eq!(level(Comparison::FamilyName).level, Level::Subsumed);
    assert_eq!(level(Comparison::FamilyName).weight, 0.0);
    assert_eq!(level(Comparison::DateOfBirth).level, Level::YearOnly);
    assert!(level(Comparison::DateOfBirth).weight > 0.0);
    assert_eq!(level(Comparison::Cccd).level, Level::Missing);
    let prior = (model.params().prior / (1.0 - model.params().prior)).log2();
    let sum: f64 = prior + s.comparisons.iter().map(|w| w.weight).sum::<f64>();
    assert!((sum - s.match_weight).abs() < 1e-9);
    assert!((s.probability - 1.0 / (1.0 + (-sum).exp2())).abs() < 1e-9);
    assert_eq!(s.model, model.version());
    let lines = s.explanation_lines();
    assert!(lines.iter().any(|l| l.starts_with("date_of_birth: year_only (+")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.starts_with("family_name")), "subsumed levels carry nothing: {lines:?}");
    for c in Comparison::ALL {
        assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
    }
}

#[test]
fn a_common_name_is_weaker_evidence_than_a_rare_one() {
    let mut params = LinkageModel::shipped().params().clone();
    let tf = &mut params.term_frequencies.family;
    tf.clear();
    tf.insert("nguyen".into(), 0.38);
    tf.insert("tran".into(), 0.11);
    tf.insert("giang".into(), 0.002);
    let model = LinkageModel::new(params).unwrap();
    let score = |name: &str| {
        let (a, b) = (p(name, "1990-03-15", M, None), p(name, "1990-03-15", M, None));
        model.score(
            &PersonRecord { key: &a, household_id: "h1", area: "" },
            &PersonRecord { key: &b, household_id: "h2", area: "" },
        )
    };
    let (common, rare) = (score("Nguyễn Văn Dũng"), score("Giàng A Dũng"));
    assert!(rare.match_weight > common.match_weight + 5.0, "{rare:?} vs {common:?}");
    assert!(rare.probability > common.probability);
}

#[test]
fn parameters_are_checked() {
    let mut params = LinkageModel::shipped().params().clone();
    params.prior = 0.0;
    assert!(matches!(LinkageModel::new(params), Err(ParamsError::OutOfRange(_))));
    assert!(matches!(LinkageModel::from_json("{"), Err(ParamsError::Parse(_))));
}
