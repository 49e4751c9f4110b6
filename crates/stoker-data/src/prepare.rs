//! The prepare stage, in two streaming passes over any [`Source`]:
//! 1. raw rows → gap filling → Parquet shards, while fitting normalisation on train rows;
//! 2. shards → normalised feature rows → window store; then the manifest (`finish`).
//!
//! An ANC recording ([`crate::anc`]) has its own first pass and shares the second.
//! Everything is written into a staging directory that replaces `data/` only when complete.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail, ensure};
use chrono::{Datelike, Timelike};
use stoker_artifact::atomic::StagingDir;
use stoker_artifact::layout::STORE_FILE;
use stoker_artifact::manifest::{
    MANIFEST_VERSION, QualityReport, ShardRef, SourceFile, Split, sha256_file,
};
use stoker_artifact::{
    AncSignals, DatasetManifest, Feature, FeatureKind, INPUT_OK, MetricScale, SourceConfig, Splits,
    TARGET_OK, TaskConfig, WindowStore, WindowStoreWriter,
};

use crate::ett::EttReader;
use crate::gapfill::GapFiller;
use crate::pm25::Pm25Reader;
use crate::shards::{ShardWriter, for_each_row};
use crate::source::{RawRow, Source, SourceSchema};
use crate::stats::RunningStats;

/// What to prepare and where.
#[derive(Debug, Clone)]
pub struct PrepareRequest {
    pub config: TaskConfig,
    pub input: PathBuf,
    /// The `data/` directory to (re)create.
    pub out_dir: PathBuf,
}

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

struct Plan {
    source: Source,
    rule: SplitRule,
    max_gap: usize,
    calendar: bool,
}

fn plan(config: &SourceConfig, input: &Path) -> Result<Plan> {
    Ok(match *config {
        SourceConfig::Pm25 {
            val_start_year,
            test_start_year,
            max_gap,
            calendar,
        } => {
            ensure!(
                val_start_year < test_start_year,
                "config: `val_start_year` ({val_start_year}) must be before `test_start_year` ({test_start_year})"
            );
            Plan {
                source: Pm25Reader::open(input)?.into_source(),
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
            source: EttReader::open(input)?.into_source(),
            rule: SplitRule::ByRows {
                train: train_rows,
                val: val_rows,
                test: test_rows,
            },
            max_gap,
            calendar: false,
        },
        SourceConfig::Anc(_) => unreachable!("ANC recordings are prepared by crate::anc"),
    })
}

/// Prepares the request's data: the tabular sources stream through `Pass1`, an ANC recording
/// goes through [`crate::anc`]; both end in `finish`.
pub fn prepare(req: &PrepareRequest) -> Result<DatasetManifest> {
    if let SourceConfig::Anc(source) = &req.config.data.source {
        return crate::anc::prepare_anc(req, source);
    }
    let Plan {
        source: Source { schema, rows },
        rule,
        max_gap,
        calendar,
    } = plan(&req.config.data.source, &req.input)?;
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
        schema,
    };
    finish(req, staging, staged)
}

/// What a source's first pass leaves in the staging directory: its rows in raw units in
/// Parquet shards, the features (normalisation fitted on the train rows) and the splits.
pub(crate) struct Staged {
    pub sources: Vec<SourceFile>,
    pub schema: SourceSchema,
    pub features: Vec<Feature>,
    pub calendar: bool,
    pub shards: Vec<ShardRef>,
    pub splits: Splits,
    pub rows: usize,
    /// Everything but `windows`, which [`finish`] counts.
    pub quality: QualityReport,
    /// `None`: the step between the first two timestamps.
    pub time_step_seconds: Option<i64>,
    pub anc: Option<AncSignals>,
}

