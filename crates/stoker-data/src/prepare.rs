//! The prepare stage, in two streaming passes over a tabular source (PM2.5, ETT):
//! 1. raw rows → gap filling → Parquet shards, while fitting normalisation on train rows;
//! 2. shards → normalised feature rows → window store; then the manifest ([`crate::finish`]).
//!
//! An ANC recording ([`crate::anc`]) has its own first pass and shares the second.
//! Everything is written into a staging directory that replaces `data/` only when complete.

use std::path::Path;

use stoker_artifact::atomic::StagingDir;
use stoker_artifact::manifest::{QualityReport, SourceFile, sha256_file};
use stoker_artifact::{DatasetManifest, Feature, FeatureKind, RunLock, SourceConfig, Splits};

use crate::error::{Error, Result};
use crate::ett::EttReader;
use crate::finish::{Staged, finish};
use crate::gapfill::GapFiller;
use crate::pm25::Pm25Reader;
use crate::request::PrepareRequest;
use crate::shards::ShardWriter;
use crate::source::{RawRow, Source, SourceSchema};
use crate::stats::RunningStats;

/// Which split a row belongs to, decided as rows stream by.
enum SplitRule {
    ByYear {
        val_start: i32,
        test_start: i32,
    },
    ByRows {
        train: usize,
        val: usize,
        test: usize,
    },
}

/// How a tabular source is read and split.
struct Plan {
    source: Source,
    rule: SplitRule,
    max_gap: usize,
    calendar: bool,
}

/// Prepares the request's data into `req.out_dir`, replacing it only when complete, and returns
/// the manifest written. The tabular sources (PM2.5, ETT) stream through two passes; an ANC
/// recording is read whole, its disturbance simulated, and shares the second pass.
pub fn prepare(req: &PrepareRequest) -> Result<DatasetManifest> {
    let _lock = RunLock::for_stage_dir(&req.out_dir)?;
    let plan = match req.config.data.source {
        SourceConfig::Pm25 {
            val_start_year,
            test_start_year,
            max_gap,
            calendar,
        } => {
            if val_start_year >= test_start_year {
                return Err(Error::Config(format!(
                    "`val_start_year` ({val_start_year}) must be before `test_start_year` ({test_start_year})"
                )));
            }
            Plan {
                source: Pm25Reader::open(&req.input)?.into_source(),
                rule: SplitRule::ByYear {
                    val_start: val_start_year,
                    test_start: test_start_year,
                },
                max_gap,
                calendar,
            }
        }
        SourceConfig::Ett {
            train_rows,
            val_rows,
            test_rows,
            max_gap,
        } => Plan {
            source: EttReader::open(&req.input)?.into_source(),
            rule: SplitRule::ByRows {
                train: train_rows,
                val: val_rows,
                test: test_rows,
            },
            max_gap,
            calendar: false,
        },
        SourceConfig::Anc(ref source) => return crate::anc::prepare_anc(req, source),
    };
    prepare_tabular(req, plan)
}

fn prepare_tabular(req: &PrepareRequest, plan: Plan) -> Result<DatasetManifest> {
    let Plan {
        source: Source { schema, rows },
        rule,
        max_gap,
        calendar,
    } = plan;
    let staging = StagingDir::new(&req.out_dir)?;
    let (sha256, bytes) = sha256_file(&req.input)?;

    // Pass 1: raw rows → shards, train statistics, split boundaries.
    let numeric_names: Vec<&str> = schema.numeric.iter().map(String::as_str).collect();
    let category_names: Vec<&str> = schema.categorical.iter().map(|(n, _)| n.as_str()).collect();
    let mut shards = ShardWriter::new(
        staging.path(),
        &numeric_names,
        &category_names,
        req.config.data.shard_rows,
    );
    let mut pass1 = Pass1::new(&schema, rule);
    let mut filler = GapFiller::new(schema.numeric.len(), max_gap);
    for row in rows {
        let row = row?;
        pass1.count_missing(&row);
        if let Some(out) = filler.push(row) {
            pass1.take(&out, &schema, &mut shards)?;
        }
    }
    let filled = filler.filled;
    for out in filler.finish() {
        pass1.take(&out, &schema, &mut shards)?;
    }
    let shards = shards.finish()?;
    let splits = pass1.splits(&req.input)?;
    let staged = Staged {
        sources: vec![SourceFile {
            path: req.input.display().to_string(),
            sha256,
            bytes,
        }],
        features: feature_list(&schema, &pass1.stats, calendar),
        calendar,
        shards,
        splits,
        rows: pass1.rows,
        quality: QualityReport {
            missing_cells: pass1.missing_report(&schema),
            interpolated_cells: filled,
            unobserved_targets: pass1.unobserved_targets,
            windows: Vec::new(),
        },
        time_step_seconds: None,
        anc: None,
        max_gap: Some(max_gap),
        schema,
    };
    finish(req, staging, staged)
}

