//! The registry's file formats (docs/REGISTRY.md): JSON Lines, one household a line as
//! `bench/gen_households.py` writes it, and CSV, one resident a row. Readers stream:
//! they hold one household at a time.

use std::io::{BufRead, Read, Write};

use doorstep_core::form::residence_survey;
use doorstep_core::record::{Household, Member};
use doorstep_core::verification::ReviewStatus;
use doorstep_core::vn_time;
use serde::{Deserialize, Serialize};

use super::problem::RowProblem;
use crate::store::model::ExportedHousehold;

/// A file format of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One household a line, as JSON.
    Jsonl,
    /// One resident a row, household columns repeated.
    Csv,
}

impl Format {
    /// `jsonl` or `csv`.
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "jsonl" | "json" | "ndjson" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    /// The format a file's name says (`.csv`, else JSON Lines).
    pub fn of_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

/// One household read from a file, or why it could not be.
#[derive(Debug)]
pub struct ReadRow {
    /// The line (JSON Lines) or the first record's line (CSV), from 1.
    pub line: u64,
    /// The household id, when the row names one.
    pub household_id: Option<String>,
    /// The household, or the problem that keeps it out.
    pub household: Result<Household, RowProblem>,
    /// Bytes of the file read so far.
    pub bytes_read: u64,
}

/// Reads JSON Lines: one household a line; blank lines are skipped.
pub struct JsonlReader<R> {
    input: R,
    line: u64,
    bytes: u64,
    buf: String,
}

impl<R: BufRead> JsonlReader<R> {
    /// Reads from `input`.
    pub fn new(input: R) -> Self {
        JsonlReader { input, line: 0, bytes: 0, buf: String::new() }
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = std::io::Result<ReadRow>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            let n = match self.input.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => return Some(Err(e)),
            };
            self.line += 1;
            self.bytes += n as u64;
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            let value: serde_json::Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => return Some(Ok(self.row(None, Err(RowProblem::Malformed(e.to_string()))))),
            };
            let id = value.get("household_id").and_then(|v| v.as_str()).map(str::to_string);
            let household = match &id {
                Some(id) if !id.trim().is_empty() => {
                    serde_json::from_value::<Household>(value).map_err(|e| RowProblem::Malformed(e.to_string()))
                }
                _ => Err(RowProblem::MissingHouseholdId),
            };
            return Some(Ok(self.row(id, household)));
        }
    }
}

impl<R> JsonlReader<R> {
    fn row(&self, household_id: Option<String>, household: Result<Household, RowProblem>) -> ReadRow {
        ReadRow { line: self.line, household_id, household, bytes_read: self.bytes }
    }
}

/// One CSV row: a resident with its household's columns (docs/REGISTRY.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct CsvRow {
    household_id: String,
    #[serde(alias = "area")]
    area_code: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    head_member_id: Option<String>,
    #[serde(default)]
    member_id: Option<String>,
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    dob: Option<String>,
    #[serde(default)]
    sex: Option<String>,
    #[serde(default)]
    cccd: Option<String>,
    #[serde(default)]
    relation: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    residence_status: Option<String>,
    #[serde(default)]
    occupation: Option<String>,
    #[serde(default)]
    same_person_as: Option<String>,
}

/// The columns of a resident row, in order: the import reads them, the export writes them
/// and adds `form_version`, `updated_at` and `cursor`.
pub const CSV_COLUMNS: &[&str] = &[
    "household_id",
    "area_code",
    "address",
    "head_member_id",
    "member_id",
    "full_name",
    "dob",
    "sex",
    "cccd",
    "relation",
    "phone",
    "residence_status",
    "occupation",
    "same_person_as",
];

/// The columns the CSV export adds to [`CSV_COLUMNS`] (the import ignores them).
pub const EXPORT_COLUMNS: [&str; 11] = [
    "resident_verification",
    "household_verification",
    "verified_by",
    "verified_at",
    "edited_after_verification",
    "review_status",
    "review_comment",
    "form_version",
    "updated_at",
    "cursor",
    "moved_out",
];

/// A cell as a spreadsheet must not run it: a leading `= + - @` (or tab, CR) gets a `'`.
pub fn formula_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}").into() } else { cell.into() }
}

