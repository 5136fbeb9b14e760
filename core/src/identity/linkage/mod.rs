//! Record linkage: whether two resident records describe one person.
//!
//! A Fellegi–Sunter model, as Splink implements it. Each field of a pair is put
//! in an agreement level ([`comparison`]); each level carries a match weight,
//! log2(m/u), where m is the level's probability among true matches and u among
//! random pairs. Exact agreement on a name part is adjusted by how common the
//! name is (agreeing on "Nguyễn" is weak evidence, on "Giàng" strong). The sum of
//! the weights and the prior gives a calibrated match probability.
//!
//! A few pairs are never likely whatever their weight (hard non-duplicates):
//! two different CCCD numbers, twins, and a parent and child who share a name.
//! A CCCD that differs from the other by one transposition goes to review.
//!
//! The parameters come from [`calibrate`] and ship as a versioned file
//! (`params-v1.json`); [`blocking`] names the keys under which candidates are
//! looked up, so a store never compares a record with every other.

pub mod blocking;
pub mod calibrate;
pub mod comparison;
pub mod params;

use std::sync::OnceLock;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use super::Sex;
pub use comparison::{Comparison, ComparisonVector, Level, NameParts, PersonRecord, compare, compare_parts};
pub use params::{LevelParams, ModelParams};

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
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A rule that overrides the weights for pairs known not to be one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HardRule {
    /// Both records carry CCCD numbers, and they differ by more than one transposition.
    DifferentCccd,
    /// The CCCD numbers differ by one transposition: always worth a review, never likely.
    CccdTransposition,
    /// Same household, family name and date of birth, different given names.
    Twins,
    /// The same name, born 12 or more years apart: a parent and a child named after them.
    ParentAndChild,
}

/// One comparison's part in a score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ComparisonWeight {
    /// The compared field.
    pub comparison: Comparison,
    /// Its agreement level.
    pub level: Level,
    /// Its match weight in bits (term-frequency adjusted); 0 for a level that carries no evidence.
    pub weight: f64,
}

/// The outcome of comparing two records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchScore {
    /// Calibrated probability that the two records are one person.
    pub probability: f64,
    /// Prior plus every comparison's weight, in bits.
    pub match_weight: f64,
    /// Each comparison's level and weight, so that a reader can see why.
    pub comparisons: Vec<ComparisonWeight>,
    /// A hard rule that overrode the weights, if any.
    pub rule: Option<HardRule>,
    /// The model version that scored it.
    pub model: String,
}

impl HardRule {
    /// The rule's name, as it is serialised (`different_cccd`).
    pub fn as_str(self) -> &'static str {
        match self {
            HardRule::DifferentCccd => "different_cccd",
            HardRule::CccdTransposition => "cccd_transposition",
            HardRule::Twins => "twins",
            HardRule::ParentAndChild => "parent_and_child",
        }
    }
}

impl MatchScore {
    /// Why, as lines a UI can show: each comparison that carried evidence,
    /// `date_of_birth: year_only (+10.2)`, then `rule: …` when a hard rule overrode them.
    pub fn explanation_lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .comparisons
            .iter()
            .filter(|c| c.level.is_evidence())
            .map(|c| format!("{}: {} ({:+.1})", c.comparison.as_str(), c.level.as_str(), c.weight))
            .collect();
        if let Some(rule) = self.rule {
            out.push(format!("rule: {}", rule.as_str()));
        }
        out
    }
}

/// The linkage model: parameters and the scoring that uses them.
#[derive(Debug, Clone)]
pub struct LinkageModel {
    params: ModelParams,
    /// Σ tf² per name part: the u of exact agreement on average, the base of tf adjustments.
    avg_agree: [f64; 3],
}

/// Parameters that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    /// The JSON does not parse as parameters.
    #[error("linkage parameters do not parse: {0}")]
    Parse(#[from] serde_json::Error),
    /// A probability lies outside (0, 1].
    #[error("linkage parameter {0} is not a probability in (0, 1]")]
    OutOfRange(String),
}

