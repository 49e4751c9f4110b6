//! The training loop, written out: batch → forward → loss → backward → optimizer step; then, at
//! the configured intervals, validation (best checkpoint, early stopping) and resumable
//! checkpoints; one metrics line per evaluation.

use std::cell::Cell;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use stoker_artifact::layout::{BEST_CHECKPOINT, LAST_CHECKPOINT, METRICS_LOG_FILE, SUMMARY_FILE};
use stoker_artifact::run::{CHECKPOINT_VERSION, StepTime, TRAIN_STATE_VERSION, TrainState};
use stoker_artifact::{
    CheckpointMeta, EpochRecord, LossKind, Precision, PreparedData, RunSummary, Split, TaskConfig,
    TrainConfig, WindowSpec, atomic,
};
use stoker_zoo::batch::{fitting_batch, inputs_tensor, targets_tensor};
use stoker_zoo::{Autocast, InputShape, Model, checkpoint};

use crate::adam::FusedAdam;
use crate::diagnosis::diagnose;
use crate::loader::{Loader, epoch_order};
use crate::monitor::Monitor;
use crate::progress::Progress;
use crate::resume;
use crate::step::{LossScaler, batch_gradients};
use crate::timing::PhaseClock;

#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub config: TaskConfig,
    pub task: String,
    pub data_dir: PathBuf,
    pub out_dir: PathBuf,
    pub device: Device,
    pub device_name: String,
    /// Continue from the newest resumable checkpoint in `out_dir`.
    pub resume: bool,
}

pub fn optimizer(t: &TrainConfig) -> ModuleOptimizer {
    FusedAdam::module_optimizer(t.weight_decay as f32, t.grad_clip as f32)
}

/// The backend RNG (dropout) is reseeded from (seed, step) before every step, so a resumed run
/// draws exactly what the uninterrupted run would have.
fn step_seed(seed: u64, step: u64) -> u64 {
    seed ^ step.wrapping_add(1).wrapping_mul(0x2545_F491_4F6C_DD1D)
}

