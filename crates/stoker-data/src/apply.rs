//! Prepare's apply mode: a new file, read and cleaned exactly as the training data was, for a
//! trained model to forecast from. The training manifest decides everything (reader, columns,
//! gap-filling rule, train statistics); nothing is fitted on the new file.

use std::path::{Path, PathBuf};

use stoker_artifact::atomic::StagingDir;
use stoker_artifact::encode::{RowEncoder, StoreColumns};
use stoker_artifact::layout::STORE_FILE;
use stoker_artifact::manifest::{MANIFEST_FILE, SourceFile, sha256_file};
use stoker_artifact::{DatasetManifest, InputManifest, RunLock, TaskFamily, WindowStoreWriter};

use crate::error::{Error, Result, outside_calendar};
use crate::ett::EttReader;
use crate::gapfill::GapFiller;
use crate::pm25::{self, Pm25Reader};
use crate::request::check_input;
use crate::source::{RawRow, Source, open_csv};

/// Gap filling of manifests written before the rule was recorded: the config's default.
const DEFAULT_MAX_GAP: usize = 3;

/// What to apply, and where.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    /// The training `data/` directory (its manifest).
    pub data_dir: PathBuf,
    /// The new raw file, in the training data's format.
    pub input: PathBuf,
    /// The directory to (re)create: `<artifacts>/input/`.
    pub out_dir: PathBuf,
    /// ANC: the primary path's impulse response; by default the training data's (checked
    /// against its recorded hash).
    pub primary_path: Option<PathBuf>,
    /// ANC: a recording at another rate is an error instead of being resampled.
    pub no_resample: bool,
}

/// The manifest written, and notes for the user (ignored columns, assumed rules).
#[derive(Debug, Clone)]
pub struct Applied {
    pub manifest: InputManifest,
    pub notes: Vec<String>,
}

