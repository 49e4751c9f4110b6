//! The prepare stage for PM2.5-format CSVs, in two streaming passes:
//! 1. raw CSV → gap filling → Parquet shards, while fitting normalisation on train rows;
//! 2. shards → normalised feature rows → window store; then the manifest.
//!
//! Everything is written into a staging directory that replaces `data/` only when complete.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use chrono::{Datelike, Timelike};
use stoker_artifact::atomic::StagingDir;
use stoker_artifact::layout::STORE_FILE;
use stoker_artifact::manifest::{MANIFEST_VERSION, QualityReport, SourceFile, Split, sha256_file};
use stoker_artifact::{
    DatasetManifest, Feature, FeatureKind, INPUT_OK, SourceConfig, Splits, TARGET_OK, TaskConfig,
    WindowSpec, WindowStore, WindowStoreWriter,
};

use crate::gapfill::GapFiller;
use crate::pm25::{NUMERIC, Pm25Reader, STEP_SECONDS, WIND};
use crate::shards::{ShardWriter, for_each_row};
use crate::stats::RunningStats;

/// What to prepare and where.
#[derive(Debug, Clone)]
pub struct PrepareRequest {
    pub config: TaskConfig,
    pub input: PathBuf,
    /// The `data/` directory to (re)create.
    pub out_dir: PathBuf,
}

pub fn prepare(req: &PrepareRequest) -> Result<DatasetManifest> {
    let SourceConfig::Pm25 {
        val_start_year,
        test_start_year,
        max_gap,
        calendar,
    } = req.config.data.source.clone();
    ensure!(
        val_start_year < test_start_year,
        "config: `val_start_year` ({val_start_year}) must be before `test_start_year` ({test_start_year})"
    );
    let staging = StagingDir::new(&req.out_dir)?;
    let (sha256, bytes) = sha256_file(&req.input)?;

    // Pass 1: raw rows → shards, train statistics, split boundaries.
    let mut reader = Pm25Reader::open(&req.input)?;
    let mut filler = GapFiller::new(NUMERIC.len(), max_gap);
    let mut shards = ShardWriter::new(
        staging.path(),
        &NUMERIC,
        &["cbwd"],
        req.config.data.shard_rows,
    );
    let mut pass1 = Pass1::default();
    for row in reader.by_ref() {
        if let Some(out) = filler.push(row?) {
            pass1.take(&out, &mut shards, val_start_year, test_start_year)?;
        }
    }
    let filled = filler.filled;
    for out in filler.finish() {
        pass1.take(&out, &mut shards, val_start_year, test_start_year)?;
    }
    let shard_refs = shards.finish()?;
    let rows = pass1.rows;
    let val_start = pass1.val_start.unwrap_or(rows);
    let test_start = pass1.test_start.unwrap_or(rows);
    let input = req.input.display();
    ensure!(
        val_start > 0,
        "{input}: no rows before {val_start_year}: the train split is empty"
    );
    ensure!(
        test_start > val_start,
        "{input}: no rows in {val_start_year}..{test_start_year}: the validation split is empty"
    );
    ensure!(
        rows > test_start,
        "{input}: no rows from {test_start_year} on: the test split is empty"
    );

    let features = feature_list(&pass1.stats, calendar);
    // Pass 2: shards → normalised rows in the window store.
    let store_path = staging.path().join(STORE_FILE);
    let mut store = WindowStoreWriter::create(&store_path, features.len())?;
    let mut values = vec![0f32; features.len()];
    for_each_row(staging.path(), &shard_refs, |row| {
        let mut input_ok = row.categories[0].is_some();
        for (i, &raw) in row.numeric.iter().enumerate() {
            input_ok &= !raw.is_nan();
            values[i] = ((f64::from(raw) - features[i].mean) / features[i].std) as f32;
        }
        for (k, wind) in WIND.iter().enumerate() {
            values[NUMERIC.len() + k] = f32::from(row.categories[0].as_deref() == Some(wind));
        }
        if calendar {
            values[NUMERIC.len() + WIND.len()..].copy_from_slice(&calendar_features(row.timestamp));
        }
        let flags =
            if input_ok { INPUT_OK } else { 0 } | if row.target_observed { TARGET_OK } else { 0 };
        store.push_row(&values, row.timestamp, flags)?;
        Ok(())
    })?;
    store.finish()?;

    let window = WindowSpec {
        input_len: req.config.data.input_len,
        horizon: req.config.data.horizon,
    };
    let splits = Splits {
        train: 0..val_start,
        val: val_start..test_start,
        test: test_start..rows,
    };
    let opened = WindowStore::open(&store_path)?;
    let windows = [Split::Train, Split::Val, Split::Test]
        .map(|s| {
            (
                s.name().to_string(),
                opened.window_starts(window, splits.rows(s)).len(),
            )
        })
        .to_vec();
    for (name, n) in &windows {
        ensure!(
            *n > 0,
            "{input}: the {name} split has no complete window of {} hours plus horizon {}",
            window.input_len,
            window.horizon
        );
    }
    let mut missing_cells: Vec<(String, usize)> = NUMERIC
        .iter()
        .map(|n| n.to_string())
        .chain(["cbwd".to_string()])
        .zip(reader.missing_cells)
        .collect();
    missing_cells.push(("inserted_missing_hours".into(), reader.inserted_rows));
    let manifest = DatasetManifest {
        format_version: MANIFEST_VERSION,
        source_kind: "pm25".into(),
        sources: vec![SourceFile {
            path: req.input.display().to_string(),
            sha256,
            bytes,
        }],
        features,
        target: 0,
        target_unit: "µg/m³".into(),
        window,
        splits,
        rows,
        time_step_seconds: STEP_SECONDS,
        store_file: STORE_FILE.into(),
        shards: shard_refs,
        quality: QualityReport {
            missing_cells,
            interpolated_cells: filled,
            unobserved_targets: pass1.unobserved_targets,
            windows,
        },
    };
    manifest.save(staging.path())?;
    staging.commit()?;
    Ok(manifest)
}

