//! Batched inference over a whole split, metrics in the target's unit, and the output files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use arrow::array::{ArrayRef, Float32Array, TimestampSecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use burn::prelude::*;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use stoker_artifact::atomic::{self, StagingDir};
use stoker_artifact::layout::{PREDICT_METRICS_FILE, PREDICTIONS_FILE};
use stoker_artifact::{CheckpointChoice, ForecastMetrics, PreparedData, Split};
use stoker_zoo::batch::{inputs_tensor, to_host};
use stoker_zoo::checkpoint;

#[derive(Debug, Clone)]
pub struct PredictRequest {
    pub data_dir: PathBuf,
    pub train_dir: PathBuf,
    pub out_dir: PathBuf,
    pub checkpoint: CheckpointChoice,
    pub batch_size: usize,
    pub device: Device,
}

/// One forecast per window, in the target's unit.
pub struct Forecasts {
    pub timestamps: Vec<i64>,
    pub truth: Vec<f32>,
    pub prediction: Vec<f32>,
    pub persistence: Vec<f32>,
}

pub fn predict(req: &PredictRequest) -> Result<ForecastMetrics> {
    let data = PreparedData::open(&req.data_dir)?;
    let name = match req.checkpoint {
        CheckpointChoice::Best => stoker_artifact::layout::BEST_CHECKPOINT,
        CheckpointChoice::Last => stoker_artifact::layout::LAST_CHECKPOINT,
    };
    let (model, meta) = checkpoint::load(&req.train_dir, name, &req.device)?;
    ensure!(
        meta.manifest_sha256 == data.manifest_sha256,
        "{}: trained on other prepared data than {} (manifest hash differs): re-run train",
        req.train_dir.join(format!("{name}.json")).display(),
        data.dir.join("manifest.json").display()
    );
    let windows = data.windows(Split::Test);
    let spec = data.manifest.window;
    let target = data.manifest.target_feature();
    let started = Instant::now();
    let mut normalised = Vec::with_capacity(windows.len());
    let mut inputs = Vec::new();
    for chunk in windows.chunks(req.batch_size) {
        inputs.clear();
        data.store.gather_inputs(chunk, spec, &mut inputs);
        let x = inputs_tensor(
            inputs.clone(),
            [chunk.len(), spec.input_len, data.store.cols()],
            &req.device,
        );
        normalised.extend(to_host(model.forward(x)));
    }
    let infer_seconds = started.elapsed().as_secs_f64();
    let col = data.manifest.target;
    let raw = |v: f32| target.denormalize(f64::from(v)) as f32;
    let forecasts = Forecasts {
        timestamps: windows
            .iter()
            .map(|&s| data.store.timestamps()[spec.target_row(s)])
            .collect(),
        truth: windows
            .iter()
            .map(|&s| raw(data.store.value(spec.target_row(s), col)))
            .collect(),
        prediction: normalised.iter().map(|&v| raw(v)).collect(),
        persistence: windows
            .iter()
            .map(|&s| raw(data.store.value(s + spec.input_len - 1, col)))
            .collect(),
    };
    let (rmse, mae) = errors(&forecasts.truth, &forecasts.prediction);
    let (persistence_rmse, persistence_mae) = errors(&forecasts.truth, &forecasts.persistence);
    let metrics = ForecastMetrics {
        split: Split::Test.name().into(),
        unit: data.manifest.target_unit.clone(),
        windows: windows.len(),
        rmse,
        mae,
        persistence_rmse,
        persistence_mae,
        checkpoint: format!("{name} (epoch {})", meta.epoch),
        infer_samples_per_s: windows.len() as f64 / infer_seconds,
    };
    let staging = StagingDir::new(&req.out_dir)?;
    write_predictions(
        &staging.path().join(PREDICTIONS_FILE),
        &forecasts,
        &target.name,
    )?;
    atomic::write_json(&staging.path().join(PREDICT_METRICS_FILE), &metrics)?;
    staging.commit()?;
    Ok(metrics)
}

/// (RMSE, MAE) of `predicted` against `truth`.
pub fn errors(truth: &[f32], predicted: &[f32]) -> (f64, f64) {
    let n = truth.len().max(1) as f64;
    let (mut sq, mut abs) = (0.0, 0.0);
    for (&t, &p) in truth.iter().zip(predicted) {
        let d = f64::from(p) - f64::from(t);
        sq += d * d;
        abs += d.abs();
    }
    ((sq / n).sqrt(), abs / n)
}

fn write_predictions(path: &Path, f: &Forecasts, target: &str) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
            false,
        ),
        Field::new("truth", DataType::Float32, false),
        Field::new("prediction", DataType::Float32, false),
        Field::new("persistence", DataType::Float32, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampSecondArray::from(f.timestamps.clone()).with_timezone("UTC")),
        Arc::new(Float32Array::from(f.truth.clone())),
        Arc::new(Float32Array::from(f.prediction.clone())),
        Arc::new(Float32Array::from(f.persistence.clone())),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            "target".into(),
            target.to_string(),
        )]))
        .build();
    let file = std::fs::File::create(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
    writer.write(&batch)?;
    writer
        .close()
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::errors;

    #[test]
    fn rmse_and_mae() {
        let (rmse, mae) = errors(&[0.0, 0.0], &[3.0, -4.0]);
        assert!((rmse - 12.5f64.sqrt()).abs() < 1e-12);
        assert!((mae - 3.5).abs() < 1e-12);
    }
}
