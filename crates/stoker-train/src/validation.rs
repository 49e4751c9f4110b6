//! What happens at an evaluation point: the validation loss, the best checkpoint, patience for
//! early stopping, and one line of `metrics.jsonl`.

use std::path::PathBuf;
use std::time::Instant;

use stoker_artifact::layout::METRICS_LOG_FILE;
use stoker_artifact::run::TrainState;
use stoker_artifact::{EpochRecord, PreparedData, atomic};
use stoker_zoo::Model;

use crate::checkpoints::CheckpointStore;
use crate::error::{Error, Result};
use crate::evaluator::Evaluator;
use crate::step::EpochLoss;
use crate::team::Team;
use crate::trainer::TrainRequest;

pub(crate) struct Validation<'a> {
    evaluator: Evaluator,
    store: &'a CheckpointStore,
    /// Evaluation is sharded over its ranks; its leader alone writes the log and prints.
    team: &'a Team,
    metrics_log: PathBuf,
    epochs: usize,
    /// The global batch (every rank's together).
    batch_size: usize,
    patience: usize,
    train_windows: usize,
    /// What the loss sees per window (see `TaskFamily::samples_per_window`), for throughput.
    samples_per_window: usize,
}

/// The outcome of an evaluation: the line to show, and whether patience ran out.
pub(crate) struct Verdict {
    pub line: String,
    pub stop: bool,
}

impl<'a> Validation<'a> {
    /// Validation of a run of `req` on `data` with `train_windows` training windows, taken in
    /// global batches of `global_batch` by `team`.
    pub fn new(
        evaluator: Evaluator,
        store: &'a CheckpointStore,
        req: &TrainRequest,
        data: &PreparedData,
        train_windows: usize,
        global_batch: usize,
        team: &'a Team,
    ) -> Self {
        let t = &req.config.train;
        let window = req.config.window_for(&data.manifest);
        Self {
            evaluator,
            store,
            team,
            metrics_log: req.out_dir.join(METRICS_LOG_FILE),
            epochs: t.epochs,
            batch_size: global_batch,
            patience: t.patience,
            train_windows,
            samples_per_window: data.manifest.family().samples_per_window(window),
        }
    }

    pub fn train_windows(&self) -> usize {
        self.train_windows
    }

    pub fn val_windows(&self) -> usize {
        self.evaluator.windows()
    }

    pub fn samples_per_window(&self) -> usize {
        self.samples_per_window
    }

    /// Epoch 0: the model before training, saved as the best so far; the state of a run that
    /// starts from it.
    pub fn initial(&mut self, model: &Model) -> Result<TrainState> {
        let initial = self.evaluator.mse(model, self.team)?;
        self.store.save_best(model, 0, 0, initial)?;
        if self.team.leads() {
            eprintln!("epoch 0: val loss {initial:.5} (initial)");
        }
        Ok(self.store.fresh_state(initial))
    }

    /// The mean training loss of the epoch in progress over its batches done so far (reading
    /// it waits for the device); a diverged run stops here.
    pub fn train_loss(&self, state: &TrainState, loss: &EpochLoss) -> Result<f64> {
        let samples = (state.batches_done.max(1) * self.batch_size).min(self.train_windows);
        let train_loss = loss.total(state.epoch_loss_sum) / samples as f64;
        Error::check_finite(train_loss, "training loss", state.epoch, state.step)?;
        Ok(train_loss)
    }

    /// Evaluates `model` at the current step of `state` and records it, with the epoch's
    /// training `loss` so far and the time since the epoch `started`.
    pub fn record(
        &mut self,
        state: &mut TrainState,
        model: &Model,
        loss: &EpochLoss,
        lr: f64,
        started: Instant,
    ) -> Result<Verdict> {
        let seconds = started.elapsed().as_secs_f64();
        let epoch = state.epoch;
        let val_loss = self.evaluator.mse(model, self.team)?;
        let samples = (state.batches_done.max(1) * self.batch_size).min(self.train_windows);
        let train_loss = self.train_loss(state, loss)?;
        Error::check_finite(val_loss, "validation loss", epoch, state.step)?;
        let improved = val_loss < state.best_val_loss;
        if improved {
            (
                state.best_val_loss,
                state.best_epoch,
                state.evals_since_best,
            ) = (val_loss, epoch, 0);
            self.store.save_best(model, epoch, state.step, val_loss)?;
        } else {
            state.evals_since_best += 1;
        }
        let r = EpochRecord {
            epoch,
            step: state.step,
            train_loss,
            val_loss,
            lr,
            samples_per_s: (samples * self.samples_per_window) as f64 / seconds.max(1e-9),
            seconds,
        };
        let line = format!(
            "epoch {epoch}/{} step {}: train loss {train_loss:.5}, val loss {val_loss:.5}{}, {:.0} samples/s",
            self.epochs,
            state.step,
            if improved { " (best)" } else { "" },
            r.samples_per_s
        );
        state.records.push(r);
        self.write_metrics_log(&state.records)?;
        Ok(Verdict {
            line,
            stop: self.patience > 0 && state.evals_since_best >= self.patience,
        })
    }

    /// The whole log, rewritten atomically: a resumed run's records come from its state.
    fn write_metrics_log(&self, records: &[EpochRecord]) -> Result<()> {
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).expect("an EpochRecord serialises"));
            text.push('\n');
        }
        if self.team.leads() {
            atomic::write_bytes(&self.metrics_log, text.as_bytes())?;
        }
        Ok(())
    }
}
