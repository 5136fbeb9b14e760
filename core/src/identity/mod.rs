//! Citizen identity: CCCD numbers, the chip-card QR payload, Vietnamese name
//! normalization and record linkage (duplicates).

mod cccd;
mod chip_qr;
pub mod linkage;
mod name;

pub use cccd::{Cccd, CccdError, Sex, province_name};
pub use chip_qr::ChipCardQr;
pub use linkage::{LinkageModel, MatchScore, PersonKey, PersonRecord};
pub use name::{display_name, name_tokens, normalize_name};
