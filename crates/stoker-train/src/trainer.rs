//! The training loop, written out: for each epoch, for each batch — step; evaluate when due
//! (best checkpoint, early stopping); checkpoint when due. The parts it calls are named for
//! what they do: [`Learner`] (the step), [`StepClock`], [`Validation`] (with the
//! [`Evaluator`](crate::evaluator::Evaluator)), [`CheckpointStore`], [`SummaryBuilder`].

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use burn::prelude::*;
use stoker_artifact::layout::SUMMARY_FILE;
use stoker_artifact::{
    PreparedData, RunIdentity, RunLock, RunSummary, Split, StepRecord, TaskConfig, WindowSpec,
    atomic,
};
use stoker_zoo::{InputShape, Model};

use crate::adam::optimizer;
use crate::allreduce::weights_checksum;
use crate::checkpoints::CheckpointStore;
use crate::clock::StepClock;
use crate::error::{Error, Result};
use crate::evaluator::Evaluator;
use crate::loader::{Loader, epoch_order};
use crate::progress::Progress;
use crate::step::{EpochLoss, Learner};
use crate::step_log::StepLog;
use crate::summary::SummaryBuilder;
use crate::team::{Team, share};
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
    train_in(req, &Team::solo())
}

/// [`train`] as one rank of `team`, data-parallel: `train.batch_size` is each rank's batch, the
/// global batch is ranks × it, in the order a single process would take it, and rank r takes
/// its r-th share. Gradients are averaged before clipping and the step, so the ranks hold one
/// model (checked at every evaluation); evaluation is sharded; rank 0 alone writes.
pub fn train_in(req: &TrainRequest, team: &Team) -> Result<RunSummary> {
    let (cfg, t) = (&req.config, &req.config.train);
    let started_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let run = RunIdentity::new(cfg, started_unix).with_ranks(team.size());
    let _lock = team
        .leads()
        .then(|| RunLock::for_stage_dir(&req.out_dir))
        .transpose()?;
    let data = Arc::new(PreparedData::open(&req.data_dir)?);
    let window = cfg.window_for(&data.manifest);
    let (train_windows, val_windows) = split_windows(&data, window)?;
    let shape = InputShape::of(&data.manifest, window);
    let store = CheckpointStore::create(&req.out_dir, cfg, &shape, &data.manifest_sha256, run)?
        .writing(team.leads());
    // The leader has taken the lock (and swept a killed run's leftovers) before anyone reads.
    team.barrier();
    req.device.seed(cfg.seed);
    let device = req.device.clone().autodiff();
    let model = Model::new(&cfg.model, &shape, &device)?;
    let val_share = val_windows[team.share(val_windows.len())].to_vec();
    let evaluator = Evaluator::new(data.clone(), val_share, val_windows.len(), &shape, req);
    let global_batch = t.batch_size * team.size();
    let mut validation = Validation::new(
        evaluator,
        &store,
        req,
        &data,
        train_windows.len(),
        global_batch,
        team,
    );
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
    check_same_weights(team, &learner, state.step)?;
    let summary = SummaryBuilder::start(req, &validation, team);
    let mut clock = StepClock::new(&req.device, &req.device_name).every_step(!team.is_solo());
    let mut progress = Progress::new(team.leads());
    let mut loader = Loader::new(data.clone(), t.workers, t.prefetch);
    let mut step_log = if t.log_steps && team.leads() {
        StepLog::open(&req.out_dir, req.resume.then_some(state.step))?
    } else {
        StepLog::off()
    };
    let batches_per_epoch = train_windows.len().div_ceil(global_batch);
    for epoch in state.epoch..=t.epochs {
        let (started, mut stop) = (Instant::now(), false);
        let lr = t.lr * t.lr_decay.powi(epoch as i32 - 1);
        let order = epoch_order(&train_windows, cfg.seed, epoch);
        let rest = &order[(state.batches_done * global_batch).min(order.len())..];
        let shares = RankBatches::of(rest, global_batch, team);
        let left = batches_per_epoch - state.batches_done;
        progress.start_epoch(epoch, t.epochs, left as u64);
        let mut loss = EpochLoss::new(&device);
        let mut batches = loader.pass_ranges(shares.order, shares.ranges, window);
        for (batch, global_len) in batches.by_ref().zip(shares.global_lens) {
            // The dropout RNG is reseeded from (seed, rank, step): a resumed run draws the same.
            req.device
                .seed(step_seed(cfg.seed, team.rank(), state.step));
            let lap = clock.lap(state.step, &mut state.step_time)?;
            let batch_loss = learner.step(&batch, global_len, lr, lap, team)?;
            if step_log.is_on() {
                step_log.record(&StepRecord {
                    epoch,
                    step: state.step + 1,
                    loss: f64::from(batch_loss.clone().into_scalar::<f32>()),
                    lr,
                })?;
            }
            loss.add(batch_loss, global_len);
            (state.step, state.batches_done) = (state.step + 1, state.batches_done + 1);
            progress.step(None);
            if t.eval_interval.at_step(state.step) {
                check_same_weights(team, &learner, state.step)?;
                let verdict = validation.record(&mut state, &learner.model, &loss, lr, started)?;
                progress.message(&verdict.line);
                stop = verdict.stop;
            }
            if t.checkpoint_interval.at_step(state.step) {
                state.epoch_loss_sum += loss.flush();
                step_log.flush()?;
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
            check_same_weights(team, &learner, state.step)?;
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
            step_log.flush()?;
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
    step_log.flush()?;
    let summary = summary.finish(&state, &learner, &clock, team);
    if team.leads() {
        atomic::write_json(&req.out_dir.join(SUMMARY_FILE), &summary)?;
    }
    Ok(summary)
}

/// A rank's shares of an epoch's global batches: `order` holds its windows, `ranges` its
/// batches in it (one per global batch, possibly empty), `global_lens` each global batch's size.
struct RankBatches {
    order: Vec<usize>,
    ranges: Vec<Range<usize>>,
    global_lens: Vec<usize>,
}

impl RankBatches {
    /// The global batches of `global_batch` windows of `order`, each split over `team`.
    fn of(order: &[usize], global_batch: usize, team: &Team) -> Self {
        Self::of_rank(order, global_batch, team.rank(), team.size())
    }

    fn of_rank(order: &[usize], global_batch: usize, rank: usize, ranks: usize) -> Self {
        let mut shares = Self {
            order: Vec::with_capacity(order.len() / ranks + global_batch),
            ranges: Vec::new(),
            global_lens: Vec::new(),
        };
        for global in order.chunks(global_batch) {
            let start = shares.order.len();
            shares
                .order
                .extend_from_slice(&global[share(global.len(), rank, ranks)]);
            shares.ranges.push(start..shares.order.len());
            shares.global_lens.push(global.len());
        }
        shares
    }
}

/// In a team, an error unless every rank holds the weights of `learner` (a solo run: no check).
fn check_same_weights(team: &Team, learner: &Learner, step: u64) -> Result<()> {
    if team.is_solo() {
        return Ok(());
    }
    team.check_same_weights(weights_checksum(&learner.model), step)
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

/// The backend RNG (dropout) is reseeded from (seed, rank, step) before every step, so a resumed
/// run draws exactly what the uninterrupted run would have, and ranks draw different masks
/// (rank 0 draws a single process's).
fn step_seed(seed: u64, rank: usize, step: u64) -> u64 {
    let rank_mix = (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    seed ^ rank_mix ^ step.wrapping_add(1).wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every global batch is the ranks' shares laid end to end, in rank order; shares differ
    /// by one window at most, and a short last batch leaves some ranks none.
    #[test]
    fn the_ranks_shares_rebuild_each_global_batch() {
        let order: Vec<usize> = (100..203).collect();
        for ranks in [1, 2, 3, 8] {
            let shares: Vec<RankBatches> = (0..ranks)
                .map(|r| RankBatches::of_rank(&order, 10, r, ranks))
                .collect();
            for (b, global) in order.chunks(10).enumerate() {
                let parts: Vec<&[usize]> = shares
                    .iter()
                    .map(|s| &s.order[s.ranges[b].clone()])
                    .collect();
                assert_eq!(parts.concat(), global, "{ranks} ranks, batch {b}");
                let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{sizes:?}");
                assert!(shares.iter().all(|s| s.global_lens[b] == global.len()));
            }
            // 103 windows: the last global batch has 3, so with 8 ranks five get none.
            if ranks == 8 {
                let empty = shares.iter().filter(|s| s.ranges[10].is_empty()).count();
                assert_eq!(empty, 5);
            }
        }
    }
}