struct Pass1 {
    rule: SplitRule,
    rows: usize,
    val_start: Option<usize>,
    test_start: Option<usize>,
    stats: Vec<RunningStats>,
    /// Missing cells per numeric column, in schema order.
    missing: Vec<usize>,
    /// Missing cells of the categorical column.
    missing_category: usize,
    inserted: usize,
    unobserved_targets: usize,
}

impl Pass1 {
    fn new(schema: &SourceSchema, rule: SplitRule) -> Self {
        let n = schema.numeric.len();
        Self {
            rule,
            rows: 0,
            val_start: None,
            test_start: None,
            stats: vec![RunningStats::default(); n],
            missing: vec![0; n],
            missing_category: 0,
            inserted: 0,
            unobserved_targets: 0,
        }
    }

    /// Counts missing cells of a raw row (before gap filling); inserted rows count apart.
    fn count_missing(&mut self, row: &RawRow) {
        if row.inserted {
            self.inserted += 1;
            return;
        }
        for (m, v) in self.missing.iter_mut().zip(&row.numeric) {
            *m += usize::from(v.is_nan());
        }
        self.missing_category += usize::from(row.category.is_none());
    }

    fn in_train(&mut self, row: &RawRow) -> bool {
        match self.rule {
            SplitRule::ByYear {
                val_start,
                test_start,
            } => {
                // A timestamp past chrono's range is later than any split year.
                let year = row.year().unwrap_or(i32::MAX);
                if year >= val_start && self.val_start.is_none() {
                    self.val_start = Some(self.rows);
                }
                if year >= test_start && self.test_start.is_none() {
                    self.test_start = Some(self.rows);
                }
                year < val_start
            }
            SplitRule::ByRows { train, .. } => self.rows < train,
        }
    }

    fn take(
        &mut self,
        row: &RawRow,
        schema: &SourceSchema,
        shards: &mut ShardWriter,
    ) -> Result<()> {
        if self.in_train(row) {
            for (s, &v) in self.stats.iter_mut().zip(&row.numeric) {
                s.push(v);
            }
        }
        self.unobserved_targets += usize::from(!row.targets_observed);
        let category = schema
            .categorical
            .as_ref()
            .and_then(|(_, names)| names.get(usize::from(row.category?)))
            .map(String::as_str);
        shards.push(
            row.timestamp,
            &row.numeric,
            &[category],
            row.targets_observed,
        )?;
        self.rows += 1;
        Ok(())
    }

    fn splits(&self, input: &Path) -> Result<Splits> {
        let rows = self.rows;
        let (val_start, test_start, test_end) = match self.rule {
            SplitRule::ByYear {
                val_start,
                test_start,
            } => {
                let (v, t) = (
                    self.val_start.unwrap_or(rows),
                    self.test_start.unwrap_or(rows),
                );
                let empty = if v == 0 {
                    Some(format!(
                        "no rows before {val_start}: the train split is empty"
                    ))
                } else if t <= v {
                    Some(format!(
                        "no rows in {val_start}..{test_start}: the validation split is empty"
                    ))
                } else if rows <= t {
                    Some(format!(
                        "no rows from {test_start} on: the test split is empty"
                    ))
                } else {
                    None
                };
                if let Some(message) = empty {
                    return Err(Error::input(input, message));
                }
                (v, t, rows)
            }
            SplitRule::ByRows { train, val, test } => {
                let needed = train + val + test;
                if rows < needed {
                    return Err(Error::input(
                        input,
                        format!(
                            "{rows} data rows, the split needs {train} train + {val} validation + {test} test = {needed}"
                        ),
                    ));
                }
                (train, train + val, needed)
            }
        };
        Ok(Splits {
            train: 0..val_start,
            val: val_start..test_start,
            test: test_start..test_end,
        })
    }

    fn missing_report(&self, schema: &SourceSchema) -> Vec<(String, usize)> {
        let mut report: Vec<(String, usize)> = schema
            .numeric
            .iter()
            .cloned()
            .zip(self.missing.iter().copied())
            .collect();
        if let Some((name, _)) = &schema.categorical {
            report.push((name.clone(), self.missing_category));
        }
        report.push(("inserted_missing_rows".into(), self.inserted));
        report
    }
}

fn feature_list(schema: &SourceSchema, stats: &[RunningStats], calendar: bool) -> Vec<Feature> {
    let mut features: Vec<Feature> = schema
        .numeric
        .iter()
        .zip(stats)
        .map(|(name, s)| Feature {
            name: name.clone(),
            kind: FeatureKind::Numeric,
            mean: s.mean(),
            std: s.std(),
        })
        .collect();
    let identity = |name: String, kind| Feature {
        name,
        kind,
        mean: 0.0,
        std: 1.0,
    };
    if let Some((column, names)) = &schema.categorical {
        features.extend(names.iter().map(|c| {
            identity(
                format!("{column}={c}"),
                FeatureKind::OneHot {
                    column: column.clone(),
                    category: c.clone(),
                },
            )
        }));
    }
    if calendar {
        for phase in ["hour", "weekday", "yearday"] {
            for f in ["sin", "cos"] {
                features.push(identity(format!("{phase}_{f}"), FeatureKind::Calendar));
            }
        }
    }
    features
}
