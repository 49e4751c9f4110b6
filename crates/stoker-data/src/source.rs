//! What every raw-data reader yields: a schema, then rows in time order.

use crate::gapfill::GapRow;

/// Columns of a source, in store order: numeric columns, then the categories of at most one
/// categorical column (one-hot encoded).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSchema {
    pub numeric: Vec<String>,
    pub categorical: Option<(String, Vec<String>)>,
    /// Indices into `numeric` of the predicted columns.
    pub targets: Vec<usize>,
    /// Unit of the targets in metrics; `None` means metrics on the normalised scale.
    pub raw_unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
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

    pub fn year(&self) -> i32 {
        use chrono::Datelike;
        chrono::DateTime::from_timestamp(self.timestamp, 0)
            .expect("timestamps come from valid dates")
            .year()
    }
}

impl GapRow for RawRow {
    fn cells(&mut self) -> &mut [f32] {
        &mut self.numeric
    }
}

/// A reader: its schema and its rows.
pub struct Source {
    pub schema: SourceSchema,
    pub rows: Box<dyn Iterator<Item = anyhow::Result<RawRow>>>,
}

/// Parses a numeric cell: empty, `NA` and `nan` are missing (NaN); anything else must be a
/// finite number, or the error names the place.
pub fn parse_cell(cell: &str, place: impl FnOnce() -> String) -> anyhow::Result<f32> {
    let cell = cell.trim();
    if cell.is_empty() || cell.eq_ignore_ascii_case("NA") || cell.eq_ignore_ascii_case("nan") {
        return Ok(f32::NAN);
    }
    match cell.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => anyhow::bail!(
            "{}: `{cell}` is not a number (write NA for missing)",
            place()
        ),
    }
}

/// The error of a CSV record that could not be read, with its line.
pub fn csv_error(path: &std::path::Path, e: csv::Error) -> anyhow::Error {
    let line = e.position().map_or(0, |p| p.line());
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => anyhow::anyhow!(
            "{}: line {line}: expected {expected_len} fields, found {len} (truncated or malformed row)",
            path.display()
        ),
        _ => anyhow::anyhow!("{}: line {line}: {e}", path.display()),
    }
}

/// Opens a CSV with a header row: the header and the record stream. An empty file is an error
/// that says which header was `expected`.
pub fn open_csv(
    path: &std::path::Path,
    expected: &str,
) -> anyhow::Result<(csv::StringRecord, csv::StringRecordsIntoIter<std::fs::File>)> {
    use anyhow::Context;
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
    let header = reader
        .headers()
        .with_context(|| format!("{}: line 1: cannot read the header", path.display()))?
        .clone();
    if header.iter().all(|h| h.trim().is_empty()) {
        anyhow::bail!(
            "{}: empty file: expected a header row `{expected}`",
            path.display()
        );
    }
    Ok((header, reader.into_records()))
}