/// Undoes [`formula_safe`] on a cell read back.
fn unquote(cell: Option<String>) -> Option<String> {
    let cell = cell?.trim().to_string();
    let plain = match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest.to_string(),
        _ => cell,
    };
    (!plain.is_empty()).then_some(plain)
}

/// Reads CSV: one resident a row; the rows of a household come together (a household id
/// seen again later starts a new version of that household, which replaces the first).
pub struct CsvReader<R: Read> {
    reader: csv::Reader<Counting<R>>,
    headers: Option<csv::StringRecord>,
    bytes: std::rc::Rc<std::cell::Cell<u64>>,
    pending: Option<(u64, Result<CsvRow, RowProblem>)>,
    /// A read of the file failed: the import stops with it.
    failed: Option<std::io::Error>,
}

/// Counts the bytes a reader hands on (the CSV parser's own position is behind a borrow).
struct Counting<R> {
    inner: R,
    count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

impl<R: Read> CsvReader<R> {
    /// Reads from `input`, whose first record is the header.
    pub fn new(input: R) -> Self {
        let count = std::rc::Rc::new(std::cell::Cell::new(0));
        let counting = Counting { inner: input, count: count.clone() };
        let reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(counting);
        CsvReader { reader, headers: None, bytes: count, pending: None, failed: None }
    }

    /// The next record and its own line; a record that does not read is a problem of its line.
    fn next_record(&mut self) -> Option<(u64, Result<CsvRow, RowProblem>)> {
        let malformed = |e: csv::Error| RowProblem::Malformed(e.to_string());
        if self.headers.is_none() {
            match self.reader.headers() {
                Ok(h) => self.headers = Some(h.clone()),
                Err(e) => return Some((1, Err(malformed(e)))),
            }
        }
        let mut record = csv::StringRecord::new();
        match self.reader.read_record(&mut record) {
            Ok(false) => None,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                Some((line, record.deserialize(self.headers.as_ref()).map_err(malformed)))
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                if e.is_io_error() {
                    self.failed = Some(std::io::Error::other(e));
                    return None;
                }
                Some((line, Err(malformed(e))))
            }
        }
    }
}

impl<R: Read> Iterator for CsvReader<R> {
    type Item = std::io::Result<ReadRow>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = match self.pending.take() {
            Some(pending) => Some(pending),
            None => self.next_record(),
        };
        let Some((line, first)) = next else { return self.failed.take().map(Err) };
        let first = match first {
            Ok(row) => row,
            Err(problem) => {
                return Some(Ok(ReadRow {
                    line,
                    household_id: None,
                    household: Err(problem),
                    bytes_read: self.bytes.get(),
                }));
            }
        };
        let mut rows = vec![first];
        loop {
            match self.next_record() {
                None => break,
                Some((_, Ok(row))) if row.household_id == rows[0].household_id => rows.push(row),
                Some(other) => {
                    self.pending = Some(other);
                    break;
                }
            }
        }
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        let id = rows[0].household_id.clone();
        let household = household_of(rows);
        Some(Ok(ReadRow {
            line,
            household_id: (!id.is_empty()).then_some(id),
            household,
            bytes_read: self.bytes.get(),
        }))
    }
}

/// A household from its rows (each a resident; a row without a member id holds no resident).
fn household_of(rows: Vec<CsvRow>) -> Result<Household, RowProblem> {
    let first = &rows[0];
    if first.household_id.is_empty() {
        return Err(RowProblem::MissingHouseholdId);
    }
    for row in &rows[1..] {
        for (field, same) in [
            ("area_code", row.area_code == first.area_code),
            ("address", row.address == first.address),
            ("head_member_id", row.head_member_id == first.head_member_id),
        ] {
            if !same {
                return Err(RowProblem::InconsistentHousehold(field.into()));
            }
        }
    }
    let mut household = Household {
        household_id: first.household_id.clone(),
        area_code: first.area_code.clone(),
        address: unquote(Some(first.address.clone())).unwrap_or_default(),
        head_member_id: unquote(first.head_member_id.clone()),
        ..Household::default()
    };
    for row in rows {
        let Some(member_id) = unquote(row.member_id) else { continue };
        household.members.push(Member {
            member_id,
            full_name: unquote(row.full_name).unwrap_or_default(),
            dob: unquote(row.dob),
            sex: unquote(row.sex),
            cccd: unquote(row.cccd),
            relation: unquote(row.relation),
            phone: unquote(row.phone),
            residence_status: unquote(row.residence_status),
            occupation: unquote(row.occupation),
            document_photo: None,
            same_person_as: unquote(row.same_person_as),
            verification: None,
        });
    }
    Ok(household)
}

