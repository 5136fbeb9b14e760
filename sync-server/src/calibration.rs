//! Reading calibration data for the linkage model: households as JSON Lines
//! (the format of `bench/gen_households.py`) and a file of known true pairs,
//! one `household/member<TAB>household/member[<TAB>kind]` a line (the format of
//! `bench/gen_linkage.py --truth`, or pairs operators merged).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use doorstep_core::identity::linkage::calibrate::CalibrationRecord;
use doorstep_core::record::Household;

use crate::merge::people;

/// Why calibration data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationDataError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// A line is not a household.
    #[error("{path} line {line}: not a household: {reason}")]
    Household {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The parser's message.
        reason: String,
    },
    /// A pair names a record that is not in the households.
    #[error("{path} line {line}: no record {record} among the households")]
    UnknownRecord {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// `household/member`.
        record: String,
    },
}

/// One labelled true pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledPair {
    /// Index of one record.
    pub a: usize,
    /// Index of the other.
    pub b: usize,
    /// The kind of error between them (third column), or empty.
    pub kind: String,
}

/// Records of every household in `households`, and the true pairs of `truth` as indexes into them.
pub fn read(
    households: &Path,
    truth: &Path,
) -> Result<(Vec<CalibrationRecord>, Vec<LabelledPair>), CalibrationDataError> {
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| CalibrationDataError::Io { path: path.clone(), source }
    };
    let file = std::fs::File::open(households).map_err(io(households))?;
    let mut records = Vec::new();
    let mut at = HashMap::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(households))?;
        if line.trim().is_empty() {
            continue;
        }
        let h: Household = serde_json::from_str(&line).map_err(|e| CalibrationDataError::Household {
            path: households.display().to_string(),
            line: n + 1,
            reason: e.to_string(),
        })?;
        for (member_id, key) in people(&h) {
            at.insert(format!("{}/{member_id}", h.household_id), records.len());
            records.push(CalibrationRecord {
                household_id: h.household_id.clone(),
                member_id,
                area: h.area_code.clone(),
                key,
            });
        }
    }
    let file = std::fs::File::open(truth).map_err(io(truth))?;
    let mut pairs = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(truth))?;
        let mut cols = line.split('\t');
        let (Some(a), Some(b)) = (cols.next(), cols.next()) else { continue };
        let find = |r: &str| {
            at.get(r).copied().ok_or_else(|| CalibrationDataError::UnknownRecord {
                path: truth.display().to_string(),
                line: n + 1,
                record: r.to_string(),
            })
        };
        pairs.push(LabelledPair { a: find(a)?, b: find(b)?, kind: cols.next().unwrap_or("").to_string() });
    }
    Ok((records, pairs))
}
