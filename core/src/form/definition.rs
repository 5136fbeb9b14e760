//! Form definitions: fields, types, rules, and the JSON they are written in.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::expr::Expr;
use crate::error::{Error, FormLocation, Result};

/// Text in Vietnamese and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Localized {
    /// Vietnamese.
    pub vi: String,
    /// English.
    pub en: String,
}

impl Localized {
    /// Both languages at once.
    pub fn new(vi: impl Into<String>, en: impl Into<String>) -> Localized {
        Localized { vi: vi.into(), en: en.into() }
    }
}

/// The type of a field's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Free text.
    Text,
    /// A whole number.
    Integer,
    /// A decimal number.
    Decimal,
    /// An ISO date, `YYYY-MM-DD`.
    Date,
    /// One value from `choices`.
    SelectOne,
    /// Any values from `choices`, as a JSON array.
    SelectMultiple,
    /// `{"lat": .., "lon": .., "accuracy": ..}`.
    Geopoint,
    /// An attachment id.
    Photo,
    /// A 12-digit CCCD number.
    Cccd,
    /// A repeat group: a JSON array of objects with `fields`.
    Repeat,
}

/// One allowed answer of a select field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// The stored value.
    pub value: String,
    /// What the officer sees.
    pub label: Localized,
}

/// Whether a field must be answered: always, never, or when an expression holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequiredRule {
    /// Always or never.
    Always(bool),
    /// When this expression is true.
    When(String),
}

impl Default for RequiredRule {
    fn default() -> Self {
        RequiredRule::Always(false)
    }
}

/// A field as written in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(rename = "type")]
    kind: FieldType,
    label: Localized,
    #[serde(default)]
    hint: Option<Localized>,
    #[serde(default)]
    required: RequiredRule,
    #[serde(default)]
    constraint: Option<String>,
    #[serde(default)]
    constraint_message: Option<Localized>,
    #[serde(default)]
    relevant: Option<String>,
    #[serde(default)]
    calculate: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    fields: Vec<RawField>,
    #[serde(default)]
    min_count: Option<u32>,
    #[serde(default)]
    max_count: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForm {
    id: String,
    version: String,
    title: Localized,
    fields: Vec<RawField>,
}

/// A field with its rules parsed.
#[derive(Debug, Clone)]
pub struct Field {
    /// Name, unique within its group; the key in answers.
    pub name: String,
    /// Answer type.
    pub kind: FieldType,
    /// Label.
    pub label: Localized,
    /// Optional hint.
    pub hint: Option<Localized>,
    /// Always required (`Some(true)`), never, or by expression.
    pub required: Option<Expr>,
    /// `true` when required unconditionally.
    pub always_required: bool,
    /// The constraint the answer must meet.
    pub constraint: Option<Expr>,
    /// Message shown when the constraint fails.
    pub constraint_message: Option<Localized>,
    /// Skip logic: the field is asked only when this holds.
    pub relevant: Option<Expr>,
    /// A computed value.
    pub calculate: Option<Expr>,
    /// Allowed answers of select fields.
    pub choices: Vec<Choice>,
    /// Fields of a repeat group.
    pub fields: Vec<Field>,
    /// Fewest rows of a repeat group.
    pub min_count: Option<u32>,
    /// Most rows of a repeat group.
    pub max_count: Option<u32>,
}

/// A parsed, checked form definition.
#[derive(Debug, Clone)]
pub struct FormDefinition {
    /// Form id.
    pub id: String,
    /// Form version.
    pub version: String,
    /// Title.
    pub title: Localized,
    /// Top-level fields.
    pub fields: Vec<Field>,
    source: String,
}

/// Largest form definition accepted, in bytes.
pub const MAX_FORM_LEN: usize = 1 << 20;

fn malformed(path: &str, message: impl Into<String>) -> Error {
    Error::MalformedForm {
        location: FormLocation { path: path.to_string(), line: None, column: None },
        message: message.into(),
    }
}

