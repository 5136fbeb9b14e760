//! Estimating the model's parameters from data.
//!
//! - **u** from random pairs of the data itself: the share of each level among
//!   pairs drawn uniformly at random (almost all of them different people).
//! - **m** from labelled true pairs (the generator's truth file, or pairs that
//!   operators merged): the share of each level among them.
//! - **Term frequencies** of family, middle and given names among the records.
//! - **Prior**: true pairs over all pairs.
//!
//! Every count is smoothed (half a pair per level), so a level never seen in
//! the sample keeps a small, finite weight.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::PersonKey;
use super::comparison::{Comparison, Level, NameParts, PersonRecord, compare_parts};
use super::params::{LevelParams, ModelParams, TermFrequencies};

/// One record of the calibration data.
#[derive(Debug, Clone)]
pub struct CalibrationRecord {
    /// Household id.
    pub household_id: String,
    /// Member id.
    pub member_id: String,
    /// Area code.
    pub area: String,
    /// The person.
    pub key: PersonKey,
}

/// How the estimate is drawn.
#[derive(Debug, Clone)]
pub struct CalibrationOptions {
    /// Random pairs sampled for u.
    pub random_pairs: usize,
    /// Seed of the sampler.
    pub seed: u64,
    /// Version written into the parameters.
    pub version: String,
    /// What the data was, written into the parameters.
    pub trained_on: String,
    /// Thresholds written into the parameters.
    pub review_threshold: f64,
    /// See [`ModelParams::likely_threshold`].
    pub likely_threshold: f64,
}

type Counts = BTreeMap<Comparison, BTreeMap<Level, f64>>;

fn levels_of(c: Comparison) -> &'static [Level] {
    use Level::*;
    match c {
        Comparison::FullName => &[Exact, Reordered, MiddleMissing, Different],
        Comparison::FamilyName | Comparison::GivenName => &[Exact, JaroWinklerHigh, JaroWinklerMid, Different],
        Comparison::MiddleName => &[Exact, JaroWinklerHigh, Different],
        Comparison::DateOfBirth => &[Exact, DayMonthSwapped, YearOnly, OneComponentOff, YearOffByOne, Different],
        Comparison::Sex | Comparison::Household => &[Exact, Different],
        Comparison::Cccd => &[Exact, Transposed, Different],
        Comparison::Phone => &[Exact, Different],
        Comparison::Area => &[Exact, SameDistrict, SameProvince, Different],
    }
}

fn count(counts: &mut Counts, a: &PersonRecord<'_>, na: &NameParts, b: &PersonRecord<'_>, nb: &NameParts) {
    for (c, l) in compare_parts(a, na, b, nb).levels {
        if l.is_evidence() {
            *counts.entry(c).or_default().entry(l).or_default() += 1.0;
        }
    }
}

fn shares(counts: &Counts, pseudo: f64) -> BTreeMap<Comparison, BTreeMap<Level, f64>> {
    Comparison::ALL
        .iter()
        .map(|&c| {
            let seen = counts.get(&c);
            let levels = levels_of(c);
            let total: f64 = levels.iter().map(|l| seen.and_then(|s| s.get(l)).copied().unwrap_or(0.0) + pseudo).sum();
            let out = levels
                .iter()
                .map(|&l| (l, (seen.and_then(|s| s.get(&l)).copied().unwrap_or(0.0) + pseudo) / total))
                .collect();
            (c, out)
        })
        .collect()
}

fn frequencies<'a>(values: impl Iterator<Item = &'a str>) -> BTreeMap<String, f64> {
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    let mut n = 0.0_f64;
    for v in values.filter(|v| !v.is_empty()) {
        *counts.entry(v.to_string()).or_default() += 1.0;
        n += 1.0;
    }
    counts.values_mut().for_each(|c| *c /= n.max(1.0));
    counts
}

/// How well a model finds the labelled pairs of a data set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// Pairs at or above the review threshold.
    pub queued: usize,
    /// … that are true pairs.
    pub true_positives: usize,
    /// Labelled true pairs.
    pub true_pairs: usize,
    /// Pairs the blocking keys brought together.
    pub compared: usize,
    /// Labelled pairs missed, with their indexes.
    pub missed: Vec<(usize, usize)>,
    /// Queued pairs that are not labelled.
    pub false_pairs: Vec<(usize, usize)>,
}

impl Evaluation {
    /// True positives over queued pairs.
    pub fn precision(&self) -> f64 {
        self.true_positives as f64 / (self.queued as f64).max(1.0)
    }

    /// True positives over labelled pairs.
    pub fn recall(&self) -> f64 {
        self.true_positives as f64 / (self.true_pairs as f64).max(1.0)
    }
}

