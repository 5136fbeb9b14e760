//! Validating answers against a form: every problem at once, each with its path.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::definition::{Field, FieldType, FormDefinition, Localized};
use super::expr::{RowLookup, Scope, Value};
use crate::identity::Cccd;

/// What kind of problem an answer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IssueKind {
    /// A required answer is missing.
    Required,
    /// The answer has the wrong type for its field.
    WrongType,
    /// A select answer is not one of the choices.
    NotAChoice,
    /// A CCCD answer is not a valid number.
    InvalidCccd,
    /// The field's constraint does not hold.
    Constraint,
    /// A repeat group has too few rows.
    TooFewRows,
    /// A repeat group has too many rows.
    TooManyRows,
}

/// One problem with the answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationIssue {
    /// Where: `address`, `members[2].cccd`.
    pub path: String,
    /// The field's name.
    pub field: String,
    /// What kind of problem.
    pub kind: IssueKind,
    /// The message, in Vietnamese and English.
    pub message: Localized,
}

fn to_value(json: Option<&Json>) -> Value {
    match json {
        None | Some(Json::Null) => Value::Null,
        Some(Json::Bool(b)) => Value::Bool(*b),
        Some(Json::Number(n)) => n.as_f64().map_or(Value::Null, Value::Num),
        Some(Json::String(s)) => Value::Str(s.clone()),
        Some(Json::Array(items)) => {
            Value::List(items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect())
        }
        Some(Json::Object(_)) => Value::Null,
    }
}

fn to_json(v: Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(b),
        Value::Num(n) if n.fract() == 0.0 && n.abs() < 9e15 => Json::from(n as i64),
        Value::Num(n) => serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number),
        Value::Str(s) => Json::String(s),
        Value::List(l) => Json::Array(l.into_iter().map(Json::String).collect()),
    }
}

struct FieldScope<'a> {
    top: &'a Map<String, Json>,
    row: Option<&'a Map<String, Json>>,
    /// The current field's answer, converted only when an expression asks for it.
    current: Option<&'a Json>,
    today: NaiveDate,
}

impl Scope for FieldScope<'_> {
    fn current(&self) -> Value {
        to_value(self.current)
    }

    fn field(&self, name: &str) -> Value {
        match self.row.and_then(|r| r.get(name)) {
            Some(v) => to_value(Some(v)),
            None => to_value(self.top.get(name)),
        }
    }

    fn rows(&self, repeat: &str) -> Vec<RowLookup<'_>> {
        let Some(Json::Array(rows)) = self.top.get(repeat) else { return Vec::new() };
        rows.iter().map(|row| Box::new(move |f: &str| to_value(row.get(f))) as RowLookup<'_>).collect()
    }

    fn member_exists(&self, id: &str) -> bool {
        let Some(Json::Array(rows)) = self.top.get("members") else { return false };
        rows.iter().any(|r| r.get("member_id").and_then(Json::as_str) == Some(id))
    }

    fn today(&self) -> NaiveDate {
        self.today
    }
}

