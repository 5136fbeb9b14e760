//! The 12-digit CCCD citizen-ID number.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// Sex as recorded in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sex {
    /// Male (Nam).
    #[serde(rename = "M")]
    Male,
    /// Female (Nữ).
    #[serde(rename = "F")]
    Female,
}

impl Sex {
    /// Parses `M`/`F`, `Nam`/`Nữ` (any Unicode form, any case).
    pub fn parse(s: &str) -> Option<Sex> {
        match super::normalize_name(s).as_str() {
            "m" | "nam" | "male" => Some(Sex::Male),
            "f" | "nu" | "female" => Some(Sex::Female),
            _ => None,
        }
    }

    /// The form's code for this value: `M` or `F`.
    pub fn code(self) -> &'static str {
        match self {
            Sex::Male => "M",
            Sex::Female => "F",
        }
    }
}

/// Why a CCCD number is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CccdError {
    /// Not exactly 12 characters.
    #[error("must have 12 digits, has {0}")]
    WrongLength(usize),
    /// Holds something other than ASCII digits.
    #[error("must hold digits only")]
    NotDigits,
    /// Digits 1-3 are not a province code.
    #[error("unknown province code {0}")]
    UnknownProvince(String),
    /// Digits 4-6 give a birth year other than the date of birth's.
    #[error("birth year {in_number} in the number differs from the date of birth's {in_dob}")]
    BirthYearMismatch {
        /// Year the number encodes.
        in_number: i32,
        /// Year of the date of birth.
        in_dob: i32,
    },
    /// Digit 4 gives a sex other than the record's.
    #[error("sex digit says {in_number:?}, the record says {in_record:?}")]
    SexMismatch {
        /// Sex the number encodes.
        in_number: Sex,
        /// Sex on the record.
        in_record: Sex,
    },
}

/// A syntactically valid CCCD number: 12 digits with a known province code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cccd(String);

const PROVINCES: &[(&str, &str)] = &[
    ("001", "Hà Nội"),
    ("002", "Hà Giang"),
    ("004", "Cao Bằng"),
    ("006", "Bắc Kạn"),
    ("008", "Tuyên Quang"),
    ("010", "Lào Cai"),
    ("011", "Điện Biên"),
    ("012", "Lai Châu"),
    ("014", "Sơn La"),
    ("015", "Yên Bái"),
    ("017", "Hòa Bình"),
    ("019", "Thái Nguyên"),
    ("020", "Lạng Sơn"),
    ("022", "Quảng Ninh"),
    ("024", "Bắc Giang"),
    ("025", "Phú Thọ"),
    ("026", "Vĩnh Phúc"),
    ("027", "Bắc Ninh"),
    ("030", "Hải Dương"),
    ("031", "Hải Phòng"),
    ("033", "Hưng Yên"),
    ("034", "Thái Bình"),
    ("035", "Hà Nam"),
    ("036", "Nam Định"),
    ("037", "Ninh Bình"),
    ("038", "Thanh Hóa"),
    ("040", "Nghệ An"),
    ("042", "Hà Tĩnh"),
    ("044", "Quảng Bình"),
    ("045", "Quảng Trị"),
    ("046", "Thừa Thiên Huế"),
    ("048", "Đà Nẵng"),
    ("049", "Quảng Nam"),
    ("051", "Quảng Ngãi"),
    ("052", "Bình Định"),
    ("054", "Phú Yên"),
    ("056", "Khánh Hòa"),
    ("058", "Ninh Thuận"),
    ("060", "Bình Thuận"),
    ("062", "Kon Tum"),
    ("064", "Gia Lai"),
    ("066", "Đắk Lắk"),
    ("067", "Đắk Nông"),
    ("068", "Lâm Đồng"),
    ("070", "Bình Phước"),
    ("072", "Tây Ninh"),
    ("074", "Bình Dương"),
    ("075", "Đồng Nai"),
    ("077", "Bà Rịa - Vũng Tàu"),
    ("079", "Hồ Chí Minh"),
    ("080", "Long An"),
    ("082", "Tiền Giang"),
    ("083", "Bến Tre"),
    ("084", "Trà Vinh"),
    ("086", "Vĩnh Long"),
    ("087", "Đồng Tháp"),
    ("089", "An Giang"),
    ("091", "Kiên Giang"),
    ("092", "Cần Thơ"),
    ("093", "Hậu Giang"),
    ("094", "Sóc Trăng"),
    ("095", "Bạc Liêu"),
    ("096", "Cà Mau"),
];

/// The name of the province of birth registration for a 3-digit code, if it is one.
///
/// CCCD numbers keep the 63 pre-2025 codes: the code names where the birth
/// was registered, not today's administrative unit.
pub fn province_name(code: &str) -> Option<&'static str> {
    PROVINCES.binary_search_by(|(c, _)| (*c).cmp(code)).ok().map(|i| PROVINCES[i].1)
}

