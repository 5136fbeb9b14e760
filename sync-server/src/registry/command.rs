//! The `import` and `export` commands: a file streamed through the store in batches,
//! with a progress bar and a report of refused rows.

use std::io::{BufReader, Write};
use std::path::Path;
use std::time::Instant;

use doorstep_core::area::Area;
use doorstep_core::record::Household;

use super::formats::{CsvReader, ExportWriter, Format, JsonlReader, ReadRow};
use super::import::ImportPlan;
use super::problem::{RowProblem, check_household};
use crate::storage::{ImportOutcome, Storage};

/// Households written in one transaction.
pub const IMPORT_BATCH: usize = 2000;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Households read from the file (good and bad).
    pub read: u64,
    /// New households.
    pub created: u64,
    /// Households the registry changed.
    pub updated: u64,
    /// Households with nothing new.
    pub unchanged: u64,
    /// Rows refused, each in the report.
    pub refused: u64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A batch of checked households with their lines, or the reader's end.
enum Batch {
    Rows(Vec<(u64, Household)>, Vec<(u64, Option<String>, RowProblem)>, u64),
    Failed(std::io::Error),
}

/// Reads `path` on a thread of its own, checking each household, and hands on batches of at
/// most [`IMPORT_BATCH`] (no household id twice in one), two batches ahead at most: memory
/// stays flat whatever the file's size.
fn read_batches(path: &Path, format: Format, area: String) -> std::io::Result<tokio::sync::mpsc::Receiver<Batch>> {
    let file = std::fs::File::open(path)?;
    let (send, receive) = tokio::sync::mpsc::channel(2);
    std::thread::spawn(move || {
        let rows: Box<dyn Iterator<Item = std::io::Result<ReadRow>>> = match format {
            Format::Jsonl => Box::new(JsonlReader::new(BufReader::with_capacity(1 << 16, file))),
            Format::Csv => Box::new(CsvReader::new(BufReader::with_capacity(1 << 16, file))),
        };
        let mut good: Vec<(u64, Household)> = Vec::new();
        let mut bad = Vec::new();
        let mut ids = std::collections::HashSet::new();
        let mut bytes = 0;
        for row in rows {
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    let _ = send.blocking_send(Batch::Failed(e));
                    return;
                }
            };
            bytes = row.bytes_read;
            // Workflow marks in a file (an export read back) are not the registry's to set.
            match row.household.and_then(|h| check_household(&h, &area).map(|()| h.without_workflow())) {
                Ok(h) => {
                    if !ids.insert(h.household_id.clone()) {
                        // The same household again: the earlier version goes in first.
                        let full = std::mem::take(&mut good);
                        ids.clear();
                        ids.insert(h.household_id.clone());
                        if send.blocking_send(Batch::Rows(full, std::mem::take(&mut bad), bytes)).is_err() {
                            return;
                        }
                    }
                    good.push((row.line, h));
                }
                Err(problem) => bad.push((row.line, row.household_id, problem)),
            }
            // Refused rows are handed on too, so that a file of bad rows holds no more memory.
            if good.len() >= IMPORT_BATCH || bad.len() >= IMPORT_BATCH {
                ids.clear();
                let full = std::mem::take(&mut good);
                if send.blocking_send(Batch::Rows(full, std::mem::take(&mut bad), bytes)).is_err() {
                    return;
                }
            }
        }
        let _ = send.blocking_send(Batch::Rows(good, bad, bytes));
    });
    Ok(receive)
}

/// The report of refused rows: CSV with the line, household, a stable code and the reason in
/// Vietnamese and English.
struct Report {
    out: csv::Writer<std::fs::File>,
}

impl Report {
    fn create(path: &Path) -> Result<Report, BoxError> {
        let mut out = csv::Writer::from_path(path)?;
        out.write_record(["line", "household_id", "code", "reason_vi", "reason_en"])?;
        Ok(Report { out })
    }

    fn refuse(&mut self, line: u64, household_id: Option<&str>, problem: &RowProblem) -> Result<(), BoxError> {
        let id = household_id.unwrap_or_default().to_string();
        let (vi, en) = (problem.vi(), problem.en());
        let record = [line.to_string(), id, problem.code().to_string(), vi, en];
        self.out.write_record(record.iter().map(|c| super::formats::formula_safe(c).into_owned()))?;
        Ok(())
    }
}

