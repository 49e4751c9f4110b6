//! Active noise control data, by the protocol of `../shared/datasets/README.md`: the noise
//! recording x (mono, resampled to the ANC rate), the disturbance d = primary * x at the error
//! microphone, and the secondary path the controller's output passes through.
//!
//! The prepared data has one row per sample and two columns, `x` (the reference the controller
//! reads) and `d` (the target), each divided by its RMS over the train rows (feature mean 0,
//! std = RMS; the RMS values are also in the manifest's [`AncSignals`]). Splits are fractions
//! of the N samples: train `0..round((train_fraction − val_fraction)·N)`, validation up to
//! `round(train_fraction·N)`, test the rest. Row timestamps are the sample index (not seconds:
//! `time_step_seconds` is 0; the rate is `anc.sample_rate`).
//!
//! Unlike the tabular sources, the recording is held in memory (resampling and convolution
//! need all of it; ANC recordings are seconds to minutes long). The shards hold x and d before
//! normalisation, and the second pass ([`crate::finish`]) is the tabular sources' own.

use std::ops::Range;
use std::path::{Path, PathBuf};

use stoker_artifact::atomic::StagingDir;
use stoker_artifact::layout::STORE_FILE;
use stoker_artifact::manifest::{QualityReport, SourceFile, sha256_file};
use stoker_artifact::{
    AncSignals, AncSourceConfig, DatasetManifest, Feature, FeatureKind, INPUT_OK, InputManifest,
    Splits, TARGET_OK, WindowStoreWriter,
};
use stoker_dsp::convolve_causal_f64;

use crate::apply::{Applied, ApplyRequest};
use crate::error::{Error, Result};
use crate::finish::{Staged, finish};
use crate::impulse::read_impulse_response;
use crate::request::{PrepareRequest, check_input};
use crate::resample::resample;
use crate::shards::ShardWriter;
use crate::source::SourceSchema;
use crate::wav;

/// Store columns, in order: the reference, then the disturbance (the target).
pub(crate) const COLUMNS: [&str; 2] = ["x", "d"];

/// Reads the recording at `path` as mono samples at `sample_rate`, resampling when allowed;
/// returns them with the file's own rate.
fn read_reference(path: &Path, sample_rate: u32, allow_resample: bool) -> Result<(Vec<f64>, u32)> {
    let rec = wav::read_mono(path)?;
    if rec.sample_rate == sample_rate {
        return Ok((rec.samples, rec.sample_rate));
    }
    if !allow_resample {
        return Err(Error::input(
            path,
            format!(
                "recorded at {} Hz but the ANC sample rate is {sample_rate} Hz and `resample = false`: set `resample = true` or convert the file",
                rec.sample_rate
            ),
        ));
    }
    let samples =
        resample(&rec.samples, rec.sample_rate, sample_rate).map_err(|e| e.in_file(path))?;
    Ok((samples, rec.sample_rate))
}

/// Checks 0 < `val_fraction` < `train_fraction` < 1.
fn check_fractions(train_fraction: f64, val_fraction: f64) -> Result<()> {
    if val_fraction > 0.0 && val_fraction < train_fraction && train_fraction < 1.0 {
        return Ok(());
    }
    Err(Error::Config(format!(
        "the anc source needs 0 < val_fraction < train_fraction < 1 (got val_fraction = {val_fraction}, train_fraction = {train_fraction})"
    )))
}

/// The splits of `rows` samples: train `0..round((t − v)·N)`, validation up to `round(t·N)`,
/// test to the end (t = `train_fraction`, v = `val_fraction`); none may be empty, or the error
/// names `input`.
fn anc_splits(input: &Path, rows: usize, train_fraction: f64, val_fraction: f64) -> Result<Splits> {
    check_fractions(train_fraction, val_fraction)?;
    let n = rows as f64;
    let train_end = (train_fraction * n).round() as usize;
    let val_start = ((train_fraction - val_fraction) * n).round() as usize;
    if !(0 < val_start && val_start < train_end && train_end < rows) {
        return Err(Error::input(
            input,
            format!(
                "{rows} samples are too few to split {:.0} % / {:.0} % / {:.0} %",
                100.0 * (train_fraction - val_fraction),
                100.0 * val_fraction,
                100.0 * (1.0 - train_fraction)
            ),
        ));
    }
    Ok(Splits {
        train: 0..val_start,
        val: val_start..train_end,
        test: train_end..rows,
    })
}

