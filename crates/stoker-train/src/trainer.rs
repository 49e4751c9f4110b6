//! The training loop, written out: for each epoch, for each batch — step; evaluate when due
//! (best checkpoint, early stopping); checkpoint when due. The parts it calls are named for
//! what they do: [`Learner`] (the step), [`StepClock`], [`Validation`] (with the
//! [`Evaluator`](crate::evaluator::Evaluator)), [`CheckpointStore`], [`SummaryBuilder`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use burn::prelude::*;
use stoker_artifact::layout::SUMMARY_FILE;
use stoker_artifact::{
    PreparedData, RunIdentity, RunLock, RunSummary, Split, TaskConfig, WindowSpec, atomic,
};
use stoker_zoo::{InputShape, Model};

use crate::adam::optimizer;
use crate::checkpoints::CheckpointStore;
use crate::clock::StepClock;
use crate::error::{Error, Result};
use crate::evaluator::Evaluator;
use crate::loader::{Loader, epoch_order};
use crate::progress::Progress;
use crate::step::{EpochLoss, Learner};
use crate::summary::SummaryBuilder;
use crate::validation::Validation;

/// One training run: what to train (`config`), on which prepared data, into which `train/`.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub config: TaskConfig,
    /// The task's name, for the summary.
    pub task: String,
    pub data_dir: PathBuf,
    pub out_dir: PathBuf,
    pub device: Device,
    /// The `--device` name the device was opened with (`cpu`, `wgpu`, `cuda`).
    pub device_name: String,
    /// Continue from the newest resumable checkpoint in `out_dir`.
    pub resume: bool,
}

/// Trains the model `req.config` names on the prepared data in `req.data_dir`; writes the
/// checkpoints, `metrics.jsonl` and `summary.json` to `req.out_dir`.
pub fn train(req: &TrainRequest) -> Result<RunSummary> {
    let (cfg, t) = (&req.config, &req.config.train);
    let started_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let run = RunIdentity::new(cfg, started_unix);
    let _lock = RunLock::for_stage_dir(&req.out_dir)?;
    let data = Arc::new(PreparedData::open(&req.data_dir)?);
    let window = cfg.window_for(&data.manifest);
    let (train_windows, val_windows) = split_windows(&data, window)?;
    let shape = InputShape::of(&data.manifest, window);
    let store = CheckpointStore::create(&req.out_dir, cfg, &shape, &data.manifest_sha256, run)?;
    req.device.seed(cfg.seed);
    let device = req.device.clone().autodiff();
    let model = Model::new(&cfg.model, &shape, &device)?;
    let evaluator = Evaluator::new(data.clone(), val_windows, &shape, req);
    let mut validation = Validation::new(evaluator, &store, req, &data, train_windows.len());
    let (model, optim, mut state) = if req.resume {
        let (model, optim, state) = store.load_resumable(model, optimizer(t))?;
        eprintln!("resuming at epoch {}, step {}", state.epoch, state.step);
        (model, optim, state)
    } else {
        store.discard_resumable()?;
        // The starting point competes too: a warm-started model may already beat what
        // training reaches, and best-on-validation then keeps it.
        let model = model.warm_start(&cfg.model, &data.store, &train_windows, window);
        let state = validation.initial(&model)?;
        (model, optimizer(t), state)
    };
    let mut learner = Learner::new(model, optim, t, &shape, &req.device, state.loss_scale);
    let summary = SummaryBuilder::start(req, &validation);
    let mut clock = StepClock::new(&req.device, &req.device_name);
    let mut progress = Progress::new();
    let mut loader = Loader::new(data.clone(), t.workers, t.prefetch);
    let batches_per_epoch = train_windows.len().div_ceil(t.batch_size);
    for epoch in state.epoch..=t.epochs {
        let (started, mut stop) = (Instant::now(), false);
        let lr = t.lr * t.lr_decay.powi(epoch as i32 - 1);
        let order = epoch_order(&train_windows, cfg.seed, epoch);
        let rest = order[(state.batches_done * t.batch_size).min(order.len())..].to_vec();
        let left = batches_per_epoch - state.batches_done;
        progress.start_epoch(epoch, t.epochs, left as u64);
        let mut loss = EpochLoss::new(&device);
        let mut batches = loader.pass(rest, t.batch_size, window);
        for batch in batches.by_ref() {
            // The dropout RNG is reseeded from (seed, step): a resumed run draws the same.
            req.device.seed(step_seed(cfg.seed, state.step));
            let lap = clock.lap(state.step, &mut state.step_time)?;
            loss.add(learner.step(&batch, lr, lap)?, batch.len);
            (state.step, state.batches_done) = (state.step + 1, state.batches_done + 1);
            progress.step(None);
            if t.eval_interval.at_step(state.step) {
                let verdict = validation.record(&mut state, &learner.model, &loss, lr, started)?;
                progress.message(&verdict.line);
                stop = verdict.stop;
            }
            if t.checkpoint_interval.at_step(state.step) {
                state.epoch_loss_sum += loss.flush();
                store.save_resumable(&learner, &mut state)?;
            }
            if stop {
                break;
            }
        }
        state.step_time.data_wait_s += batches.waited().as_secs_f64();
        // Read whether or not the epoch is evaluated: the summary's final training loss.
        let train_loss = validation.train_loss(&state, &loss)?;
        if !stop && t.eval_interval.at_epoch_end(epoch) {
            let verdict = validation.record(&mut state, &learner.model, &loss, lr, started)?;
            progress.finish_epoch(&verdict.line);
            stop = verdict.stop;
        } else {
            progress.finish_epoch(&format!(
                "epoch {epoch}/{} done at step {}",
                t.epochs, state.step
            ));
        }
        (state.epoch, state.batches_done, state.epoch_loss_sum) = (epoch + 1, 0, 0.0);
        state.train_loss = Some(train_loss);
        let last_val = state
            .records
            .last()
            .map_or(state.best_val_loss, |r| r.val_loss);
        store.save_last(&learner.model, epoch, state.step, last_val)?;
        if t.checkpoint_interval.at_epoch_end(epoch) || stop || state.epoch > t.epochs {
            store.save_resumable(&learner, &mut state)?;
        }
        if stop {
            eprintln!(
                "early stop: no better validation loss in {} evaluations",
                t.patience
            );
            break;
        }
    }
    let summary = summary.finish(&state, &learner, &clock);
    atomic::write_json(&req.out_dir.join(SUMMARY_FILE), &summary)?;
    Ok(summary)
}

/// The train and validation windows for `window`; neither may be empty.
fn split_windows(data: &PreparedData, window: WindowSpec) -> Result<(Vec<usize>, Vec<usize>)> {
    let train = data.windows(Split::Train, window);
    let val = data.windows(Split::Val, window);
    if train.is_empty() || val.is_empty() {
        return Err(Error::Settings(format!(
            "{}: no train or validation windows for input_len {} / output_len {}",
            data.dir.display(),
            window.input_len,
            window.output_len
        )));
    }
    Ok((train, val))
}

/// The backend RNG (dropout) is reseeded from (seed, step) before every step, so a resumed run
/// draws exactly what the uninterrupted run would have.
fn step_seed(seed: u64, step: u64) -> u64 {
    seed ^ step.wrapping_add(1).wrapping_mul(0x2545_F491_4F6C_DD1D)
}
