//! Reader for ETT-format CSVs: a timestamp column (`date`, first) then numeric columns, every
//! one of them an input and a target. Rows are taken as they are (the literature's protocol
//! counts rows, not hours), but time must move forward.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

use crate::error::{Error, Result};
use crate::source::{RawRow, Source, SourceSchema, csv_error, open_csv, parse_cell};

const FORMATS: [&str; 3] = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M"];

pub(crate) struct EttReader {
    path: PathBuf,
    records: csv::StringRecordsIntoIter<File>,
    columns: Vec<String>,
    last_timestamp: Option<i64>,
    data_rows: usize,
}

impl EttReader {
    pub fn open(path: &Path) -> Result<Self> {
        let (header, records) = open_csv(path, "date,<column>,…")?;
        if header.len() < 2 {
            return Err(Error::input(
                path,
                "line 1: expected a timestamp column and at least one numeric column",
            ));
        }
        Ok(Self {
            path: path.into(),
            columns: header
                .iter()
                .skip(1)
                .map(|h| h.trim().to_string())
                .collect(),
            records,
            last_timestamp: None,
            data_rows: 0,
        })
    }

    pub fn into_source(self) -> Source {
        let n = self.columns.len();
        Source {
            schema: SourceSchema {
                numeric: self.columns.clone(),
                categorical: None,
                targets: (0..n).collect(),
                raw_unit: None,
            },
            rows: Box::new(self),
        }
    }

    fn parse(&mut self, record: &csv::StringRecord) -> Result<RawRow> {
        let line = record.position().map_or(0, |p| p.line());
        let path = self.path.as_path();
        let cell = record[0].trim();
        let timestamp = FORMATS
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(cell, f).ok())
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(cell, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
            .ok_or_else(|| {
                Error::input(
                    path,
                    format!("line {line}, column 1: `{cell}` is not a date (expected YYYY-MM-DD HH:MM:SS)"),
                )
            })?
            .and_utc()
            .timestamp();
        if let Some(last) = self.last_timestamp
            && timestamp <= last
        {
            return Err(Error::input(
                path,
                format!(
                    "line {line}: time goes backwards or repeats (`{cell}`); rows must be in time order"
                ),
            ));
        }
        self.last_timestamp = Some(timestamp);
        let mut numeric = Vec::with_capacity(self.columns.len());
        for (i, name) in self.columns.iter().enumerate() {
            numeric.push(parse_cell(&record[i + 1], path, line, name)?);
        }
        Ok(RawRow {
            timestamp,
            targets_observed: numeric.iter().all(|v| !v.is_nan()),
            numeric,
            category: None,
            inserted: false,
        })
    }
}

impl Iterator for EttReader {
    type Item = Result<RawRow>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.records.next() {
            None if self.data_rows == 0 => Some(Err(Error::input(
                &self.path,
                "no data rows after the header",
            ))),
            None => None,
            Some(Err(e)) => Some(Err(csv_error(&self.path, e))),
            Some(Ok(record)) => {
                self.data_rows += 1;
                Some(self.parse(&record))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Result<(SourceSchema, Vec<RawRow>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ett.csv");
        std::fs::write(&path, body).unwrap();
        let source = EttReader::open(&path)?.into_source();
        Ok((source.schema, source.rows.collect::<Result<_>>()?))
    }

    #[test]
    fn any_column_names_all_targets() {
        let (schema, rows) =
            read("date,a,b\n2016-07-01 00:00:00,1.5,NA\n2016-07-01 01:00:00,2,3\n").unwrap();
        assert_eq!(schema.numeric, vec!["a", "b"]);
        assert_eq!(schema.targets, vec![0, 1]);
        assert_eq!(rows[1].timestamp - rows[0].timestamp, 3600);
        assert!(!rows[0].targets_observed && rows[1].targets_observed);
    }

    #[test]
    fn bad_date_and_cell_name_the_place() {
        let msg = format!("{:#}", read("date,a\nyesterday,1\n").unwrap_err());
        assert!(
            msg.contains("ett.csv: line 2, column 1") && msg.contains("yesterday"),
            "{msg}"
        );
        let msg = format!("{:#}", read("date,a\n2016-07-01 00:00:00,x\n").unwrap_err());
        assert!(msg.contains("line 2, column `a`"), "{msg}");
        let msg = format!(
            "{:#}",
            read("date,a\n2016-07-01 01:00:00,1\n2016-07-01 00:00:00,1\n").unwrap_err()
        );
        assert!(msg.contains("line 3: time goes backwards"), "{msg}");
    }
}
