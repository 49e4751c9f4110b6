//! What every raw-data reader yields: a schema, then rows in time order.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};
use crate::gapfill::GapRow;

/// Columns of a source, in store order: numeric columns, then the categories of at most one
/// categorical column (one-hot encoded).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceSchema {
    pub numeric: Vec<String>,
    pub categorical: Option<(String, Vec<String>)>,
    /// Indices into `numeric` of the predicted columns.
    pub targets: Vec<usize>,
    /// Unit of the targets in metrics; `None` means metrics on the normalised scale.
    pub raw_unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawRow {
    /// Seconds since the Unix epoch (the file's clock, read as UTC).
    pub timestamp: i64,
    /// Numeric cells in schema order; NaN where missing.
    pub numeric: Vec<f32>,
    /// Index of the category, `None` where missing or when the source has none.
    pub category: Option<u8>,
    /// Every target cell was observed in the file (filled cells never become targets).
    pub targets_observed: bool,
    /// The reader inserted this row for a time step the file skips.
    pub inserted: bool,
}

impl RawRow {
    pub fn missing(timestamp: i64, columns: usize) -> Self {
        Self {
            timestamp,
            numeric: vec![f32::NAN; columns],
            category: None,
            targets_observed: false,
            inserted: true,
        }
    }

    /// The row's calendar year (UTC); `None` for a timestamp chrono cannot represent, which
    /// no reader yields (they build timestamps from valid dates).
    pub fn year(&self) -> Option<i32> {
        use chrono::Datelike;
        chrono::DateTime::from_timestamp(self.timestamp, 0).map(|t| t.year())
    }
}

impl GapRow for RawRow {
    fn cells(&mut self) -> &mut [f32] {
        &mut self.numeric
    }
}

/// A reader: its schema and its rows.
pub(crate) struct Source {
    pub schema: SourceSchema,
    pub rows: Box<dyn Iterator<Item = Result<RawRow>>>,
}

/// Parses a numeric cell: empty, `NA` and `nan` are missing (NaN); anything else must be a
/// finite number, or the error names the file, line and column.
pub(crate) fn parse_cell(cell: &str, path: &Path, line: u64, column: &str) -> Result<f32> {
    let cell = cell.trim();
    if cell.is_empty() || cell.eq_ignore_ascii_case("NA") || cell.eq_ignore_ascii_case("nan") {
        return Ok(f32::NAN);
    }
    match cell.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Error::NotANumber {
            path: path.into(),
            line,
            column: column.into(),
            cell: cell.into(),
        }),
    }
}

/// The error of a CSV record that could not be read, with its line.
pub(crate) fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line());
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => Error::FieldCount {
            path: path.into(),
            line,
            expected: *expected_len,
            found: *len,
        },
        _ => Error::input(path, format!("line {line}: {e}")),
    }
}

/// Opens a CSV with a header row: the header and the record stream. An empty file is an error
/// that says which header was `expected`.
pub(crate) fn open_csv(
    path: &Path,
    expected: &str,
) -> Result<(csv::StringRecord, csv::StringRecordsIntoIter<File>)> {
    let file = File::open(path).map_err(|e| Error::io(path, "cannot open", e))?;
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
    let header = reader
        .headers()
        .map_err(|e| Error::input(path, format!("line 1: cannot read the header: {e}")))?
        .clone();
    if header.iter().all(|h| h.trim().is_empty()) {
        return Err(Error::EmptyFile {
            path: path.into(),
            detail: format!(": expected a header row `{expected}`"),
        });
    }
    Ok((header, reader.into_records()))
}
