//! Vietnamese name normalization for matching and search.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Folds a name to its matching key: no diacritics, đ as d, lower case,
/// single spaces, punctuation dropped. NFC and NFD input give the same key.
///
/// `"  NGUYỄN   Thị  Hồng-Nhung "` becomes `"nguyen thi hong nhung"`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending_space = false;
    for c in name.nfd() {
        if is_combining_mark(c) {
            continue;
        }
        let c = match c {
            'đ' | 'Đ' | 'ð' | 'Ð' => 'd',
            _ => c,
        };
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_lowercase());
        } else {
            pending_space = true;
        }
    }
    out
}

/// The tokens of a normalized name, in order.
pub fn name_tokens(name: &str) -> Vec<String> {
    normalize_name(name).split(' ').filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

/// Cleans a name for display and storage: NFC, trimmed, single spaces.
/// Diacritics and case are kept as typed.
pub fn display_name(name: &str) -> String {
    name.nfc().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_diacritics_case_and_spacing() {
        assert_eq!(normalize_name("Nguyễn Thị Hồng Nhung"), "nguyen thi hong nhung");
        assert_eq!(normalize_name("  NGUYỄN   thị\tHồng  nhung "), "nguyen thi hong nhung");
        assert_eq!(normalize_name("Đặng Văn Đạt"), "dang van dat");
        assert_eq!(normalize_name("Hồng-Nhung"), "hong nhung");
    }

    #[test]
    fn nfc_and_nfd_agree() {
        let nfc: String = "Nguyễn Thị Hồng Nhung".nfc().collect();
        let nfd: String = "Nguyễn Thị Hồng Nhung".nfd().collect();
        assert_ne!(nfc, nfd);
        assert_eq!(normalize_name(&nfc), normalize_name(&nfd));
        assert_eq!(display_name(&nfd), nfc);
    }

    #[test]
    fn tokens_split_on_space() {
        assert_eq!(name_tokens("Lê  Văn An"), vec!["le", "van", "an"]);
        assert!(name_tokens("  ").is_empty());
    }
}
