//! Reader for the UCI Beijing PM2.5 CSV (`No,year,month,day,hour,pm2.5,DEWP,TEMP,PRES,cbwd,Iws,Is,Ir`).
//!
//! Streams rows; every error names the file, the line and the column. Hours absent from the
//! file are yielded as all-missing rows so that row index and time stay in step.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::source::{RawRow, Source, SourceSchema, csv_error, open_csv, parse_cell};

/// Numeric columns, in store order. `pm2.5` is the target.
pub const NUMERIC: [&str; 7] = ["pm2.5", "DEWP", "TEMP", "PRES", "Iws", "Is", "Ir"];
/// Wind-direction categories of `cbwd` (cv = calm and variable).
pub const WIND: [&str; 4] = ["NE", "NW", "SE", "cv"];
const TIME: [&str; 4] = ["year", "month", "day", "hour"];
pub const STEP_SECONDS: i64 = 3600;

/// Whether the reader uses a header column (`No`, the row counter, is part of the format).
pub(crate) fn is_read(name: &str) -> bool {
    name == "No" || name == "cbwd" || TIME.contains(&name) || NUMERIC.contains(&name)
}

pub(crate) struct Pm25Reader {
    path: PathBuf,
    records: csv::StringRecordsIntoIter<File>,
    /// Column index of each of TIME, NUMERIC and `cbwd`.
    time_cols: [usize; 4],
    numeric_cols: [usize; 7],
    wind_col: usize,
    next_timestamp: Option<i64>,
    /// A parsed row waiting while missing hours before it are yielded.
    pending: Option<RawRow>,
    data_rows: usize,
}

impl Pm25Reader {
    pub fn open(path: &Path) -> Result<Self> {
        let (header, records) = open_csv(path, "No,year,month,day,hour,pm2.5,…")?;
        let find = |name: &str| {
            header.iter().position(|h| h.trim() == name).ok_or_else(|| {
                Error::input(path, format!("line 1: missing column `{name}` in header"))
            })
        };
        let mut time_cols = [0; 4];
        for (slot, name) in time_cols.iter_mut().zip(TIME) {
            *slot = find(name)?;
        }
        let mut numeric_cols = [0; 7];
        for (slot, name) in numeric_cols.iter_mut().zip(NUMERIC) {
            *slot = find(name)?;
        }
        Ok(Self {
            path: path.into(),
            wind_col: find("cbwd")?,
            records,
            time_cols,
            numeric_cols,
            next_timestamp: None,
            pending: None,
            data_rows: 0,
        })
    }

    pub fn into_source(self) -> Source {
        Source {
            schema: SourceSchema {
                numeric: NUMERIC.iter().map(|s| s.to_string()).collect(),
                categorical: Some(("cbwd".into(), WIND.iter().map(|s| s.to_string()).collect())),
                targets: vec![0],
                raw_unit: Some("µg/m³".into()),
            },
            rows: Box::new(self),
        }
    }

    fn parse(&mut self, record: &csv::StringRecord) -> Result<RawRow> {
        let line = record.position().map_or(0, |p| p.line());
        let path = self.path.as_path();
        let int = |col: usize, name: &str| -> Result<u32> {
            let cell = record[col].trim();
            cell.parse::<u32>().map_err(|_| {
                Error::input(
                    path,
                    format!("line {line}, column `{name}`: `{cell}` is not a whole number"),
                )
            })
        };
        let [y, m, d, h] = self.time_cols;
        let (year, month, day, hour) = (
            int(y, "year")?,
            int(m, "month")?,
            int(d, "day")?,
            int(h, "hour")?,
        );
        let timestamp = NaiveDate::from_ymd_opt(year as i32, month, day)
            .and_then(|date| date.and_hms_opt(hour, 0, 0))
            .ok_or_else(|| {
                Error::input(
                    path,
                    format!(
                        "line {line}: {year}-{month}-{day} {hour}:00 is not a valid date and hour"
                    ),
                )
            })?
            .and_utc()
            .timestamp();
        let mut row = RawRow::missing(timestamp, NUMERIC.len());
        row.inserted = false;
        for (i, (&col, name)) in self.numeric_cols.iter().zip(NUMERIC).enumerate() {
            row.numeric[i] = parse_cell(&record[col], path, line, name)?;
        }
        row.targets_observed = !row.numeric[0].is_nan();
        let cell = record[self.wind_col].trim();
        if !(cell.is_empty() || cell == "NA") {
            let idx = WIND.iter().position(|w| *w == cell).ok_or_else(|| {
                Error::input(
                    path,
                    format!("line {line}, column `cbwd`: unknown wind direction `{cell}` (expected one of {WIND:?})"),
                )
            })?;
            row.category = Some(idx as u8);
        }
        if let Some(expected) = self.next_timestamp
            && timestamp < expected
        {
            return Err(Error::input(
                path,
                format!(
                    "line {line}: time goes backwards or repeats ({year}-{month:02}-{day:02} {hour:02}:00); rows must be in hourly order"
                ),
            ));
        }
        Ok(row)
    }
}