/// One household as the JSON Lines export writes it: the household's own fields, then
/// where it stands.
#[derive(Serialize)]
struct ExportLine<'a> {
    #[serde(flatten)]
    household: &'a Household,
    review_status: ReviewStatus,
    edited_after_verification: bool,
    form_version: &'a str,
    updated_at: String,
    cursor: i64,
    moved_out: bool,
}

/// Writes exported households in a format: a CSV header first, then a line (JSON) or a row
/// per resident (CSV) each.
pub struct ExportWriter<W: Write> {
    out: ExportSink<W>,
    form_version: String,
}

enum ExportSink<W: Write> {
    Jsonl(W),
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> ExportWriter<W> {
    /// Starts an export to `out`.
    pub fn new(out: W, format: Format) -> std::io::Result<Self> {
        let form_version = residence_survey().version.clone();
        let out = match format {
            Format::Jsonl => ExportSink::Jsonl(out),
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                let mut header: Vec<&str> = CSV_COLUMNS.to_vec();
                header.extend(EXPORT_COLUMNS);
                w.write_record(&header)?;
                ExportSink::Csv(Box::new(w))
            }
        };
        Ok(ExportWriter { out, form_version })
    }

    /// Writes one household (or, for a household that moved out of the area, its id, the
    /// area it went to and `moved_out`).
    pub fn write(&mut self, e: &ExportedHousehold) -> std::io::Result<()> {
        let updated_at = vn_time::rfc3339(e.updated_at);
        if e.moved_out {
            return self.write_departure(e, updated_at);
        }
        match &mut self.out {
            ExportSink::Jsonl(w) => {
                let line = ExportLine {
                    household: &e.household,
                    review_status: e.household.review_status(),
                    edited_after_verification: e.household.edited_after_verification(),
                    form_version: &self.form_version,
                    updated_at,
                    cursor: e.cursor,
                    moved_out: false,
                };
                serde_json::to_writer(&mut *w, &line)?;
                w.write_all(b"\n")
            }
            ExportSink::Csv(w) => {
                let h = &e.household;
                let cursor = e.cursor.to_string();
                let opt = |v: &Option<String>| v.clone().unwrap_or_default();
                let mut row = |m: Option<&Member>| -> std::io::Result<()> {
                    let cells: Vec<String> = vec![
                        h.household_id.clone(),
                        h.area_code.clone(),
                        h.address.clone(),
                        opt(&h.head_member_id),
                        m.map(|m| m.member_id.clone()).unwrap_or_default(),
                        m.map(|m| m.full_name.clone()).unwrap_or_default(),
                        m.map(|m| opt(&m.dob)).unwrap_or_default(),
                        m.map(|m| opt(&m.sex)).unwrap_or_default(),
                        m.map(|m| opt(&m.cccd)).unwrap_or_default(),
                        m.map(|m| opt(&m.relation)).unwrap_or_default(),
                        m.map(|m| opt(&m.phone)).unwrap_or_default(),
                        m.map(|m| opt(&m.residence_status)).unwrap_or_default(),
                        m.map(|m| opt(&m.occupation)).unwrap_or_default(),
                        m.map(|m| opt(&m.same_person_as)).unwrap_or_default(),
                        m.and_then(|m| m.verification.as_ref()).map(|v| v.state.code().to_string()).unwrap_or_default(),
                        h.verification.as_ref().map(|v| v.state.code().to_string()).unwrap_or_default(),
                        h.verification.as_ref().map(|v| format!("{}@{}", v.by, v.device)).unwrap_or_default(),
                        h.verification.as_ref().map(|v| vn_time::rfc3339(v.at)).unwrap_or_default(),
                        h.edited_after_verification().to_string(),
                        h.review_status().code().to_string(),
                        h.review.as_ref().and_then(|r| r.comment.clone()).unwrap_or_default(),
                        self.form_version.clone(),
                        updated_at.clone(),
                        cursor.clone(),
                        "false".into(),
                    ];
                    w.write_record(cells.iter().map(|c| formula_safe(c).into_owned()))?;
                    Ok(())
                };
                if h.members.is_empty() {
                    row(None)?;
                }
                for m in &h.members {
                    row(Some(m))?;
                }
                Ok(())
            }
        }
    }