/// Root mean square of `x[rows]`.
fn rms(x: &[f32], rows: Range<usize>) -> f64 {
    let part = &x[rows];
    (part.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / part.len().max(1) as f64).sqrt()
}

fn path_of<'a>(path: &'a Option<std::path::PathBuf>, key: &str, flag: &str) -> Result<&'a Path> {
    let path = path.as_deref().ok_or_else(|| {
        Error::Config(format!(
            "the anc source has no `{key}`: set `data.source.{key}` or pass {flag}"
        ))
    })?;
    check_input(path)?;
    Ok(path)
}

/// The ANC prepare: every input is read and checked before anything is staged.
pub(crate) fn prepare_anc(
    req: &PrepareRequest,
    source: &AncSourceConfig,
) -> Result<DatasetManifest> {
    check_fractions(source.train_fraction, source.val_fraction)?;
    if source.sample_rate == 0 {
        return Err(Error::Config(
            "the anc source's `sample_rate` must be > 0".into(),
        ));
    }
    if !(source.saturation.is_finite() && source.saturation >= 0.0) {
        return Err(Error::Config(format!(
            "the anc source's `saturation` must be ≥ 0 (0 = linear), got {}",
            source.saturation
        )));
    }
    let primary_path = path_of(&source.primary_path, "primary_path", "--primary-path")?;
    let secondary_path = path_of(&source.secondary_path, "secondary_path", "--secondary-path")?;
    check_input(&req.input)?;

    let rate = source.sample_rate;
    let (x, source_rate) = read_reference(&req.input, rate, source.resample)?;
    let primary = read_impulse_response(primary_path, rate)?;
    let secondary = read_impulse_response(secondary_path, rate)?;
    let splits = anc_splits(
        &req.input,
        x.len(),
        source.train_fraction,
        source.val_fraction,
    )?;
    let d = convolve_causal_f64(&primary, &x);
    // The stored values are f32: the statistics are those of what is stored.
    let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let d: Vec<f32> = d.iter().map(|&v| v as f32).collect();
    let (rms_x, rms_d) = (rms(&x, splits.train.clone()), rms(&d, splits.train.clone()));
    if rms_x.is_nan() || rms_x <= 0.0 {
        return Err(Error::input(
            &req.input,
            "the train part of the recording is silent",
        ));
    }
    if rms_d.is_nan() || rms_d <= 0.0 {
        return Err(Error::input(
            primary_path,
            "the disturbance primary * x is silent over the train part (is the primary path all zeros?)",
        ));
    }

    let mut sources = Vec::new();
    for path in [&req.input, primary_path, secondary_path] {
        let (sha256, bytes) = sha256_file(path)?;
        sources.push(SourceFile {
            path: path.display().to_string(),
            sha256,
            bytes,
        });
    }
    let staging = StagingDir::new(&req.out_dir)?;
    let mut shards = ShardWriter::new(staging.path(), &COLUMNS, &[], req.config.data.shard_rows);
    for (i, (&xi, &di)) in x.iter().zip(&d).enumerate() {
        shards.push(i as i64, &[xi, di], &[], true)?;
    }
    let shards = shards.finish()?;
    let feature = |name: &str, std: f64| Feature {
        name: name.into(),
        kind: FeatureKind::Numeric,
        mean: 0.0,
        std,
    };
    let staged = Staged {
        sources,
        schema: SourceSchema {
            numeric: COLUMNS.map(String::from).to_vec(),
            categorical: None,
            targets: vec![1],
            raw_unit: None,
        },
        features: vec![feature(COLUMNS[0], rms_x), feature(COLUMNS[1], rms_d)],
        calendar: false,
        shards,
        splits,
        rows: x.len(),
        quality: QualityReport {
            missing_cells: COLUMNS.iter().map(|c| (c.to_string(), 0)).collect(),
            ..QualityReport::default()
        },
        time_step_seconds: Some(0),
        max_gap: None,
        anc: Some(AncSignals {
            sample_rate: rate,
            source_rate,
            secondary_path: secondary.iter().map(|&v| v as f32).collect(),
            primary_taps: primary.len(),
            saturation: source.saturation,
            reference_rms: rms_x,
            disturbance_rms: rms_d,
        }),
    };
    finish(req, staging, staged)
}

