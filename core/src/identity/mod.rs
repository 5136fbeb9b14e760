//! Citizen identity: CCCD numbers, the chip-card QR payload, Vietnamese name
//! normalization and duplicate scoring.

mod cccd;
mod chip_qr;
mod duplicate;
mod name;

pub use cccd::{Cccd, CccdError, Sex, province_name};
pub use chip_qr::ChipCardQr;
pub use duplicate::{DuplicateScore, MatchReason, PersonKey, score_pair};
pub use name::{display_name, name_tokens, normalize_name};