pub fn train(req: &TrainRequest) -> Result<RunSummary> {
    let cfg = &req.config;
    let t = &cfg.train;
    let data = Arc::new(PreparedData::open(&req.data_dir)?);
    let window = cfg.window_for(&data.manifest);
    let train_windows = data.windows(Split::Train, window);
    let val_windows = data.windows(Split::Val, window);
    ensure!(
        !train_windows.is_empty() && !val_windows.is_empty(),
        "{}: no train or validation windows for input_len {} / output_len {}",
        data.dir.display(),
        window.input_len,
        window.output_len
    );
    fs::create_dir_all(&req.out_dir)
        .with_context(|| format!("{}: cannot create", req.out_dir.display()))?;

    req.device.seed(cfg.seed);
    let device = req.device.clone().autodiff();
    let shape = InputShape::of(&data.manifest, window);
    // Throughput counts what the loss sees: a window, or an ANC chunk's error samples.
    let samples_per_window = if shape.anc.is_some() {
        window.output_len
    } else {
        1
    };
    let mut model = Model::new(&cfg.model, &shape, &device);
    let mut optim = optimizer(t);
    let meta_for = |epoch: usize, step: u64, val_loss: f64, name: &str| CheckpointMeta {
        format_version: CHECKPOINT_VERSION,
        model: cfg.model.clone(),
        input_features: shape.features,
        window,
        targets: shape.targets.clone(),
        anc: shape.anc.clone(),
        manifest_sha256: data.manifest_sha256.clone(),
        epoch,
        step,
        val_loss,
        precision: t.precision.name().into(),
        weights: format!("{name}.bpk"),
    };
    let loader = Loader::new(data.clone(), t.workers, t.prefetch);
    // Mid-epoch evaluations cannot share the training pass's workers.
    let eval_loader = Loader::new(data.clone(), 1, t.prefetch);
    let eval_batch = Cell::new(cfg.predict.batch_size);
    let evaluate = |model: &Model| {
        fitting_batch(&eval_batch, "evaluation", |batch_size| {
            evaluate_mse(
                &model.valid(),
                &eval_loader,
                shape.features,
                window,
                &val_windows,
                batch_size,
            )
        })
        .with_context(|| format!("evaluation on {}", req.device_name))
    };

    let mut state = if req.resume {
        let (m, o, s) = resume::load(&req.out_dir, model, optim, &data.manifest_sha256)?;
        (model, optim) = (m, o);
        eprintln!("resuming at epoch {}, step {}", s.epoch, s.step);
        s
    } else {
        model = model.warm_start(&cfg.model, &data.store, &train_windows, window);
        // The starting point competes too: a warm-started model may already beat what training
        // reaches, and best-on-validation then keeps it.
        let initial = evaluate(&model)?;
        checkpoint::save(
            &req.out_dir,
            BEST_CHECKPOINT,
            &model,
            &meta_for(0, 0, initial, BEST_CHECKPOINT),
        )?;
        eprintln!("epoch 0: val loss {initial:.5} (initial)");
        TrainState {
            format_version: TRAIN_STATE_VERSION,
            epoch: 1,
            batches_done: 0,
            step: 0,
            epoch_loss_sum: 0.0,
            best_val_loss: initial,
            best_epoch: 0,
            evals_since_best: 0,
            records: Vec::new(),
            step_time: StepTime::default(),
            weights: String::new(),
            optimizer: String::new(),
            manifest_sha256: data.manifest_sha256.clone(),
            loss_scale: None,
        }
    };

    let autocast = Autocast::for_device(t.precision, &req.device);
    // f16 needs loss scaling; bf16 has f32's exponent range and does not.
    let mut scaler = (t.precision == Precision::F16Mixed).then(|| LossScaler {
        state: state.loss_scale.unwrap_or_default(),
    });
    let started = Instant::now();
    let gpu = stoker_zoo::device::is_gpu(&req.device_name);
    let monitor = Monitor::start(Duration::from_millis(500), gpu);
    let mut clock = PhaseClock::new(gpu);
    let sync = || stoker_zoo::device::sync(&req.device).with_context(|| req.device_name.clone());
    let mut progress = Progress::new();
    let batches_per_epoch = train_windows.len().div_ceil(t.batch_size);
    let mut stop = false;
    while state.epoch <= t.epochs && !stop {
        let epoch = state.epoch;
        let epoch_start = Instant::now();
        let lr = t.lr * t.lr_decay.powi(epoch as i32 - 1);
        let order = epoch_order(&train_windows, cfg.seed, epoch);
        let rest = order[(state.batches_done * t.batch_size).min(order.len())..].to_vec();
        progress.start_epoch(
            epoch,
            t.epochs,
            (batches_per_epoch - state.batches_done) as u64,
        );
        let mut loss_sum = Tensor::<1>::zeros([1], &device);
        let record = |state: &mut TrainState,
                      model: &Model,
                      loss_sum: &Tensor<1>,
                      seconds: f64|
         -> Result<(bool, String)> {
            let val_loss = evaluate(model)?;
            let done = state.batches_done.max(1);
            let samples = (done * t.batch_size).min(train_windows.len());
            let train_loss = (state.epoch_loss_sum
                + f64::from(loss_sum.clone().into_scalar::<f32>()))
                / samples as f64;
            let improved = val_loss < state.best_val_loss;
            if improved {
                (
                    state.best_val_loss,
                    state.best_epoch,
                    state.evals_since_best,
                ) = (val_loss, epoch, 0);
                checkpoint::save(
                    &req.out_dir,
                    BEST_CHECKPOINT,
                    model,
                    &meta_for(epoch, state.step, val_loss, BEST_CHECKPOINT),
                )?;
            } else {
                state.evals_since_best += 1;
            }
            let r = EpochRecord {
                epoch,
                step: state.step,
                train_loss,
                val_loss,
                lr,
                samples_per_s: (samples * samples_per_window) as f64 / seconds.max(1e-9),
                seconds,
            };
            let line = format!(
                "epoch {epoch}/{} step {}: train loss {train_loss:.5}, val loss {val_loss:.5}{}, {:.0} samples/s",
                t.epochs,
                state.step,
                if improved { " (best)" } else { "" },
                r.samples_per_s
            );
            state.records.push(r);
            write_metrics_log(&req.out_dir, &state.records)?;
            Ok((t.patience > 0 && state.evals_since_best >= t.patience, line))
        };
        let waited = loader.for_each_batch(rest, t.batch_size, window, |batch| -> Result<()> {
            if stop {
                return Ok(());
            }
            req.device.seed(step_seed(cfg.seed, state.step));
            let len = batch.len;
            let synced = clock.synced(state.step);
            if synced {
                sync()?;
            }
            let compute_start = Instant::now();
            let scale = scaler.as_ref().map_or(1.0, |s| s.state.scale);
            let (mut grads, loss) = batch_gradients(
                &model,
                &batch,
                window,
                shape.features,
                t.accumulate,
                t.loss,
                &autocast,
                scale,
                &device,
            );
            loss_sum = loss_sum.clone() + loss * len as f32;
            if synced {
                sync()?;
            }
            let optimizer_start = Instant::now();
            state.step_time.compute_s += (optimizer_start - compute_start).as_secs_f64();
            let finite = scaler
                .as_mut()
                .is_none_or(|s| s.unscale(&model, &mut grads));
            if finite {
                model = optim.step(lr, model.clone(), grads);
            }
            state.loss_scale = scaler.as_ref().map(|s| s.state);
            if synced {
                sync()?;
                clock.record(
                    (optimizer_start - compute_start).as_secs_f64(),
                    optimizer_start.elapsed().as_secs_f64(),
                );
            }
            state.step_time.optimizer_s += optimizer_start.elapsed().as_secs_f64();
            state.step += 1;
            state.batches_done += 1;
            progress.step(None);
            if t.eval_interval.at_step(state.step) {
                let seconds = epoch_start.elapsed().as_secs_f64();
                let line;
                (stop, line) = record(&mut state, &model, &loss_sum, seconds)?;
                progress.message(&line);
            }
            if t.checkpoint_interval.at_step(state.step) {
                state.epoch_loss_sum += f64::from(
                    std::mem::replace(&mut loss_sum, Tensor::zeros([1], &device))
                        .into_scalar::<f32>(),
                );
                resume::save(&req.out_dir, &model, &optim, &mut state, t.keep_last)?;
            }
            Ok(())
        })?;
        state.step_time.data_wait_s += waited.as_secs_f64();
        if !stop && t.eval_interval.at_epoch_end(epoch) {
            let seconds = epoch_start.elapsed().as_secs_f64();
            let line;
            (stop, line) = record(&mut state, &model, &loss_sum, seconds)?;
            progress.finish_epoch(&line);
        } else {
            progress.finish_epoch(&format!(
                "epoch {epoch}/{} done at step {}",
                t.epochs, state.step
            ));
        }
        state.epoch += 1;
        state.batches_done = 0;
        state.epoch_loss_sum = 0.0;
        let last_val = state
            .records
            .last()
            .map_or(state.best_val_loss, |r| r.val_loss);
        checkpoint::save(
            &req.out_dir,
            LAST_CHECKPOINT,
            &model,
            &meta_for(epoch, state.step, last_val, LAST_CHECKPOINT),
        )?;
        if t.checkpoint_interval.at_epoch_end(epoch) || stop || state.epoch > t.epochs {
            resume::save(&req.out_dir, &model, &optim, &mut state, t.keep_last)?;
        }
        if stop {
            eprintln!(
                "early stop: no better validation loss in {} evaluations",
                t.patience
            );
        }
    }

    let seconds = started.elapsed().as_secs_f64();
    let utilisation = monitor.finish();
    let time = clock.split(state.step_time.clone());
    let step_seconds = time.data_wait_s + time.compute_s + time.optimizer_s;
    let summary = RunSummary {
        task: req.task.clone(),
        model: cfg.model.kind().into(),
        device: req.device_name.clone(),
        fusion: gpu && stoker_zoo::device::fusion_enabled(),
        precision: if autocast.is_mixed() {
            t.precision.name()
        } else {
            "f32"
        }
        .into(),
        skipped_steps: scaler.as_ref().map_or(0, |s| s.state.skipped),
        parameters: model.num_params(),
        epochs: state.epoch - 1,
        steps: state.step,
        batch_size: t.batch_size,
        train_windows: train_windows.len(),
        val_windows: val_windows.len(),
        best_epoch: state.best_epoch,
        best_val_loss: state.best_val_loss,
        final_train_loss: state.records.last().map_or(f64::NAN, |r| r.train_loss),
        samples_per_s: (state.step as f64 * (t.batch_size * samples_per_window) as f64)
            / step_seconds.max(1e-9),
        data_stall_fraction: time.data_wait_s / step_seconds.max(1e-12),
        accumulate: t.accumulate,
        diagnosis: diagnose(&time, &utilisation, t.batch_size, autocast.is_mixed()),
        step_time: time,
        utilisation_mean_percent: utilisation.mean_percent,
        utilisation_std_percent: utilisation.std_percent,
        utilisation_source: utilisation.source.into(),
        machine_cpu_percent: utilisation.machine_percent,
        peak_memory_bytes: utilisation.peak_memory_bytes,
        memory_total_bytes: utilisation.memory_total_bytes,
        seconds,
    };
    atomic::write_json(&req.out_dir.join(SUMMARY_FILE), &summary)?;
    Ok(summary)
}

/// Mean squared error on normalised targets over `windows` (every step and target; for ANC
/// the error microphone's mean square), without gradients.
pub fn evaluate_mse(
    model: &Model,
    loader: &Loader,
    features: usize,
    window: WindowSpec,
    windows: &[usize],
    batch_size: usize,
) -> Result<f64> {
    let device = model
        .devices()
        .into_iter()
        .next()
        .expect("model has a device");
    let mut sum = Tensor::<1>::zeros([1], &device);
    let _ = loader.for_each_batch(
        windows.to_vec(),
        batch_size,
        window,
        |batch| -> Result<(), ()> {
            let x = inputs_tensor(
                batch.inputs,
                [batch.len, window.input_len, features],
                &device,
            );
            let y = targets_tensor(batch.targets, batch.len, &device);
            let mse = model.loss(x, y, LossKind::Mse, &Autocast::F32);
            sum = sum.clone() + mse * batch.len as f32;
            Ok(())
        },
    );
    let sum = sum
        .try_into_scalar::<f32>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(f64::from(sum) / windows.len().max(1) as f64)
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
