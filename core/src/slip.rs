//! Household verification slips.
//!
//! After a visit the commune prints a slip for the household. Its QR code
//! holds a short summary of the household as the registry knows it, signed by
//! the sync server with Ed25519. A device verifies the signature offline with
//! the server's public key (received at enrolment), so a forged or altered
//! slip is caught in a village with no network.
//!
//! The QR text is `DSLIP1.<payload>.<signature>`, both parts base64url without
//! padding; the payload is CBOR and the signature covers
//! [`SIGNATURE_CONTEXT`] followed by the payload bytes.
//!
//! Slips carry as little personal data as identifies the household: names,
//! years of birth and the last four digits of each CCCD number.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::Household;

/// Prefix of a slip's QR text; the digit is the format version.
pub const PREFIX: &str = "DSLIP1.";
/// Bytes signed before the payload: a slip signature cannot be replayed as any other signature.
pub const SIGNATURE_CONTEXT: &[u8] = b"doorstep verification slip v1\0";
/// Longest QR text accepted.
pub const MAX_TEXT_LEN: usize = 2_000;
/// Most members listed on one slip.
pub const MAX_MEMBERS: usize = 20;

/// One resident as a slip shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlipMember {
    /// Full name.
    pub name: String,
    /// Year of birth.
    pub birth_year: Option<i32>,
    /// Last four digits of the CCCD number.
    pub cccd_last4: Option<String>,
}

/// What a verification slip certifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slip {
    /// Household id.
    pub household_id: String,
    /// Area code.
    pub area: String,
    /// Address.
    pub address: String,
    /// Residents.
    pub members: Vec<SlipMember>,
    /// The document version certified: the first 16 hex digits of its smallest head.
    pub version: String,
    /// Day of issue, `YYYY-MM-DD`.
    pub issued_on: String,
}

impl Slip {
    /// The slip for a household at a version, issued on a day.
    pub fn for_household(h: &Household, heads: &[String], issued_on: chrono::NaiveDate) -> Slip {
        let version = heads.iter().min().map(|h| h.chars().take(16).collect()).unwrap_or_default();
        Slip {
            household_id: h.household_id.clone(),
            area: h.area_code.clone(),
            address: h.address.clone(),
            members: h
                .members
                .iter()
                .take(MAX_MEMBERS)
                .map(|m| SlipMember {
                    name: m.full_name.clone(),
                    birth_year: m.dob.as_deref().and_then(|d| d.get(..4)?.parse().ok()),
                    cccd_last4: m.cccd.as_deref().filter(|c| c.chars().count() >= 4).map(|c| {
                        let tail: Vec<char> = c.chars().rev().take(4).collect();
                        tail.into_iter().rev().collect()
                    }),
                })
                .collect(),
            version,
            issued_on: issued_on.format("%Y-%m-%d").to_string(),
        }
    }

    /// Signs the slip: the text to put in its QR code.
    pub fn sign(&self, key: &SigningKey) -> String {
        SLIP.sign(self, key)
    }

    /// Verifies a slip's QR text against the server's public key and returns what it certifies.
    pub fn verify(text: &str, public_key: &[u8]) -> Result<Slip> {
        let slip: Slip = SLIP.open(text, public_key).map_err(|why| Error::BadSignature(format!("slip: {why}")))?;
        if slip.members.len() > MAX_MEMBERS {
            return Err(Error::BadSignature("too many members".into()));
        }
        Ok(slip)
    }
}

/// How slips are signed.
const SLIP: crate::signed::Kind =
    crate::signed::Kind { prefix: PREFIX, context: SIGNATURE_CONTEXT, max_len: MAX_TEXT_LEN };

/// A fresh Ed25519 signing key from the operating system's random source.
pub fn generate_signing_key() -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|_| Error::Random)?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Member;

    fn household() -> Household {
        Household {
            household_id: "01.001.00001-000001".into(),
            area_code: "01.001.00001".into(),
            address: "Số 251, Thôn Đông, xã Tân Lập".into(),
            members: vec![
                Member {
                    member_id: "m0".into(),
                    full_name: "Trần Minh Thắng".into(),
                    dob: Some("1991-06-16".into()),
                    cccd: Some("011091603856".into()),
                    ..Member::default()
                },
                Member { member_id: "m1".into(), full_name: "Đỗ Kim Tâm".into(), ..Member::default() },
            ],
            ..Household::default()
        }
    }

    fn slip() -> Slip {
        Slip::for_household(
            &household(),
            &["f00d".repeat(16), "abcd".repeat(16)],
            chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
        )
    }

    #[test]
    fn a_signed_slip_verifies_offline_and_keeps_little_personal_data() {
        let key = generate_signing_key().unwrap();
        let text = slip().sign(&key);
        assert!(text.starts_with(PREFIX) && text.len() < 600, "{}", text.len());
        let back = Slip::verify(&text, key.verifying_key().as_bytes()).unwrap();
        assert_eq!(back, slip());
        assert_eq!(back.version, "abcdabcdabcdabcd");
        assert_eq!(back.members[0].birth_year, Some(1991));
        assert_eq!(back.members[0].cccd_last4.as_deref(), Some("3856"));
        assert!(!text.contains("011091603856"));
        // Whatever a device typed into the CCCD field, the slip is made without a panic.
        let mut odd = household();
        odd.members[0].cccd = Some("12345678901ạ".into());
        let odd_slip = Slip::for_household(&odd, &[], chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap());
        assert_eq!(odd_slip.members[0].cccd_last4.as_deref(), Some("901ạ"));
        // It fits a QR code and comes back through a photo of one.
        let png = crate::qr::encode_png(&text, 4).unwrap();
        assert_eq!(crate::qr::decode_image(&png).unwrap(), vec![text.clone()]);
    }

    #[test]
    fn altered_forged_or_foreign_slips_are_refused() {
        let key = generate_signing_key().unwrap();
        let public = key.verifying_key().to_bytes();
        let text = slip().sign(&key);

        // Another registry's key.
        let other = generate_signing_key().unwrap();
        assert!(matches!(Slip::verify(&text, other.verifying_key().as_bytes()), Err(Error::BadSignature(_))));

        // A changed name, re-encoded with the old signature.
        let mut forged = slip();
        forged.members[1].name = "Đỗ Kim Tâm B".into();
        let forged_text = forged.sign(&other);
        let (_, sig) = text.rsplit_once('.').unwrap();
        let (payload, _) = forged_text.rsplit_once('.').unwrap();
        assert!(matches!(Slip::verify(&format!("{payload}.{sig}"), &public), Err(Error::BadSignature(_))));

        // Every single flipped character of the payload or signature.
        for i in PREFIX.len()..text.len() {
            let mut bytes = text.clone().into_bytes();
            if bytes[i] == b'.' {
                continue;
            }
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            if altered != text {
                assert!(Slip::verify(&altered, &public).is_err(), "position {i}");
            }
        }

        for junk in ["", "DSLIP1.", "DSLIP1.abc", "DSLIP1.abc.def", "hello", &"A".repeat(5000)] {
            assert!(matches!(Slip::verify(junk, &public), Err(Error::BadSignature(_))), "{junk:.20}");
        }
        assert!(matches!(Slip::verify(&text, &[1, 2, 3]), Err(Error::BadSignature(_))));
    }
}