impl LinkageModel {
    /// The model shipped with this version.
    pub fn shipped() -> &'static LinkageModel {
        static MODEL: OnceLock<LinkageModel> = OnceLock::new();
        MODEL.get_or_init(|| {
            LinkageModel::from_json(params::DEFAULT_PARAMS_JSON).expect("the shipped linkage parameters are valid")
        })
    }

    /// A model from parameters in JSON, checked.
    pub fn from_json(json: &str) -> Result<LinkageModel, ParamsError> {
        LinkageModel::new(serde_json::from_str(json)?)
    }

    /// A model from parameters, checked.
    pub fn new(params: ModelParams) -> Result<LinkageModel, ParamsError> {
        let ok = |p: f64| p > 0.0 && p <= 1.0;
        for (c, levels) in &params.levels {
            for (l, lp) in levels {
                if !ok(lp.m) || !ok(lp.u) {
                    return Err(ParamsError::OutOfRange(format!("{c:?}.{l:?}")));
                }
            }
        }
        for (name, p) in [
            ("prior", params.prior),
            ("tf_minimum", params.tf_minimum),
            ("review_threshold", params.review_threshold),
            ("likely_threshold", params.likely_threshold),
        ] {
            if !ok(p) {
                return Err(ParamsError::OutOfRange(name.into()));
            }
        }
        let tf = &params.term_frequencies;
        let sq = |m: &std::collections::BTreeMap<String, f64>| m.values().map(|f| f * f).sum::<f64>().max(1e-12);
        let avg_agree = [sq(&tf.family), sq(&tf.middle), sq(&tf.given)];
        Ok(LinkageModel { params, avg_agree })
    }

    /// The parameters.
    pub fn params(&self) -> &ModelParams {
        &self.params
    }

    /// The version named in the parameters.
    pub fn version(&self) -> &str {
        &self.params.version
    }

    /// Whether a probability reaches review.
    pub fn is_review(&self, probability: f64) -> bool {
        probability >= self.params.review_threshold
    }

    /// Whether a probability is a likely duplicate.
    pub fn is_likely(&self, probability: f64) -> bool {
        probability >= self.params.likely_threshold
    }

    fn tf_adjust(&self, part: usize, value: Option<&str>) -> f64 {
        let Some(value) = value.filter(|v| !v.is_empty()) else { return 0.0 };
        let tf = &self.params.term_frequencies;
        let table = [&tf.family, &tf.middle, &tf.given][part];
        if table.is_empty() {
            return 0.0;
        }
        // A name the calibration data never showed says nothing either way.
        let Some(f) = table.get(value) else { return 0.0 };
        let f = f.max(self.params.tf_minimum);
        (self.avg_agree[part] / f).log2()
    }

    /// The weight of one level, with the term-frequency adjustment of the name parts it agrees on.
    fn level_weight(&self, c: Comparison, level: Level, na: &NameParts) -> f64 {
        if !level.is_evidence() {
            return 0.0;
        }
        let Some(lp) = self.params.levels.get(&c).and_then(|l| l.get(&level)) else { return 0.0 };
        // Both records agree on the adjusted parts, so either side's value serves.
        let family = || self.tf_adjust(0, na.family());
        let middle = || self.tf_adjust(1, Some(&na.middle()));
        let given = || self.tf_adjust(2, na.given());
        let tf = match (c, level) {
            // A reordered name has no reliable family or given part: no adjustment.
            (Comparison::FullName, Level::Exact) => family() + middle() + given(),
            (Comparison::FullName, Level::MiddleMissing) => family() + given(),
            (Comparison::FamilyName, Level::Exact) => family(),
            (Comparison::MiddleName, Level::Exact) => middle(),
            (Comparison::GivenName, Level::Exact) => given(),
            _ => 0.0,
        };
        lp.weight() + tf
    }

    /// Scores how likely two records describe one person.
    pub fn score(&self, a: &PersonRecord<'_>, b: &PersonRecord<'_>) -> MatchScore {
        self.score_parts(a, &NameParts::new(&a.key.full_name), b, &NameParts::new(&b.key.full_name))
    }

    /// [`Self::score`] with names already split.
    pub fn score_parts(
        &self,
        a: &PersonRecord<'_>,
        na: &NameParts,
        b: &PersonRecord<'_>,
        nb: &NameParts,
    ) -> MatchScore {
        let vector = compare_parts(a, na, b, nb);
        let prior = self.params.prior;
        let mut match_weight = (prior / (1.0 - prior)).log2();
        let comparisons: Vec<ComparisonWeight> = vector
            .levels
            .iter()
            .map(|&(comparison, level)| {
                let weight = self.level_weight(comparison, level, na);
                match_weight += weight;
                ComparisonWeight { comparison, level, weight }
            })
            .collect();
        let mut probability = 1.0 / (1.0 + (-match_weight).exp2());
        let rule = hard_rule(&vector, a, b);
        match rule {
            Some(HardRule::CccdTransposition) => {
                let below_likely = self.params.likely_threshold * 0.999;
                probability = probability.clamp(self.params.review_threshold, below_likely);
            }
            Some(_) => probability = probability.min(self.params.review_threshold * 0.1),
            None => {}
        }
        MatchScore { probability, match_weight, comparisons, rule, model: self.params.version.clone() }
    }
}

fn year(d: Option<NaiveDate>) -> Option<i32> {
    d.map(|d| d.year())
}

fn hard_rule(v: &ComparisonVector, a: &PersonRecord<'_>, b: &PersonRecord<'_>) -> Option<HardRule> {
    match v.level(Comparison::Cccd) {
        Level::Different => return Some(HardRule::DifferentCccd),
        Level::Transposed => return Some(HardRule::CccdTransposition),
        _ => {}
    }
    let full = v.level(Comparison::FullName);
    let same_household = v.level(Comparison::Household) == Level::Exact;
    if same_household
        && full == Level::Different
        && v.level(Comparison::FamilyName) == Level::Exact
        && v.level(Comparison::DateOfBirth) == Level::Exact
        && v.level(Comparison::GivenName) != Level::Exact
    {
        return Some(HardRule::Twins);
    }
    if matches!(full, Level::Exact | Level::Reordered | Level::MiddleMissing)
        && let (Some(x), Some(y)) = (year(a.key.dob), year(b.key.dob))
        && (x - y).abs() >= 12
    {
        return Some(HardRule::ParentAndChild);
    }
    None
}

#[cfg(test)]
mod tests;