/// Apply mode for an ANC model: `req.input` is a new recording, resampled to the trained rate
/// (unless refused), passed through the training data's primary path (or `req.primary_path`)
/// and normalised with the training RMS values, so the controller meets it as it met its own.
pub(crate) fn apply_anc(
    req: &ApplyRequest,
    training: &DatasetManifest,
    training_path: &Path,
    training_manifest_sha256: String,
) -> Result<Applied> {
    let plant = training
        .anc
        .as_ref()
        .ok_or_else(|| Error::input(training_path, "an ANC source without its plant (`anc`)"))?;
    let [fx, fd] = training.features.as_slice() else {
        return Err(Error::input(
            training_path,
            format!(
                "an ANC source has 2 features (x, d), not {}",
                training.features.len()
            ),
        ));
    };
    let rate = plant.sample_rate;
    let (x, source_rate) = read_reference(&req.input, rate, !req.no_resample)?;
    let primary_path = match &req.primary_path {
        Some(path) => {
            check_input(path)?;
            path.clone()
        }
        None => trained_primary_path(training, training_path)?,
    };
    let primary = read_impulse_response(&primary_path, rate)?;
    let d = convolve_causal_f64(&primary, &x);

    let staging = StagingDir::new(&req.out_dir)?;
    let mut store = WindowStoreWriter::create(&staging.path().join(STORE_FILE), COLUMNS.len())?;
    for (i, (&xi, &di)) in x.iter().zip(&d).enumerate() {
        // As prepare stores them: f32 samples, then divided by the train RMS.
        let row = [
            fx.normalize(f64::from(xi as f32)) as f32,
            fd.normalize(f64::from(di as f32)) as f32,
        ];
        store.push_row(&row, i as i64, INPUT_OK | TARGET_OK)?;
    }
    store.finish()?;
    let (sha256, bytes) = sha256_file(&req.input)?;
    let source = SourceFile {
        path: req.input.display().to_string(),
        sha256,
        bytes,
    };
    let manifest = InputManifest {
        anc: Some(AncSignals {
            source_rate,
            primary_taps: primary.len(),
            ..plant.clone()
        }),
        ..InputManifest::applied(training, training_manifest_sha256, source, x.len())
    };
    manifest.save(staging.path())?;
    staging.commit()?;
    let mut notes = Vec::new();
    if source_rate != rate {
        notes.push(format!(
            "{}: recorded at {source_rate} Hz, resampled to the trained {rate} Hz",
            req.input.display()
        ));
    }
    Ok(Applied { manifest, notes })
}

/// The primary path prepare read (the second source of the training manifest), if it is still
/// where it was and unchanged.
fn trained_primary_path(training: &DatasetManifest, training_path: &Path) -> Result<PathBuf> {
    let source = training.sources.get(1).ok_or_else(|| {
        Error::input(
            training_path,
            "records no primary path: pass --primary-path",
        )
    })?;
    let path = PathBuf::from(&source.path);
    let unchanged = path.is_file() && sha256_file(&path)?.0 == source.sha256;
    if !unchanged {
        return Err(Error::input(
            &path,
            format!(
                "the primary path the model was trained with (named in {}) is missing or changed: pass --primary-path",
                training_path.display()
            ),
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_follow_the_fractions() {
        let input = Path::new("noise.wav");
        let s = anc_splits(input, 160_000, 0.7, 0.1).unwrap();
        assert_eq!(
            (s.train, s.val, s.test),
            (0..96_000, 96_000..112_000, 112_000..160_000)
        );
        let s = anc_splits(input, 1001, 0.7, 0.1).unwrap();
        assert_eq!((s.train, s.val, s.test), (0..601, 601..701, 701..1001));
        for (t, v) in [(0.7, 0.0), (0.7, 0.7), (1.0, 0.1), (0.5, 0.6), (0.7, -0.1)] {
            let msg = anc_splits(input, 1000, t, v).unwrap_err().to_string();
            assert!(
                msg.contains("0 < val_fraction < train_fraction < 1"),
                "{msg}"
            );
        }
        let msg = anc_splits(input, 3, 0.7, 0.1).unwrap_err().to_string();
        assert!(msg.starts_with("noise.wav: 3 samples are too few"), "{msg}");
    }

    #[test]
    fn rms_over_rows() {
        let x = [3.0, -4.0, 100.0];
        assert!((rms(&x, 0..2) - (12.5f64).sqrt()).abs() < 1e-12);
    }
}