impl Cccd {
    /// Parses a number, ignoring surrounding white space and inner spaces.
    pub fn parse(text: &str) -> Result<Cccd, CccdError> {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let len = digits.chars().count();
        if len != 12 {
            return Err(CccdError::WrongLength(len));
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CccdError::NotDigits);
        }
        if province_name(&digits[..3]).is_none() {
            return Err(CccdError::UnknownProvince(digits[..3].to_string()));
        }
        Ok(Cccd(digits))
    }

    /// The 12 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The province code of birth registration (digits 1-3).
    pub fn province_code(&self) -> &str {
        &self.0[..3]
    }

    fn sex_century_digit(&self) -> u32 {
        u32::from(self.0.as_bytes()[3] - b'0')
    }

    /// The sex encoded in digit 4.
    pub fn sex(&self) -> Sex {
        if self.sex_century_digit().is_multiple_of(2) { Sex::Male } else { Sex::Female }
    }

    /// The birth year encoded in digits 4-6.
    pub fn birth_year(&self) -> i32 {
        let century = 1900 + 100 * (self.sex_century_digit() / 2) as i32;
        let yy: i32 = self.0[4..6].parse().unwrap_or(0);
        century + yy
    }

    /// Checks the number against a record's date of birth and sex.
    pub fn check_against(&self, dob: Option<NaiveDate>, sex: Option<Sex>) -> Result<(), CccdError> {
        if let Some(dob) = dob
            && dob.year() != self.birth_year()
        {
            return Err(CccdError::BirthYearMismatch { in_number: self.birth_year(), in_dob: dob.year() });
        }
        if let Some(sex) = sex
            && sex != self.sex()
        {
            return Err(CccdError::SexMismatch { in_number: self.sex(), in_record: sex });
        }
        Ok(())
    }
}

impl std::fmt::Display for Cccd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn province_table_is_sorted_and_complete() {
        assert!(PROVINCES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(PROVINCES.len(), 63);
        assert_eq!(province_name("001"), Some("Hà Nội"));
        assert_eq!(province_name("096"), Some("Cà Mau"));
        assert_eq!(province_name("003"), None);
    }

    #[test]
    fn decodes_sex_and_century() {
        let male_1966 = Cccd::parse("080066796635").unwrap();
        assert_eq!((male_1966.sex(), male_1966.birth_year()), (Sex::Male, 1966));
        let female_2009 = Cccd::parse("011309233558").unwrap();
        assert_eq!((female_2009.sex(), female_2009.birth_year()), (Sex::Female, 2009));
        let male_2105 = Cccd::parse("001405000001").unwrap();
        assert_eq!((male_2105.sex(), male_2105.birth_year()), (Sex::Male, 2105));
    }

    #[test]
    fn accepts_spaces_between_digit_groups() {
        assert_eq!(Cccd::parse(" 080 166 796635 ").unwrap().as_str(), "080166796635");
    }

    #[test]
    fn rejects_bad_numbers_with_typed_errors() {
        assert_eq!(Cccd::parse("12345"), Err(CccdError::WrongLength(5)));
        assert_eq!(Cccd::parse("0801667966355"), Err(CccdError::WrongLength(13)));
        assert_eq!(Cccd::parse("08016679663a"), Err(CccdError::NotDigits));
        assert_eq!(Cccd::parse("०८०१६६७९६६३५").unwrap_err(), CccdError::NotDigits);
        assert_eq!(Cccd::parse("003166796635"), Err(CccdError::UnknownProvince("003".into())));
        assert_eq!(Cccd::parse("097166796635"), Err(CccdError::UnknownProvince("097".into())));
    }

    #[test]
    fn checks_agreement_with_dob_and_sex() {
        let c = Cccd::parse("080166796635").unwrap(); // female, 1966
        assert!(c.check_against(Some(d("1966-01-01")), Some(Sex::Female)).is_ok());
        assert_eq!(
            c.check_against(Some(d("1967-01-01")), None),
            Err(CccdError::BirthYearMismatch { in_number: 1966, in_dob: 1967 })
        );
        assert_eq!(
            c.check_against(Some(d("2066-01-01")), None),
            Err(CccdError::BirthYearMismatch { in_number: 1966, in_dob: 2066 })
        );
        assert_eq!(
            c.check_against(None, Some(Sex::Male)),
            Err(CccdError::SexMismatch { in_number: Sex::Female, in_record: Sex::Male })
        );
    }

    #[test]
    fn parses_sex_words() {
        assert_eq!(Sex::parse("Nam"), Some(Sex::Male));
        assert_eq!(Sex::parse("Nữ"), Some(Sex::Female));
        assert_eq!(Sex::parse("Nu\u{303}"), Some(Sex::Female));
        assert_eq!(Sex::parse("F"), Some(Sex::Female));
        assert_eq!(Sex::parse("x"), None);
    }
}