fn parse_rule(path: &str, which: &str, src: &Option<String>) -> Result<Option<Expr>> {
    match src {
        None => Ok(None),
        Some(s) => Expr::parse(s).map(Some).map_err(|e| match e {
            Error::Expression { offset, message } => {
                malformed(&format!("{path}.{which}"), format!("{message} (at offset {offset} of {s:?})"))
            }
            other => other,
        }),
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn build_fields(raw: Vec<RawField>, base: &str, nested: bool) -> Result<Vec<Field>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, f) in raw.into_iter().enumerate() {
        let path = format!("{base}[{i}]");
        if !is_identifier(&f.name) {
            return Err(malformed(&format!("{path}.name"), format!("{:?} is not a valid field name", f.name)));
        }
        if !seen.insert(f.name.clone()) {
            return Err(malformed(&format!("{path}.name"), format!("duplicate field name {:?}", f.name)));
        }
        let is_select = matches!(f.kind, FieldType::SelectOne | FieldType::SelectMultiple);
        if is_select && f.choices.is_empty() {
            return Err(malformed(&format!("{path}.choices"), "a select field needs choices"));
        }
        if !is_select && !f.choices.is_empty() {
            return Err(malformed(&format!("{path}.choices"), "only select fields take choices"));
        }
        let mut values = HashSet::new();
        for (j, c) in f.choices.iter().enumerate() {
            if c.value.is_empty() || c.value.contains(char::is_whitespace) || !values.insert(&c.value) {
                return Err(malformed(
                    &format!("{path}.choices[{j}].value"),
                    "choice values must be unique, non-empty and without spaces",
                ));
            }
        }
        let is_repeat = f.kind == FieldType::Repeat;
        if is_repeat && nested {
            return Err(malformed(&path, "repeat groups cannot nest"));
        }
        if is_repeat && f.fields.is_empty() {
            return Err(malformed(&format!("{path}.fields"), "a repeat group needs fields"));
        }
        if !is_repeat && !f.fields.is_empty() {
            return Err(malformed(&format!("{path}.fields"), "only repeat groups take fields"));
        }
        if let (Some(lo), Some(hi)) = (f.min_count, f.max_count)
            && lo > hi
        {
            return Err(malformed(&format!("{path}.min_count"), "min_count exceeds max_count"));
        }
        let (required, always_required) = match &f.required {
            RequiredRule::Always(b) => (None, *b),
            RequiredRule::When(s) => (parse_rule(&path, "required", &Some(s.clone()))?, false),
        };
        let fields = build_fields(f.fields, &format!("{path}.fields"), true)?;
        out.push(Field {
            required,
            always_required,
            constraint: parse_rule(&path, "constraint", &f.constraint)?,
            constraint_message: f.constraint_message,
            relevant: parse_rule(&path, "relevant", &f.relevant)?,
            calculate: parse_rule(&path, "calculate", &f.calculate)?,
            name: f.name,
            kind: f.kind,
            label: f.label,
            hint: f.hint,
            choices: f.choices,
            fields,
            min_count: f.min_count,
            max_count: f.max_count,
        });
    }
    Ok(out)
}

/// Every `${name}` a field's rules use must name a field in its own group or at the top level.
fn check_refs(fields: &[Field], top: &[Field], base: &str) -> Result<()> {
    for (i, f) in fields.iter().enumerate() {
        let path = format!("{base}[{i}]");
        for (which, rule) in [
            ("required", &f.required),
            ("constraint", &f.constraint),
            ("relevant", &f.relevant),
            ("calculate", &f.calculate),
        ] {
            let Some(expr) = rule else { continue };
            for name in expr.field_refs() {
                let known = fields.iter().chain(top.iter()).any(|g| g.name == name);
                if !known {
                    return Err(malformed(&format!("{path}.{which}"), format!("refers to unknown field ${{{name}}}")));
                }
            }
        }
        if f.kind == FieldType::Repeat {
            check_refs(&f.fields, top, &format!("{path}.fields"))?;
        }
    }
    Ok(())
}