/// The second pass, shared by every source: shards → normalised rows in the window store; then
/// the window spec, the windows per split and the manifest; then the staging directory
/// replaces `req.out_dir`.
pub(crate) fn finish(
    req: &PrepareRequest,
    staging: StagingDir,
    staged: Staged,
) -> Result<DatasetManifest> {
    let Staged {
        sources,
        schema,
        features,
        calendar,
        shards,
        splits,
        rows,
        mut quality,
        time_step_seconds,
        anc,
    } = staged;
    let n_numeric = schema.numeric.len();
    let categories = schema.categorical.as_ref().map_or(0, |(_, c)| c.len());
    let store_path = staging.path().join(STORE_FILE);
    let mut store = WindowStoreWriter::create(&store_path, features.len())?;
    let mut values = vec![0f32; features.len()];
    for_each_row(staging.path(), &shards, |row| {
        let mut input_ok = true;
        for (i, &raw) in row.numeric.iter().enumerate() {
            input_ok &= !raw.is_nan();
            values[i] = ((f64::from(raw) - features[i].mean) / features[i].std) as f32;
        }
        if let Some((_, names)) = &schema.categorical {
            let value = row.categories[0].as_deref();
            input_ok &= value.is_some();
            for (k, name) in names.iter().enumerate() {
                values[n_numeric + k] = f32::from(value == Some(name.as_str()));
            }
        }
        if calendar {
            values[n_numeric + categories..].copy_from_slice(&calendar_features(row.timestamp));
        }
        let flags =
            if input_ok { INPUT_OK } else { 0 } | if row.target_observed { TARGET_OK } else { 0 };
        store.push_row(&values, row.timestamp, flags)?;
        Ok(())
    })?;
    store.finish()?;

    let opened = WindowStore::open(&store_path)?;
    let timestamps = opened.timestamps();
    let mut manifest = DatasetManifest {
        format_version: MANIFEST_VERSION,
        source_kind: source_kind(&req.config.data.source).into(),
        sources,
        features,
        targets: schema.targets.clone(),
        target_unit: schema
            .raw_unit
            .clone()
            .unwrap_or_else(|| "normalised".into()),
        metric_scale: if schema.raw_unit.is_some() {
            MetricScale::Raw
        } else {
            MetricScale::Normalised
        },
        window: req.config.window(),
        rows,
        time_step_seconds: time_step_seconds
            .unwrap_or_else(|| timestamps.get(1).map_or(0, |t| t - timestamps[0])),
        splits,
        store_file: STORE_FILE.into(),
        shards,
        quality: QualityReport::default(),
        anc,
    };
    // ANC's window depends on the prepared secondary path; the others' on the config alone.
    let window = req.config.window_for(&manifest);
    manifest.window = window;
    quality.windows = [Split::Train, Split::Val, Split::Test]
        .map(|s| {
            (
                s.name().to_string(),
                opened
                    .clean_window_starts(window, manifest.splits.rows(s))
                    .count(),
            )
        })
        .to_vec();
    for (name, n) in &quality.windows {
        ensure!(
            *n > 0,
            "{}: the {name} split has no complete window ({} input rows, horizon {}, {} output rows)",
            req.input.display(),
            window.input_len,
            window.horizon,
            window.output_len
        );
    }
    manifest.quality = quality;
    manifest.save(staging.path())?;
    staging.commit()?;
    Ok(manifest)
}

fn source_kind(source: &SourceConfig) -> &'static str {
    match source {
        SourceConfig::Pm25 { .. } => "pm25",
        SourceConfig::Ett { .. } => "ett",
        SourceConfig::Anc(_) => "anc",
    }
}

struct Pass1 {
    rule: SplitRule,
    rows: usize,
    val_start: Option<usize>,
    test_start: Option<usize>,
    stats: Vec<RunningStats>,
    missing: Vec<usize>,
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
            missing: vec![0; n + 1],
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
        *self.missing.last_mut().unwrap() += usize::from(row.category.is_none());
    }

    fn in_train(&mut self, row: &RawRow) -> bool {
        match self.rule {
            SplitRule::ByYear {
                val_start,
                test_start,
            } => {
                let year = row.year();
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
            .and_then(|(_, names)| row.category.map(|c| names[c as usize].as_str()));
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
        let input = input.display();
        let (val_start, test_start, test_end) = match self.rule {
            SplitRule::ByYear {
                val_start,
                test_start,
            } => {
                let (v, t) = (
                    self.val_start.unwrap_or(rows),
                    self.test_start.unwrap_or(rows),
                );
                ensure!(
                    v > 0,
                    "{input}: no rows before {val_start}: the train split is empty"
                );
                ensure!(
                    t > v,
                    "{input}: no rows in {val_start}..{test_start}: the validation split is empty"
                );
                ensure!(
                    rows > t,
                    "{input}: no rows from {test_start} on: the test split is empty"
                );
                (v, t, rows)
            }
            SplitRule::ByRows { train, val, test } => {
                let needed = train + val + test;
                if rows < needed {
                    bail!(
                        "{input}: {rows} data rows, the split needs {train} train + {val} validation + {test} test = {needed}"
                    );
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
            report.push((name.clone(), *self.missing.last().unwrap()));
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

/// Hour of day, day of week and day of year as (sin, cos) pairs.
fn calendar_features(timestamp: i64) -> [f32; 6] {
    let t = chrono::DateTime::from_timestamp(timestamp, 0).expect("valid timestamp");
    let tau = std::f64::consts::TAU;
    let phases = [
        f64::from(t.hour()) / 24.0,
        f64::from(t.weekday().num_days_from_monday()) / 7.0,
        f64::from(t.ordinal0()) / 365.25,
    ];
    let mut out = [0f32; 6];
    for (i, p) in phases.iter().enumerate() {
        out[2 * i] = (tau * p).sin() as f32;
        out[2 * i + 1] = (tau * p).cos() as f32;
    }
    out
}

/// Fails with a clear message when `input` does not exist, before anything is staged.
pub fn check_input(input: &Path) -> Result<()> {
    if !input.is_file() {
        bail!("{}: no such file", input.display());
    }
    Ok(())
}
