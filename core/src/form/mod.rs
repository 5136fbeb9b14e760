//! Form definitions and validation, in the spirit of XLSForm/XForms.
//!
//! A form is JSON: typed fields with required, constraint, relevance and
//! calculation rules written in a small expression language ([`Expr`]), and
//! repeat groups. [`FormDefinition::validate`] returns every problem at once.
//! [`residence_survey`] is the built-in household survey.

mod definition;
mod expr;
mod validate;

pub use definition::{Choice, Field, FieldType, FormDefinition, Localized, MAX_FORM_LEN, RequiredRule};
pub use expr::{Expr, FUNCTIONS, MAX_DEPTH, MAX_EXPRESSION_LEN, RowLookup, Scope, Value};
pub use validate::{IssueKind, ValidationIssue};

use std::sync::OnceLock;

/// The JSON text of the built-in residence survey.
pub const RESIDENCE_SURVEY_JSON: &str = include_str!("residence_survey.json");

/// The built-in residence survey: household, members, life events; labels in Vietnamese and English.
pub fn residence_survey() -> &'static FormDefinition {
    static FORM: OnceLock<FormDefinition> = OnceLock::new();
    FORM.get_or_init(|| FormDefinition::from_json(RESIDENCE_SURVEY_JSON).expect("the built-in form is valid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use serde_json::json;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    fn good() -> serde_json::Value {
        json!({
            "area_code": "01.001.00001",
            "address": "Số 12, Thôn Đông, xã Tân Lập",
            "head_member_id": "m1",
            "members": [
                {"member_id": "m1", "full_name": "Lê Thanh Vân", "dob": "1966-01-01", "sex": "F",
                 "cccd": "080166796635", "relation": "head", "phone": "0942867218",
                 "residence_status": "permanent", "occupation": "Nông dân"},
                {"member_id": "m2", "full_name": "Lê Ngọc Linh", "dob": "2024-09-22", "sex": "F",
                 "relation": "child", "residence_status": "permanent"}
            ],
            "events": [{"kind": "born", "member_id": "m2", "date": "2024-09-22"}]
        })
    }

    #[test]
    fn builtin_form_parses_with_both_languages() {
        let f = residence_survey();
        assert_eq!(f.id, "residence_survey");
        let members = f.field("members").unwrap();
        for field in f.fields.iter().chain(members.fields.iter()) {
            assert!(!field.label.vi.is_empty() && !field.label.en.is_empty(), "{}", field.name);
        }
        let kinds: Vec<FieldType> = f.fields.iter().chain(members.fields.iter()).map(|x| x.kind).collect();
        for k in [
            FieldType::Text,
            FieldType::Integer,
            FieldType::Date,
            FieldType::SelectOne,
            FieldType::Geopoint,
            FieldType::Photo,
            FieldType::Cccd,
            FieldType::Repeat,
        ] {
            assert!(kinds.contains(&k), "{k:?}");
        }
    }

    #[test]
    fn a_good_household_has_no_issues() {
        assert_eq!(residence_survey().validate(&good(), today()), vec![]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut a = good();
        a["address"] = json!("");
        a["members"][0]["cccd"] = json!("080167796635");
        a["members"][0]["phone"] = json!("09-1234");
        a["members"][0]["sex"] = json!("X");
        a["members"][1]["dob"] = json!("2030-01-01");
        a["members"][1]["relation"] = json!(null);
        a["head_member_id"] = json!("m9");
        a["events"][0]["kind"] = json!("moved_out");
        a["location"] = json!({"lat": 123.0, "lon": 1.0});
        let issues = residence_survey().validate(&a, today());
        let got: Vec<(&str, IssueKind)> = issues.iter().map(|i| (i.path.as_str(), i.kind)).collect();
        assert_eq!(
            got,
            vec![
                ("address", IssueKind::Required),
                ("head_member_id", IssueKind::Constraint),
                ("location", IssueKind::WrongType),
                ("members[0].sex", IssueKind::NotAChoice),
                ("members[0].cccd", IssueKind::Constraint),
                ("members[0].phone", IssueKind::Constraint),
                ("members[1].dob", IssueKind::Constraint),
                ("members[1].relation", IssueKind::Required),
                ("events[0].place", IssueKind::Required),
            ]
        );
        assert!(issues.iter().all(|i| !i.message.vi.is_empty() && !i.message.en.is_empty()));
    }

    #[test]
    fn cccd_required_from_fourteen_and_checked() {
        let mut a = good();
        a["members"][0]["cccd"] = json!(null);
        let issues = residence_survey().validate(&a, today());
        assert_eq!(issues.len(), 1);
        assert_eq!((issues[0].path.as_str(), issues[0].kind), ("members[0].cccd", IssueKind::Required));
        a["members"][0]["cccd"] = json!("999166796635");
        let issues = residence_survey().validate(&a, today());
        assert_eq!(issues[0].kind, IssueKind::InvalidCccd);
        assert!(issues[0].message.en.contains("province"), "{:?}", issues[0].message);
    }

    #[test]
    fn skip_logic_and_calculation() {
        let mut a = good();
        a["members"][1]["occupation"] = json!(12);
        // occupation is not relevant for a two-year-old, so its wrong type is not checked.
        assert_eq!(residence_survey().validate(&a, today()), vec![]);
        residence_survey().calculate(&mut a, today());
        assert_eq!(a["members"][0]["age"], json!(60));
        assert_eq!(a["members"][1]["age"], json!(2));
    }

    #[test]
    fn every_field_type_is_checked() {
        let form = FormDefinition::from_json(
            r#"{"id": "t", "version": "1", "title": {"vi": "t", "en": "t"}, "fields": [
              {"name": "n", "type": "integer", "label": {"vi": "n", "en": "n"}},
              {"name": "d", "type": "decimal", "label": {"vi": "d", "en": "d"}, "constraint": ". >= 0.5"},
              {"name": "langs", "type": "select_multiple", "label": {"vi": "l", "en": "l"},
               "constraint": "count-selected(.) <= 2 and not(selected(., 'fr'))",
               "choices": [{"value": "vi", "label": {"vi": "vi", "en": "vi"}},
                           {"value": "en", "label": {"vi": "en", "en": "en"}},
                           {"value": "fr", "label": {"vi": "fr", "en": "fr"}}]},
              {"name": "p", "type": "photo", "label": {"vi": "p", "en": "p"}},
              {"name": "g", "type": "geopoint", "label": {"vi": "g", "en": "g"}},
              {"name": "c", "type": "cccd", "label": {"vi": "c", "en": "c"}},
              {"name": "total", "type": "decimal", "label": {"vi": "t", "en": "t"}, "calculate": "${n} * ${d}"}
            ]}"#,
        )
        .unwrap();
        let ok = json!({"n": 3, "d": 1.5, "langs": ["vi", "en"], "p": "att-1", "g": {"lat": 21.0, "lon": 105.8}, "c": "001190012345"});
        assert_eq!(form.validate(&ok, today()), vec![]);
        let mut calculated = ok.clone();
        form.calculate(&mut calculated, today());
        assert_eq!(calculated["total"], json!(4.5));
        let bad = json!({"n": 3.5, "d": "x", "langs": ["vi", "de"], "p": 7, "g": {"lat": 91.0, "lon": 0.0}, "c": "12"});
        let kinds: Vec<(String, IssueKind)> =
            form.validate(&bad, today()).into_iter().map(|i| (i.path, i.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("n".to_string(), IssueKind::WrongType),
                ("d".to_string(), IssueKind::WrongType),
                ("langs".to_string(), IssueKind::NotAChoice),
                ("p".to_string(), IssueKind::WrongType),
                ("g".to_string(), IssueKind::WrongType),
                ("c".to_string(), IssueKind::InvalidCccd),
            ]
        );
        let constrained = json!({"d": 0.1, "langs": ["vi", "en", "fr"]});
        let kinds: Vec<IssueKind> = form.validate(&constrained, today()).into_iter().map(|i| i.kind).collect();
        assert_eq!(kinds, vec![IssueKind::Constraint, IssueKind::Constraint]);
    }

    #[test]
    fn repeat_counts_and_wrong_shapes() {
        let mut a = good();
        a["members"] = json!([]);
        let kinds: Vec<IssueKind> = residence_survey().validate(&a, today()).iter().map(|i| i.kind).collect();
        assert!(kinds.contains(&IssueKind::Required));
        a["members"] = json!("not a list");
        let issues = residence_survey().validate(&a, today());
        assert!(issues.iter().any(|i| i.path == "members" && i.kind == IssueKind::WrongType));
        let issues = residence_survey().validate(&json!([1, 2]), today());
        assert_eq!(issues[0].kind, IssueKind::WrongType);
    }
}