/// Reads `req.input` with the training manifest's reader, checks it has every trained column,
/// gap-fills and normalises it as prepare did, and writes a window store and an
/// [`InputManifest`] into `req.out_dir`, replacing it only when complete.
pub fn apply(req: &ApplyRequest) -> Result<Applied> {
    check_input(&req.input)?;
    let training = DatasetManifest::load(&req.data_dir)?;
    let training_path = req.data_dir.join(MANIFEST_FILE);
    let (training_sha256, _) = sha256_file(&training_path)?;
    let _lock = RunLock::for_stage_dir(&req.out_dir)?;
    if training.family() == TaskFamily::Control {
        return crate::anc::apply_anc(req, &training, &training_path, training_sha256);
    }
    let Source { schema, rows } = match training.source_kind.as_str() {
        "pm25" => Pm25Reader::open(&req.input)?.into_source(),
        "ett" => EttReader::open(&req.input)?.into_source(),
        other => {
            return Err(Error::input(
                &training_path,
                format!("source kind `{other}` cannot be applied (pm25, ett can)"),
            ));
        }
    };
    let columns = StoreColumns::of(&training, &training_path)?;
    // The trained numeric columns, found by name in the file's.
    let mut take = Vec::with_capacity(columns.numeric.len());
    for name in &columns.numeric {
        let at = schema
            .numeric
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| {
                Error::input(
                    &req.input,
                    format!("line 1: missing column `{name}` the model was trained on"),
                )
            })?;
        take.push(at);
    }
    let source_categories = match (&columns.categorical, &schema.categorical) {
        (None, _) => None,
        (Some((column, _)), Some((found, names))) if found == column => Some(names.clone()),
        (Some((column, _)), _) => {
            return Err(Error::input(
                &req.input,
                format!("line 1: missing column `{column}` the model was trained on"),
            ));
        }
    };
    let mut notes = Vec::new();
    let ignored = ignored_columns(&req.input, &training.source_kind, &columns.numeric)?;
    if !ignored.is_empty() {
        notes.push(format!(
            "{}: ignored column(s) the model was not trained on: {}",
            req.input.display(),
            ignored
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let max_gap = training.max_gap.unwrap_or_else(|| {
        notes.push(format!(
            "{}: records no gap-filling rule (prepared by an older build); filling gaps of at most {DEFAULT_MAX_GAP} rows",
            training_path.display()
        ));
        DEFAULT_MAX_GAP
    });

    let staging = StagingDir::new(&req.out_dir)?;
    let (sha256, bytes) = sha256_file(&req.input)?;
    let encoder = RowEncoder::new(&training.features, &columns);
    let mut store =
        WindowStoreWriter::create(&staging.path().join(STORE_FILE), training.features.len())?;
    let mut values = vec![0f32; training.features.len()];
    let mut missing = vec![0usize; take.len()];
    let mut filler = GapFiller::new(take.len(), max_gap);
    let mut rows_written = 0usize;
    let mut write = |row: RawRow| -> Result<()> {
        let category = row
            .category
            .and_then(|c| source_categories.as_ref()?.get(usize::from(c)))
            .map(String::as_str);
        let flags = encoder
            .encode(
                row.timestamp,
                &row.numeric,
                category,
                row.targets_observed,
                &mut values,
            )
            .ok_or_else(|| outside_calendar(&req.input, row.timestamp))?;
        store.push_row(&values, row.timestamp, flags)?;
        rows_written += 1;
        Ok(())
    };
    for row in rows {
        let mut row = row?;
        row.numeric = take.iter().map(|&i| row.numeric[i]).collect();
        // Observed means observed in the trained target columns, not in the file's others.
        row.targets_observed = training
            .targets
            .iter()
            .all(|&t| t < row.numeric.len() && !row.numeric[t].is_nan());
        if !row.inserted {
            for (m, v) in missing.iter_mut().zip(&row.numeric) {
                *m += usize::from(v.is_nan());
            }
        }
        if let Some(out) = filler.push(row) {
            write(out)?;
        }
    }
    let interpolated_cells = filler.filled;
    for out in filler.finish() {
        write(out)?;
    }
    store.finish()?;
    let source = SourceFile {
        path: req.input.display().to_string(),
        sha256,
        bytes,
    };
    let manifest = InputManifest {
        ignored_columns: ignored,
        missing_cells: columns.numeric.iter().cloned().zip(missing).collect(),
        interpolated_cells,
        ..InputManifest::applied(&training, training_sha256, source, rows_written)
    };
    manifest.save(staging.path())?;
    staging.commit()?;
    Ok(Applied { manifest, notes })
}

/// Header columns of `input` that its reader does not use for the model.
fn ignored_columns(input: &Path, source_kind: &str, numeric: &[String]) -> Result<Vec<String>> {
    let (header, _) = open_csv(input, "")?;
    let used = |name: &str, index: usize| match source_kind {
        "pm25" => pm25::is_read(name),
        _ => index == 0 || numeric.iter().any(|n| n == name),
    };
    Ok(header
        .iter()
        .enumerate()
        .map(|(i, h)| (i, h.trim()))
        .filter(|&(i, h)| !used(h, i))
        .map(|(_, h)| h.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use stoker_artifact::{TARGET_OK, TaskConfig, WindowStore};

    use super::*;
    use crate::{PrepareRequest, prepare};

    /// An ETT-format file of `rows` hourly rows from `first`, columns `names` (value = row
    /// index × column number, so every cell is distinct).
    fn ett(dir: &Path, file: &str, names: &[&str], first: usize, rows: usize) -> PathBuf {
        let mut text = format!("date,{}\n", names.join(","));
        for i in first..first + rows {
            let cells: Vec<String> = (1..=names.len()).map(|c| (i * c).to_string()).collect();
            text.push_str(&format!(
                "2020-01-{:02} {:02}:00:00,{}\n",
                1 + i / 24,
                i % 24,
                cells.join(",")
            ));
        }
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn prepared(dir: &Path) -> PathBuf {
        let config = dir.join("task.toml");
        std::fs::write(
            &config,
            "[data]\ninput_len = 4\noutput_len = 2\nsource = { kind = \"ett\", train_rows = 40, val_rows = 20, test_rows = 20 }\n[model]\nkind = \"lstm-attention\"\n",
        )
        .unwrap();
        let data = dir.join("art/data");
        prepare(&PrepareRequest {
            config: TaskConfig::load(&config).unwrap(),
            input: ett(dir, "train.csv", &["a", "b"], 0, 80),
            out_dir: data.clone(),
        })
        .unwrap();
        data
    }

    #[test]
    fn new_rows_are_normalised_with_the_train_statistics_by_column_name() {
        let dir = tempfile::tempdir().unwrap();
        let data = prepared(dir.path());
        let training = DatasetManifest::load(&data).unwrap();
        // Other order, an extra column, one short gap, values far from the training data's.
        let input = ett(dir.path(), "new.csv", &["b", "extra", "a"], 500, 10);
        let text = std::fs::read_to_string(&input).unwrap();
        std::fs::write(&input, text.replacen(",1503\n", ",NA\n", 1)).unwrap();
        let out = dir.path().join("art/input");
        let applied = apply(&ApplyRequest {
            data_dir: data,
            input,
            out_dir: out.clone(),
            primary_path: None,
            no_resample: false,
        })
        .unwrap();
        let m = &applied.manifest;
        assert_eq!(
            (m.rows, m.ignored_columns.clone()),
            (10, vec!["extra".into()])
        );
        assert_eq!(applied.notes.len(), 1, "{:?}", applied.notes);
        assert!(applied.notes[0].contains("`extra`"), "{:?}", applied.notes);
        assert_eq!(m.interpolated_cells, 1);
        assert_eq!(m.features, training.features);
        let store = WindowStore::open(&out.join(STORE_FILE)).unwrap();
        for row in 0..10 {
            let i = (500 + row) as f64;
            // Column `a` was file column 3 (value i·3), `b` column 1 (value i).
            for (col, raw) in [(0, i * 3.0), (1, i)] {
                let f = &training.features[col];
                let expected = ((raw - f.mean) / f.std) as f32;
                assert!(
                    (store.value(row, col) - expected).abs() < 1e-5,
                    "{row} {col}"
                );
            }
        }
        // The filled cell (`a` of row 1, linear so filled with its own value 1503) is an input,
        // not an observed target.
        assert_eq!(store.flags()[1] & TARGET_OK, 0);
        assert_ne!(store.flags()[0] & TARGET_OK, 0);
    }

    #[test]
    fn a_missing_trained_column_is_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = prepared(dir.path());
        let input = ett(dir.path(), "only_a.csv", &["a"], 0, 10);
        let err = apply(&ApplyRequest {
            data_dir: data,
            input,
            out_dir: dir.path().join("art/input"),
            primary_path: None,
            no_resample: false,
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("only_a.csv") && err.contains("missing column `b`"),
            "{err}"
        );
        assert!(!dir.path().join("art/input").exists());
    }
}