/// A prepared batch waiting to be written: the plan, its rows with their lines, and how far
/// into the file it reaches.
type InFlight = (ImportPlan, Vec<(u64, Household)>, u64);

/// Imports the registry's file `path` into `area`: good rows are written, a refused row goes
/// to the report at `report` with its line and reason. `progress` draws a bar on stderr.
pub async fn import_file(
    storage: &dyn Storage,
    area: &Area,
    path: &Path,
    format: Format,
    report: &Path,
    now: impl Fn() -> i64,
    progress: bool,
) -> Result<ImportSummary, BoxError> {
    let size = std::fs::metadata(path)?.len();
    let bar = if progress { indicatif::ProgressBar::new(size) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut report = Report::create(report)?;
    let mut batches = read_batches(path, format, area.to_string())?;
    let mut summary = ImportSummary::default();
    // One batch is written while the next is read and prepared (the store checks, as it
    // writes, that a prepared batch still matches what it holds).
    let mut in_flight: Option<InFlight> = None;
    loop {
        let received = batches.recv().await;
        let end = received.is_none();
        let next = match received {
            Some(Batch::Rows(good, bad, bytes)) => {
                summary.read += (good.len() + bad.len()) as u64;
                for (line, id, problem) in &bad {
                    report.refuse(*line, id.as_deref(), problem)?;
                }
                summary.refused += bad.len() as u64;
                Some((good, bytes))
            }
            Some(Batch::Failed(e)) => return Err(format!("reading {} failed: {e}", path.display()).into()),
            None => None,
        };
        let plan_next = async {
            match next {
                Some((good, bytes)) if !good.is_empty() => {
                    let households: Vec<Household> = good.iter().map(|(_, h)| h.clone()).collect();
                    let plan = storage.plan_import(area.to_string(), households, now()).await?;
                    Ok::<_, BoxError>(Some((plan, good, bytes)))
                }
                Some((_, bytes)) => {
                    bar.set_position(bytes);
                    Ok(None)
                }
                None => Ok(None),
            }
        };
        let (applied, planned) = match in_flight.take() {
            Some((plan, good, bytes)) => {
                let (applied, planned) = tokio::join!(storage.apply_import(plan, now()), plan_next);
                (Some((applied?, good, bytes)), planned?)
            }
            None => (None, plan_next.await?),
        };
        if let Some((outcomes, good, bytes)) = applied {
            for ((line, h), outcome) in good.iter().zip(outcomes) {
                match outcome {
                    ImportOutcome::Created => summary.created += 1,
                    ImportOutcome::Updated => summary.updated += 1,
                    ImportOutcome::Unchanged => summary.unchanged += 1,
                    ImportOutcome::HeldElsewhere(held) => {
                        summary.refused += 1;
                        report.refuse(*line, Some(&h.household_id), &RowProblem::HeldElsewhere(held))?;
                    }
                }
            }
            bar.set_position(bytes);
            bar.set_message(format!("{} households", summary.created + summary.updated + summary.unchanged));
        }
        in_flight = planned;
        if end {
            break;
        }
    }
    bar.finish_and_clear();
    report.out.flush()?;
    // A bulk load: the planner's statistics are brought up to it before devices sync.
    if summary.created + summary.updated > 0 {
        storage.refresh_statistics().await?;
    }
    Ok(summary)
}

/// Exports the households of `area` changed after `since` to `out`, a page at a time.
/// Returns the next cursor and how many households were written.
pub async fn export_to<W: Write>(
    storage: &dyn Storage,
    area: &Area,
    since: i64,
    format: Format,
    out: W,
) -> Result<(i64, u64), BoxError> {
    let mut writer = ExportWriter::new(out, format)?;
    let (mut cursor, mut written) = (since, 0);
    loop {
        let page = storage.export_page(area.to_string(), cursor, super::export::MAX_EXPORT_PAGE).await?;
        if page.households.is_empty() {
            break;
        }
        for h in &page.households {
            writer.write(h)?;
        }
        written += page.households.len() as u64;
        cursor = page.next;
    }
    writer.finish()?;
    Ok((cursor, written))
}

/// How long an import or export took, and its rate.
pub fn rate(n: u64, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64();
    format!("{secs:.1} s, {:.0} households/s", n as f64 / secs.max(1e-9))
}
