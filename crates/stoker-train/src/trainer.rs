//! The training loop, written out: batch → forward → loss → backward → optimizer step, then
//! validation, checkpoints and one metrics line per epoch.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::AdamConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::prelude::*;
use stoker_artifact::layout::{BEST_CHECKPOINT, LAST_CHECKPOINT, METRICS_LOG_FILE, SUMMARY_FILE};
use stoker_artifact::run::{CHECKPOINT_VERSION, StepTime};
use stoker_artifact::{
    CheckpointMeta, EpochRecord, PreparedData, RunSummary, Split, TaskConfig, WindowSpec, atomic,
};
use stoker_zoo::batch::{inputs_tensor, targets_tensor};
use stoker_zoo::{InputShape, Model, checkpoint};

use crate::diagnosis::diagnose;
use crate::loader::{Loader, epoch_order};
use crate::monitor::Monitor;
use crate::progress::Progress;
use crate::step::batch_gradients;

#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub config: TaskConfig,
    pub task: String,
    pub data_dir: PathBuf,
    pub out_dir: PathBuf,
    pub device: Device,
    pub device_name: String,
}

pub fn train(req: &TrainRequest) -> Result<RunSummary> {
    let cfg = &req.config;
    let data = Arc::new(PreparedData::open(&req.data_dir)?);
    let manifest = &data.manifest;
    let window = cfg.window();
    let train_windows = data.windows(Split::Train, window);
    let val_windows = data.windows(Split::Val, window);
    ensure!(
        !train_windows.is_empty() && !val_windows.is_empty(),
        "{}: no train or validation windows",
        data.dir.display()
    );
    fs::create_dir_all(&req.out_dir)
        .with_context(|| format!("{}: cannot create", req.out_dir.display()))?;

    req.device.seed(cfg.seed);
    let device = req.device.clone().autodiff();
    let shape = InputShape {
        window,
        features: manifest.features.len(),
        targets: manifest.targets.clone(),
    };
    let mut model = Model::new(&cfg.model, &shape, &device).warm_start(
        &cfg.model,
        &data.store,
        &train_windows,
        window,
    );
    let t = &cfg.train;
    let mut optim = AdamConfig::new()
        .with_weight_decay(
            (t.weight_decay > 0.0).then(|| WeightDecayConfig::new(t.weight_decay as f32)),
        )
        .with_grad_clipping(
            (t.grad_clip > 0.0).then_some(GradientClippingConfig::Norm(t.grad_clip as f32)),
        )
        .init();

    let meta_for = |epoch: usize, step: u64, val_loss: f64, name: &str| CheckpointMeta {
        format_version: CHECKPOINT_VERSION,
        model: cfg.model.clone(),
        input_features: shape.features,
        window,
        targets: shape.targets.clone(),
        manifest_sha256: data.manifest_sha256.clone(),
        epoch,
        step,
        val_loss,
        precision: "f32".into(),
        weights: format!("{name}.bpk"),
    };

    let started = Instant::now();
    let mut progress = Progress::new();
    let mut records: Vec<EpochRecord> = Vec::new();
    // The starting point competes too: a warm-started model may already beat what training
    // reaches, and best-on-validation should then keep it.
    let loader = Loader::new(data.clone(), t.workers, t.prefetch);
    let initial_val = evaluate_mse(
        &model.valid(),
        &loader,
        shape.features,
        window,
        &val_windows,
        cfg.predict.batch_size,
    );
    checkpoint::save(
        &req.out_dir,
        BEST_CHECKPOINT,
        &model,
        &meta_for(0, 0, initial_val, BEST_CHECKPOINT),
    )?;
    eprintln!("epoch 0: val loss {initial_val:.5} (initial)");
    let (mut best_val, mut best_epoch, mut step) = (initial_val, 0, 0u64);
    let mut time = StepTime::default();
    let monitor = Monitor::start(Duration::from_millis(500));
    for epoch in 1..=t.epochs {
        let epoch_start = Instant::now();
        let lr = t.lr * t.lr_decay.powi(epoch as i32 - 1);
        let order = epoch_order(&train_windows, cfg.seed, epoch);
        progress.start_epoch(epoch, t.epochs, order.len().div_ceil(t.batch_size) as u64);
        let mut loss_sum = Tensor::<1>::zeros([1], &device);
        let waited = loader.for_each_batch(order, t.batch_size, window, |batch| -> Result<()> {
            let len = batch.len;
            let compute_start = Instant::now();
            let (grads, loss) = batch_gradients(
                &model,
                &batch,
                window,
                shape.features,
                t.accumulate,
                t.loss,
                &device,
            );
            loss_sum = loss_sum.clone() + loss * len as f32;
            let optimizer_start = Instant::now();
            time.compute_s += (optimizer_start - compute_start).as_secs_f64();
            model = optim.step(lr, model.clone(), grads);
            time.optimizer_s += optimizer_start.elapsed().as_secs_f64();
            step += 1;
            progress.step((step % 50 == 0).then(|| loss_sum.clone().into_scalar::<f32>() as f64));
            Ok(())
        })?;
        time.data_wait_s += waited.as_secs_f64();
        let train_loss = loss_sum.into_scalar::<f32>() as f64 / train_windows.len() as f64;
        let val_loss = evaluate_mse(
            &model.valid(),
            &loader,
            shape.features,
            window,
            &val_windows,
            cfg.predict.batch_size,
        );
        let seconds = epoch_start.elapsed().as_secs_f64();
        checkpoint::save(
            &req.out_dir,
            LAST_CHECKPOINT,
            &model,
            &meta_for(epoch, step, val_loss, LAST_CHECKPOINT),
        )?;
        let improved = val_loss < best_val;
        if improved {
            (best_val, best_epoch) = (val_loss, epoch);
            checkpoint::save(
                &req.out_dir,
                BEST_CHECKPOINT,
                &model,
                &meta_for(epoch, step, val_loss, BEST_CHECKPOINT),
            )?;
        }
        let record = EpochRecord {
            epoch,
            step,
            train_loss,
            val_loss,
            lr,
            samples_per_s: train_windows.len() as f64 / seconds,
            seconds,
        };
        progress.finish_epoch(&format!(
            "epoch {epoch}/{}: train loss {train_loss:.5}, val loss {val_loss:.5}{}, {:.0} samples/s, {seconds:.1}s",
            t.epochs,
            if improved { " (best)" } else { "" },
            record.samples_per_s
        ));
        records.push(record);
        write_metrics_log(&req.out_dir, &records)?;
    }

    let seconds = started.elapsed().as_secs_f64();
    let utilisation = monitor.finish();
    let step_seconds = time.data_wait_s + time.compute_s + time.optimizer_s;
    let summary = RunSummary {
        task: req.task.clone(),
        model: cfg.model.kind().into(),
        device: req.device_name.clone(),
        precision: "f32".into(),
        parameters: model.num_params(),
        epochs: t.epochs,
        steps: step,
        batch_size: t.batch_size,
        train_windows: train_windows.len(),
        val_windows: val_windows.len(),
        best_epoch,
        best_val_loss: best_val,
        final_train_loss: records.last().map_or(f64::NAN, |r| r.train_loss),
        samples_per_s: (train_windows.len() * t.epochs) as f64
            / records.iter().map(|r| r.seconds).sum::<f64>(),
        data_stall_fraction: time.data_wait_s / step_seconds.max(1e-12),
        accumulate: t.accumulate,
        diagnosis: diagnose(&time, &utilisation, t.batch_size),
        step_time: time,
        utilisation_mean_percent: utilisation.mean_percent,
        utilisation_std_percent: utilisation.std_percent,
        peak_memory_bytes: utilisation.peak_rss_bytes,
        seconds,
    };
    atomic::write_json(&req.out_dir.join(SUMMARY_FILE), &summary)?;
    Ok(summary)
}

/// Mean squared error on normalised targets over `windows` (every step and target), without
/// gradients.
pub fn evaluate_mse(
    model: &Model,
    loader: &Loader,
    features: usize,
    window: WindowSpec,
    windows: &[usize],
    batch_size: usize,
) -> f64 {
    let device = model
        .devices()
        .into_iter()
        .next()
        .expect("model has a device");
    let mut sum = Tensor::<1>::zeros([1], &device);
    let mut count = 0usize;
    let _ = loader.for_each_batch(
        windows.to_vec(),
        batch_size,
        window,
        |batch| -> Result<(), ()> {
            count += batch.targets.len();
            let x = inputs_tensor(
                batch.inputs,
                [batch.len, window.input_len, features],
                &device,
            );
            let y = targets_tensor(batch.targets, batch.len, &device);
            sum = sum.clone() + (model.forward(x) - y).square().sum();
            Ok(())
        },
    );
    sum.into_scalar::<f32>() as f64 / count.max(1) as f64
}

fn write_metrics_log(dir: &std::path::Path, records: &[EpochRecord]) -> Result<()> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    atomic::write_bytes(&dir.join(METRICS_LOG_FILE), text.as_bytes())?;
    Ok(())
}