/// Every pair implied by `truth`: records labelled as one person with a third are one person too
/// (a resident registered twice more appears in two labelled pairs, and the two copies match).
pub fn true_pairs_closed(n: usize, truth: &[(usize, usize)]) -> std::collections::HashSet<(usize, usize)> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for &(a, b) in truth {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        parent[ra] = rb;
    }
    let mut groups: std::collections::HashMap<usize, Vec<usize>> = std::collections::HashMap::new();
    for &(a, b) in truth {
        for i in [a, b] {
            let r = root(&mut parent, i);
            let g = groups.entry(r).or_default();
            if !g.contains(&i) {
                g.push(i);
            }
        }
    }
    let mut out = std::collections::HashSet::new();
    for g in groups.values() {
        for (x, &i) in g.iter().enumerate() {
            for &j in &g[x + 1..] {
                out.insert((i.min(j), i.max(j)));
            }
        }
    }
    out
}

/// Finds candidates among `records` as a store does (by blocking key), scores them with
/// `model`, and compares the queue with the labelled `truth`.
pub fn evaluate(records: &[CalibrationRecord], truth: &[(usize, usize)], model: &super::LinkageModel) -> Evaluation {
    use std::collections::{HashMap, HashSet};
    let names: Vec<NameParts> = records.iter().map(|r| NameParts::new(&r.key.full_name)).collect();
    let rec = |i: usize| PersonRecord {
        key: &records[i].key,
        household_id: &records[i].household_id,
        area: &records[i].area,
    };
    let mut index: HashMap<super::blocking::BlockingKey, Vec<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        for k in super::blocking::keys(&r.key).stored {
            index.entry(k).or_default().push(i);
        }
    }
    let truth_set = true_pairs_closed(records.len(), truth);
    let mut out = Evaluation { true_pairs: truth_set.len(), ..Evaluation::default() };
    let mut found = HashSet::new();
    // A pair is compared once, whichever of the two a lookup reads the other from (one
    // rule's stored and looked-up keys differ: blocking::keys).
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let others = super::blocking::keys(&r.key).probes.into_iter().filter_map(|k| index.get(&k)).flatten();
        pairs.extend(
            others.filter(|&&j| j != i && records[j].household_id != r.household_id).map(|&j| (i.min(j), i.max(j))),
        );
    }
    pairs.sort_unstable();
    pairs.dedup();
    for (i, j) in pairs {
        out.compared += 1;
        let s = model.score_parts(&rec(i), &names[i], &rec(j), &names[j]);
        if model.is_review(s.probability) {
            out.queued += 1;
            if truth_set.contains(&(i, j)) {
                out.true_positives += 1;
                found.insert((i, j));
            } else {
                out.false_pairs.push((i, j));
            }
        }
    }
    out.missed = truth_set.difference(&found).copied().collect();
    out.missed.sort_unstable();
    out
}

/// Estimates the parameters from `records` and the labelled true pairs (indexes into `records`).
pub fn estimate(records: &[CalibrationRecord], truth: &[(usize, usize)], options: &CalibrationOptions) -> ModelParams {
    let names: Vec<NameParts> = records.iter().map(|r| NameParts::new(&r.key.full_name)).collect();
    let rec = |i: usize| PersonRecord {
        key: &records[i].key,
        household_id: &records[i].household_id,
        area: &records[i].area,
    };
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut u_counts = Counts::new();
    let n = records.len();
    if n >= 2 {
        for _ in 0..options.random_pairs {
            let i = rng.random_range(0..n);
            let mut j = rng.random_range(0..n - 1);
            if j >= i {
                j += 1;
            }
            count(&mut u_counts, &rec(i), &names[i], &rec(j), &names[j]);
        }
    }
    let mut m_counts = Counts::new();
    for &(i, j) in truth {
        count(&mut m_counts, &rec(i), &names[i], &rec(j), &names[j]);
    }
    let u = shares(&u_counts, 0.5);
    let m = shares(&m_counts, 0.5);
    let seen = |counts: &Counts, c: &Comparison, l: &Level| counts.get(c).and_then(|x| x.get(l)).is_some();
    let levels = Comparison::ALL
        .iter()
        .map(|c| {
            let per = levels_of(*c)
                .iter()
                .map(|l| {
                    // A level the data never shows, among matches or random pairs, is no evidence either way.
                    let m = if seen(&m_counts, c, l) || seen(&u_counts, c, l) { m[c][l] } else { u[c][l] };
                    (*l, LevelParams { m, u: u[c][l] })
                })
                .collect();
            (*c, per)
        })
        .collect();
    let pairs = (n as f64) * (n as f64 - 1.0) / 2.0;
    let middles: Vec<String> = names.iter().map(NameParts::middle).collect();
    ModelParams {
        version: options.version.clone(),
        trained_on: options.trained_on.clone(),
        prior: ((truth.len() as f64).max(0.5) / pairs.max(1.0)).min(0.5),
        levels,
        term_frequencies: TermFrequencies {
            family: frequencies(names.iter().filter_map(NameParts::family)),
            middle: frequencies(middles.iter().map(String::as_str)),
            given: frequencies(names.iter().filter_map(NameParts::given)),
        },
        tf_minimum: 0.001,
        review_threshold: options.review_threshold,
        likely_threshold: options.likely_threshold,
    }
}