#[derive(Default)]
struct Pass1 {
    rows: usize,
    val_start: Option<usize>,
    test_start: Option<usize>,
    stats: [RunningStats; NUMERIC.len()],
    unobserved_targets: usize,
}

impl Pass1 {
    fn take(
        &mut self,
        row: &crate::pm25::Pm25Row,
        shards: &mut ShardWriter,
        val_start_year: i32,
        test_start_year: i32,
    ) -> Result<()> {
        let year = row.year();
        if year >= val_start_year && self.val_start.is_none() {
            self.val_start = Some(self.rows);
        }
        if year >= test_start_year && self.test_start.is_none() {
            self.test_start = Some(self.rows);
        }
        if year < val_start_year {
            for (s, &v) in self.stats.iter_mut().zip(&row.numeric) {
                s.push(v);
            }
        }
        self.unobserved_targets += usize::from(!row.target_observed);
        let wind = row.wind.map(|w| WIND[w as usize]);
        shards.push(row.timestamp, &row.numeric, &[wind], row.target_observed)?;
        self.rows += 1;
        Ok(())
    }
}

fn feature_list(stats: &[RunningStats], calendar: bool) -> Vec<Feature> {
    let mut features: Vec<Feature> = NUMERIC
        .iter()
        .zip(stats)
        .map(|(name, s)| Feature {
            name: name.to_string(),
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
    features.extend(WIND.iter().map(|w| {
        identity(
            format!("cbwd={w}"),
            FeatureKind::OneHot {
                column: "cbwd".into(),
                category: w.to_string(),
            },
        )
    }));
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
    std::fs::metadata(input).with_context(|| format!("{}: cannot read", input.display()))?;
    Ok(())
}