impl FormDefinition {
    /// Parses and checks a JSON form definition.
    ///
    /// A JSON error reports its path, line and column; a semantic error (bad
    /// expression, unknown reference, duplicate name, select without choices)
    /// reports the path of the offending field.
    pub fn from_json(json: &str) -> Result<FormDefinition> {
        if json.len() > MAX_FORM_LEN {
            return Err(malformed("", format!("definition is {} bytes, over {MAX_FORM_LEN}", json.len())));
        }
        let de = &mut serde_json::Deserializer::from_str(json);
        let raw: RawForm = serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.inner();
            Error::MalformedForm {
                location: FormLocation {
                    path: e.path().to_string(),
                    line: Some(inner.line()),
                    column: Some(inner.column()),
                },
                message: inner.to_string(),
            }
        })?;
        if raw.fields.is_empty() {
            return Err(malformed("fields", "a form needs at least one field"));
        }
        let fields = build_fields(raw.fields, "fields", false)?;
        check_refs(&fields, &fields, "fields")?;
        Ok(FormDefinition { id: raw.id, version: raw.version, title: raw.title, fields, source: json.to_string() })
    }

    /// The JSON this form was parsed from.
    pub fn to_json(&self) -> &str {
        &self.source
    }

    /// A top-level field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(json: &str) -> (FormLocation, String) {
        match FormDefinition::from_json(json) {
            Err(Error::MalformedForm { location, message }) => (location, message),
            other => panic!("expected MalformedForm, got {other:?}"),
        }
    }

    const L: &str = r#""label": {"vi": "x", "en": "x"}"#;

    fn form(fields: &str) -> String {
        format!(r#"{{"id": "f", "version": "1", "title": {{"vi": "t", "en": "t"}}, "fields": [{fields}]}}"#)
    }

    #[test]
    fn json_errors_carry_path_line_and_column() {
        let (loc, _) = err_of("{\n  \"id\": \"f\",\n  \"version\": 1\n}");
        assert_eq!(loc.path, "version");
        assert_eq!(loc.line, Some(3));
        let (loc, msg) = err_of(&form(&format!(r#"{{"name": "a", "type": "texte", {L}}}"#)));
        assert_eq!(loc.path, "fields[0].type");
        assert!(msg.contains("texte"), "{msg}");
        let (loc, _) = err_of(&form(&format!(r#"{{"name": "a", "type": "text", {L}, "colour": 1}}"#)));
        assert_eq!(loc.path, "fields[0].colour");
        let (loc, _) = err_of("{ not json");
        assert_eq!(loc.line, Some(1));
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let cases = [
            (format!(r#"{{"name": "a", "type": "text", {L}, "constraint": "1 +"}}"#), "fields[0].constraint"),
            (format!(r#"{{"name": "a", "type": "text", {L}, "relevant": "${{nope}} = 1"}}"#), "fields[0].relevant"),
            (format!(r#"{{"name": "a", "type": "select_one", {L}}}"#), "fields[0].choices"),
            (
                format!(r#"{{"name": "a", "type": "text", {L}}}, {{"name": "a", "type": "text", {L}}}"#),
                "fields[1].name",
            ),
            (format!(r#"{{"name": "1a", "type": "text", {L}}}"#), "fields[0].name"),
            (format!(r#"{{"name": "r", "type": "repeat", {L}}}"#), "fields[0].fields"),
            (
                format!(
                    r#"{{"name": "r", "type": "repeat", {L}, "fields": [{{"name": "s", "type": "repeat", {L}, "fields": [{{"name": "x", "type": "text", {L}}}]}}]}}"#
                ),
                "fields[0].fields[0]",
            ),
            (
                format!(
                    r#"{{"name": "s", "type": "select_one", {L}, "choices": [{{"value": "a", {L}}}, {{"value": "a", {L}}}]}}"#
                ),
                "fields[0].choices[1].value",
            ),
        ];
        for (fields, want) in cases {
            let (loc, msg) = err_of(&form(&fields));
            assert_eq!(loc.path, want, "{msg}");
        }
        let (loc, _) = err_of(&form(""));
        assert_eq!(loc.path, "fields");
    }

    #[test]
    fn repeat_fields_may_refer_to_top_level() {
        let f = form(&format!(
            r#"{{"name": "area", "type": "text", {L}}}, {{"name": "m", "type": "repeat", {L}, "fields": [{{"name": "x", "type": "text", {L}, "relevant": "${{area}} != ''"}}]}}"#
        ));
        let def = FormDefinition::from_json(&f).unwrap();
        assert_eq!(def.field("m").unwrap().fields.len(), 1);
    }

    #[test]
    fn oversized_definition_is_refused() {
        let big = " ".repeat(MAX_FORM_LEN + 1);
        let (loc, _) = err_of(&big);
        assert_eq!(loc.path, "");
    }
}