    fn write_departure(&mut self, e: &ExportedHousehold, updated_at: String) -> std::io::Result<()> {
        let h = &e.household;
        match &mut self.out {
            ExportSink::Jsonl(w) => {
                let line = serde_json::json!({
                    "household_id": h.household_id,
                    "area_code": h.area_code,
                    "moved_out": true,
                    "updated_at": updated_at,
                    "cursor": e.cursor,
                });
                serde_json::to_writer(&mut *w, &line)?;
                w.write_all(b"\n")
            }
            ExportSink::Csv(w) => {
                let width = CSV_COLUMNS.len() + EXPORT_COLUMNS.len();
                let mut cells = vec![String::new(); width];
                cells[0] = h.household_id.clone();
                cells[1] = h.area_code.clone();
                cells[width - 3] = updated_at;
                cells[width - 2] = e.cursor.to_string();
                cells[width - 1] = "true".into();
                w.write_record(cells.iter().map(|c| formula_safe(c).into_owned())).map_err(std::io::Error::other)
            }
        }
    }

    /// Flushes what is written.
    pub fn finish(self) -> std::io::Result<W> {
        match self.out {
            ExportSink::Jsonl(mut w) => {
                w.flush()?;
                Ok(w)
            }
            ExportSink::Csv(w) => w.into_inner().map_err(|e| e.into_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all<I: Iterator<Item = std::io::Result<ReadRow>>>(rows: I) -> Vec<ReadRow> {
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn csv_rows_of_a_household_come_together_and_formula_safe_cells_read_back() {
        let text = "household_id,area_code,address,head_member_id,member_id,full_name,phone\n\
                    h1,01.001,\"Số 1, Thôn Đông\",m0,m0,Lê Văn An,'+84912000111\n\
                    h1,01.001,\"Số 1, Thôn Đông\",m0,m1,Lê Thị Bình,\n\
                    h2,01.001,Số 2,,,,\n\
                    h3,01.001,Số 3,m0,m0,\"Trần \"\"Ba\"\"\",\n";
        let rows = read_all(CsvReader::new(text.as_bytes()));
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 4, 5]);
        let h1 = rows[0].household.as_ref().unwrap();
        assert_eq!(h1.address, "Số 1, Thôn Đông");
        assert_eq!(h1.members.len(), 2);
        assert_eq!(h1.members[0].phone.as_deref(), Some("+84912000111"));
        assert_eq!(h1.members[1].phone, None);
        assert!(rows[1].household.as_ref().unwrap().members.is_empty(), "a row without a member id holds no resident");
        assert_eq!(rows[2].household.as_ref().unwrap().members[0].full_name, "Trần \"Ba\"");
    }

    #[test]
    fn csv_rows_that_disagree_on_the_household_are_one_refusal() {
        let text = "household_id,area_code,address,member_id,full_name\nh1,01.001,Số 1,m0,A\nh1,01.001,Số 9,m1,B\n";
        let rows = read_all(CsvReader::new(text.as_bytes()));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].household, Err(RowProblem::InconsistentHousehold("address".into())));
    }

    #[test]
    fn json_lines_skip_blank_lines_and_keep_their_numbers() {
        let text = "\n{\"household_id\": \"h1\", \"area\": \"01.001\", \"address\": \"x\"}\n\nnot json\n{\"area\": \"01.001\"}\n";
        let rows = read_all(JsonlReader::new(text.as_bytes()));
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 4, 5]);
        assert_eq!(rows[0].household.as_ref().unwrap().area_code, "01.001");
        assert!(matches!(rows[1].household, Err(RowProblem::Malformed(_))));
        assert_eq!(rows[2].household, Err(RowProblem::MissingHouseholdId));
        assert_eq!(rows[2].bytes_read, text.len() as u64);
    }

    #[test]
    fn an_exported_row_is_formula_safe() {
        assert_eq!(formula_safe("=1+1"), "'=1+1");
        assert_eq!(formula_safe("-5"), "'-5");
        assert_eq!(formula_safe("Lê"), "Lê");
        assert_eq!(unquote(Some("'=1+1".into())).as_deref(), Some("=1+1"));
        assert_eq!(unquote(Some("'Lê".into())).as_deref(), Some("'Lê"));
    }
}