impl Iterator for Pm25Reader {
    type Item = Result<RawRow>;

    fn next(&mut self) -> Option<Self::Item> {
        let row = match self.pending.take() {
            Some(row) => row,
            None => match self.records.next() {
                None if self.data_rows == 0 => {
                    return Some(Err(Error::input(
                        &self.path,
                        "no data rows after the header",
                    )));
                }
                None => return None,
                Some(Err(e)) => return Some(Err(csv_error(&self.path, e))),
                Some(Ok(record)) => match self.parse(&record) {
                    Ok(row) => {
                        self.data_rows += 1;
                        row
                    }
                    Err(e) => return Some(Err(e)),
                },
            },
        };
        match self.next_timestamp {
            Some(expected) if row.timestamp > expected => {
                // An hour the file skips: yield it as missing, keep the parsed row for later.
                self.pending = Some(row);
                self.next_timestamp = Some(expected + STEP_SECONDS);
                Some(Ok(RawRow::missing(expected, NUMERIC.len())))
            }
            _ => {
                self.next_timestamp = Some(row.timestamp + STEP_SECONDS);
                Some(Ok(row))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "No,year,month,day,hour,pm2.5,DEWP,TEMP,PRES,cbwd,Iws,Is,Ir\n";

    fn read(body: &str) -> Result<Vec<RawRow>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pm.csv");
        std::fs::write(&path, body).unwrap();
        Pm25Reader::open(&path)?.collect()
    }

    #[test]
    fn parses_rows_missing_values_and_fills_skipped_hours() {
        let rows = read(&format!(
            "{HEADER}1,2010,1,1,0,NA,-21,-11,1021,NW,1.79,0,0\n2,2010,1,1,2,129,-16,-4,1020,SE,1.79,0,0\n"
        ))
        .unwrap();
        assert_eq!(rows.len(), 3, "hour 1 is inserted as missing");
        assert!(rows[0].numeric[0].is_nan() && !rows[0].targets_observed);
        assert_eq!(rows[0].category, Some(1));
        assert!(rows[1].inserted && !rows[0].inserted);
        assert!(rows[1].numeric.iter().all(|v| v.is_nan()));
        assert_eq!(rows[2].numeric[0], 129.0);
        assert_eq!(rows[2].timestamp - rows[0].timestamp, 7200);
    }

    #[test]
    fn non_numeric_cell_names_line_and_column() {
        let err = read(&format!(
            "{HEADER}1,2010,1,1,0,12,-21,warm,1021,NW,1.79,0,0\n"
        ))
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("pm.csv: line 2, column `TEMP`") && msg.contains("warm"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_row_names_line() {
        let err = read(&format!(
            "{HEADER}1,2010,1,1,0,12,-21,-11,1021,NW,1.79,0,0\n2,2010,1,1,1,13,-2"
        ))
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("line 3") && msg.contains("expected 13 fields, found 7"),
            "{msg}"
        );
    }

    #[test]
    fn empty_file_and_header_only_are_errors() {
        let msg = format!("{:#}", read("").unwrap_err());
        assert!(msg.contains("pm.csv: empty file"), "{msg}");
        let msg = format!("{:#}", read(HEADER).unwrap_err());
        assert!(msg.contains("no data rows"), "{msg}");
    }

    #[test]
    fn time_going_backwards_is_an_error() {
        let err = read(&format!(
            "{HEADER}1,2010,1,1,5,1,1,1,1,NW,1,0,0\n2,2010,1,1,4,1,1,1,1,NW,1,0,0\n"
        ))
        .unwrap_err();
        assert!(format!("{err:#}").contains("line 3: time goes backwards"));
    }
}