fn is_empty(v: Option<&Json>) -> bool {
    match v {
        None | Some(Json::Null) => true,
        Some(Json::String(s)) => s.trim().is_empty(),
        Some(Json::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// Checks that a non-empty answer has its field's type; returns the problem if not.
fn type_problem(field: &Field, v: &Json) -> Option<(IssueKind, Localized)> {
    let wrong = |vi: &str, en: &str| Some((IssueKind::WrongType, Localized::new(vi, en)));
    let in_choices = |s: &str| field.choices.iter().any(|c| c.value == s);
    match field.kind {
        FieldType::Text | FieldType::Photo => {
            if v.is_string() {
                None
            } else {
                wrong("Phải là chuỗi ký tự", "Must be text")
            }
        }
        FieldType::Integer => {
            if v.is_i64() || v.is_u64() {
                None
            } else {
                wrong("Phải là số nguyên", "Must be a whole number")
            }
        }
        FieldType::Decimal => {
            if v.is_number() {
                None
            } else {
                wrong("Phải là số", "Must be a number")
            }
        }
        // `YYYY-MM-DD` exactly: ten characters in that format.
        FieldType::Date => match v.as_str().filter(|s| s.len() == 10).map(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d"))
        {
            Some(Ok(_)) => None,
            _ => wrong("Phải là ngày hợp lệ (YYYY-MM-DD)", "Must be a valid date (YYYY-MM-DD)"),
        },
        FieldType::SelectOne => match v.as_str() {
            Some(s) if in_choices(s) => None,
            Some(_) => Some((
                IssueKind::NotAChoice,
                Localized::new("Không có trong danh sách lựa chọn", "Not one of the choices"),
            )),
            None => wrong("Phải là một lựa chọn", "Must be one choice"),
        },
        FieldType::SelectMultiple => match v.as_array() {
            Some(items) if items.iter().all(|i| i.as_str().is_some_and(in_choices)) => None,
            Some(_) => Some((
                IssueKind::NotAChoice,
                Localized::new("Có giá trị không có trong danh sách lựa chọn", "A value is not one of the choices"),
            )),
            None => wrong("Phải là danh sách lựa chọn", "Must be a list of choices"),
        },
        FieldType::Geopoint => {
            let lat = v.get("lat").and_then(Json::as_f64);
            let lon = v.get("lon").and_then(Json::as_f64);
            match (lat, lon) {
                (Some(lat), Some(lon)) if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => None,
                _ => wrong("Phải là toạ độ hợp lệ", "Must be a valid location (lat, lon)"),
            }
        }
        FieldType::Cccd => match v.as_str().map(Cccd::parse) {
            Some(Ok(_)) => None,
            Some(Err(e)) => Some((
                IssueKind::InvalidCccd,
                Localized::new(format!("Số CCCD không hợp lệ: {e}"), format!("Invalid CCCD number: {e}")),
            )),
            None => wrong("Số CCCD phải là chuỗi 12 chữ số", "A CCCD number must be a 12-digit string"),
        },
        FieldType::Repeat => {
            if v.is_array() {
                None
            } else {
                wrong("Phải là danh sách", "Must be a list of rows")
            }
        }
    }
}

struct Validator<'a> {
    top: &'a Map<String, Json>,
    today: NaiveDate,
    issues: Vec<ValidationIssue>,
}

impl Validator<'_> {
    fn push(&mut self, path: String, field: &Field, kind: IssueKind, message: Localized) {
        self.issues.push(ValidationIssue { path, field: field.name.clone(), kind, message });
    }

    fn group(&mut self, fields: &[Field], obj: &Map<String, Json>, row: Option<&Map<String, Json>>, prefix: &str) {
        for field in fields {
            // The path is written only for a field that has a problem.
            let path = || format!("{prefix}{}", field.name);
            let value = obj.get(&field.name);
            let scope = FieldScope { top: self.top, row, current: value, today: self.today };
            if let Some(rel) = &field.relevant
                && !rel.eval(&scope).truthy()
            {
                continue;
            }
            let required = field.always_required || field.required.as_ref().is_some_and(|r| r.eval(&scope).truthy());
            if is_empty(value) {
                if required {
                    self.push(
                        path(),
                        field,
                        IssueKind::Required,
                        Localized::new("Bắt buộc phải nhập", "This field is required"),
                    );
                }
                if field.kind == FieldType::Repeat {
                    self.rows(field, &[], &path());
                }
                continue;
            }
            let Some(value) = value else { continue };
            if let Some((kind, message)) = type_problem(field, value) {
                self.push(path(), field, kind, message);
                continue;
            }
            if let Some(c) = &field.constraint
                && !c.eval(&scope).truthy()
            {
                let msg = field
                    .constraint_message
                    .clone()
                    .unwrap_or_else(|| Localized::new("Giá trị không hợp lệ", "Invalid value"));
                self.push(path(), field, IssueKind::Constraint, msg);
            }
            if let Json::Array(rows) = value
                && field.kind == FieldType::Repeat
            {
                self.rows(field, rows, &path());
            }
        }
    }

    fn rows(&mut self, field: &Field, rows: &[Json], path: &str) {
        let n = rows.len() as u32;
        if let Some(min) = field.min_count
            && n < min
        {
            self.push(
                path.to_string(),
                field,
                IssueKind::TooFewRows,
                Localized::new(format!("Cần ít nhất {min} dòng"), format!("Needs at least {min} rows")),
            );
        }
        if let Some(max) = field.max_count
            && n > max
        {
            self.push(
                path.to_string(),
                field,
                IssueKind::TooManyRows,
                Localized::new(format!("Tối đa {max} dòng"), format!("At most {max} rows")),
            );
        }
        for (i, row) in rows.iter().enumerate() {
            let row_path = format!("{path}[{i}]");
            match row.as_object() {
                Some(obj) => self.group(&field.fields, obj, Some(obj), &format!("{row_path}.")),
                None => {
                    self.push(
                        row_path,
                        field,
                        IssueKind::WrongType,
                        Localized::new("Dòng phải là đối tượng", "A row must be an object"),
                    );
                }
            }
        }
    }
}

fn calculate_group(fields: &[Field], top: &Map<String, Json>, row: &mut Map<String, Json>, today: NaiveDate) {
    for field in fields {
        if let Some(calc) = &field.calculate {
            let scope = FieldScope { top, row: Some(row), current: row.get(&field.name), today };
            let v = to_json(calc.eval(&scope));
            row.insert(field.name.clone(), v);
        }
    }
}

impl FormDefinition {
    /// Fills in every calculated field, repeat rows first, then the top level.
    ///
    /// A row's calculations see the top level as it was before that repeat group's rows
    /// were calculated (and the row's earlier calculations); the top level's see the
    /// answers as they were before any top-level calculation. Only rows are copied.
    pub fn calculate(&self, answers: &mut Json, today: NaiveDate) {
        let Some(top) = answers.as_object_mut() else { return };
        for field in self.fields.iter().filter(|f| f.kind == FieldType::Repeat) {
            let Some(Json::Array(rows)) = top.get(&field.name) else { continue };
            let new_rows: Vec<Json> = rows
                .iter()
                .map(|row| match row {
                    Json::Object(obj) => {
                        let mut obj = obj.clone();
                        calculate_group(&field.fields, top, &mut obj, today);
                        Json::Object(obj)
                    }
                    other => other.clone(),
                })
                .collect();
            top.insert(field.name.clone(), Json::Array(new_rows));
        }
        let values: Vec<(String, Json)> = self
            .fields
            .iter()
            .filter_map(|field| {
                let calc = field.calculate.as_ref()?;
                let scope = FieldScope { top, row: None, current: top.get(&field.name), today };
                Some((field.name.clone(), to_json(calc.eval(&scope))))
            })
            .collect();
        top.extend(values);
    }

    /// Validates answers (a JSON object) and returns every problem at once.
    ///
    /// Calculations run first, on a copy, so constraints can use them.
    pub fn validate(&self, answers: &Json, today: NaiveDate) -> Vec<ValidationIssue> {
        self.validate_owned(answers.clone(), today)
    }

    /// [`FormDefinition::validate`] on answers the caller gives away (no copy is made).
    pub fn validate_owned(&self, mut answers: Json, today: NaiveDate) -> Vec<ValidationIssue> {
        self.calculate(&mut answers, today);
        let Some(top) = answers.as_object() else {
            return vec![ValidationIssue {
                path: String::new(),
                field: String::new(),
                kind: IssueKind::WrongType,
                message: Localized::new("Câu trả lời phải là đối tượng JSON", "Answers must be a JSON object"),
            }];
        };
        let mut v = Validator { top, today, issues: Vec::new() };
        v.group(&self.fields, top, None, "");
        v.issues
    }
}
