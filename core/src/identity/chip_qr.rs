//! The QR payload printed on chip CCCD cards.
//!
//! One line, `|`-separated:
//! `CCCD|old CMND (may be empty)|full name|dob ddmmyyyy|Nam/Nữ|address|issue date ddmmyyyy`.

use chrono::NaiveDate;

use super::{Cccd, Sex, display_name};
use crate::error::{Error, Result};

/// What a chip-card QR code says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipCardQr {
    /// The 12-digit CCCD number.
    pub cccd: Cccd,
    /// The old 9-digit CMND number, when the card carries one.
    pub old_id: Option<String>,
    /// Full name, NFC, single-spaced.
    pub full_name: String,
    /// Date of birth.
    pub dob: NaiveDate,
    /// Sex.
    pub sex: Sex,
    /// Permanent address.
    pub address: String,
    /// Date the card was issued.
    pub issue_date: NaiveDate,
}

/// Longest payload accepted; real ones are under 300 bytes.
const MAX_PAYLOAD_LEN: usize = 2048;

fn parse_date(field: &str, what: &str) -> Result<NaiveDate> {
    if field.len() != 8 || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::MalformedQr(format!("{what} must be ddmmyyyy, got {field:?}")));
    }
    NaiveDate::parse_from_str(field, "%d%m%Y")
        .map_err(|_| Error::MalformedQr(format!("{what} is not a calendar date: {field:?}")))
}

impl ChipCardQr {
    /// Parses the text of a chip-card QR code.
    ///
    /// The card must agree with itself: the CCCD number's birth year and sex
    /// digit must match the date of birth and sex fields.
    pub fn parse(text: &str) -> Result<ChipCardQr> {
        if text.len() > MAX_PAYLOAD_LEN {
            return Err(Error::MalformedQr(format!("payload is {} bytes, over {MAX_PAYLOAD_LEN}", text.len())));
        }
        let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        let fields: Vec<&str> = text.split('|').map(str::trim).collect();
        if fields.len() != 7 {
            return Err(Error::MalformedQr(format!("expected 7 fields separated by '|', found {}", fields.len())));
        }
        let cccd = Cccd::parse(fields[0]).map_err(|e| Error::MalformedQr(format!("CCCD field: {e}")))?;
        let old_id = match fields[1] {
            "" => None,
            s if s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit()) => Some(s.to_string()),
            s => return Err(Error::MalformedQr(format!("old ID must be empty or 9 digits, got {s:?}"))),
        };
        let full_name = display_name(fields[2]);
        if full_name.is_empty() {
            return Err(Error::MalformedQr("full name is empty".into()));
        }
        let dob = parse_date(fields[3], "date of birth")?;
        let sex = Sex::parse(fields[4])
            .ok_or_else(|| Error::MalformedQr(format!("sex must be Nam or Nữ, got {:?}", fields[4])))?;
        let address = display_name(fields[5]);
        let issue_date = parse_date(fields[6], "issue date")?;
        if issue_date < dob {
            return Err(Error::MalformedQr("issue date is before the date of birth".into()));
        }
        cccd.check_against(Some(dob), Some(sex))
            .map_err(|e| Error::MalformedQr(format!("card disagrees with itself: {e}")))?;
        Ok(ChipCardQr { cccd, old_id, full_name, dob, sex, address, issue_date })
    }

    /// Formats the payload as a card would print it (used to make test cards and receipts).
    pub fn to_payload(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}|{}",
            self.cccd,
            self.old_id.as_deref().unwrap_or(""),
            self.full_name,
            self.dob.format("%d%m%Y"),
            match self.sex {
                Sex::Male => "Nam",
                Sex::Female => "Nữ",
            },
            self.address,
            self.issue_date.format("%d%m%Y"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "001190012345|187654321|Nguyễn Thị Hồng Nhung|15031990|Nữ|Số 12, Thôn Đông, xã Tân Lập, Hà Nội|20042021";

    #[test]
    fn parses_a_card() {
        let card = ChipCardQr::parse(GOOD).unwrap();
        assert_eq!(card.cccd.as_str(), "001190012345");
        assert_eq!(card.old_id.as_deref(), Some("187654321"));
        assert_eq!(card.full_name, "Nguyễn Thị Hồng Nhung");
        assert_eq!(card.dob, NaiveDate::from_ymd_opt(1990, 3, 15).unwrap());
        assert_eq!(card.sex, Sex::Female);
        assert_eq!(card.issue_date, NaiveDate::from_ymd_opt(2021, 4, 20).unwrap());
        assert_eq!(ChipCardQr::parse(&card.to_payload()).unwrap(), card);
    }

    #[test]
    fn empty_old_id_is_none() {
        let card = ChipCardQr::parse("001190012345||Nguyễn Thị Hồng Nhung|15031990|Nữ|Hà Nội|20042021\n").unwrap();
        assert_eq!(card.old_id, None);
    }

    #[test]
    fn malformed_payloads_get_typed_errors() {
        let cases = [
            "",
            "garbage",
            "001190012345||Name|15031990|Nữ|Hà Nội",
            "001190012345||Name|15031990|Nữ|Hà Nội|20042021|extra",
            "00119001234||Name|15031990|Nữ|Hà Nội|20042021",
            "001190012345|12|Name|15031990|Nữ|Hà Nội|20042021",
            "001190012345|| |15031990|Nữ|Hà Nội|20042021",
            "001190012345||Name|31021990|Nữ|Hà Nội|20042021",
            "001190012345||Name|1990-03-15|Nữ|Hà Nội|20042021",
            "001190012345||Name|15031990|Khác|Hà Nội|20042021",
            "001190012345||Name|15031990|Nam|Hà Nội|20042021",
            "001190012345||Name|15031991|Nữ|Hà Nội|20042021",
            "001190012345||Name|15031990|Nữ|Hà Nội|20041989",
        ];
        for case in cases {
            assert!(matches!(ChipCardQr::parse(case), Err(Error::MalformedQr(_))), "{case:?}");
        }
        let huge = "1|".repeat(5000);
        assert!(matches!(ChipCardQr::parse(&huge), Err(Error::MalformedQr(_))));
    }
}
