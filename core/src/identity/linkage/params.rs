//! The model's parameters: for each comparison level, the probability of that
//! level among true matches (m) and among random pairs (u); the prior; name
//! frequencies for term-frequency adjustments; the thresholds. Written by the
//! calibration step ([`super::calibrate`]) to a versioned JSON file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::comparison::{Comparison, Level};

/// m and u of one level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LevelParams {
    /// P(level | the records are one person).
    pub m: f64,
    /// P(level | two random records).
    pub u: f64,
}

impl LevelParams {
    /// The level's match weight, log2(m/u).
    pub fn weight(&self) -> f64 {
        (self.m / self.u).log2()
    }
}

/// Relative frequencies of folded name parts among records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TermFrequencies {
    /// Family names.
    pub family: BTreeMap<String, f64>,
    /// Middle names (joined).
    pub middle: BTreeMap<String, f64>,
    /// Given names.
    pub given: BTreeMap<String, f64>,
}

/// Everything the model needs, as the calibration step writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelParams {
    /// Names this set of parameters; stored with each candidate so a changed model is noticed.
    pub version: String,
    /// How the parameters were estimated (data, seeds, sample sizes).
    pub trained_on: String,
    /// Prior probability that two random records are one person.
    pub prior: f64,
    /// m and u of each evidence level, by comparison.
    pub levels: BTreeMap<Comparison, BTreeMap<Level, LevelParams>>,
    /// Name-part frequencies.
    pub term_frequencies: TermFrequencies,
    /// The smallest frequency a listed name part is given (names absent from the table get no adjustment).
    pub tf_minimum: f64,
    /// At or above this match probability a pair is queued for review.
    pub review_threshold: f64,
    /// At or above this match probability a pair is a likely duplicate.
    pub likely_threshold: f64,
}

/// The parameters shipped with this version.
pub const DEFAULT_PARAMS_JSON: &str = include_str!("params-v1.json");
