//! The run summary (`summary.json`): what was trained, how fast, where the time went, and what
//! bounds the run.

use std::time::{Duration, Instant};

use burn::module::Module;

use stoker_artifact::run::TrainState;
use stoker_artifact::{Precision, RunSummary};
use stoker_runtime::device::{fusion_enabled, is_gpu};

use crate::clock::StepClock;
use crate::diagnosis::diagnose;
use crate::monitor::Monitor;
use crate::step::Learner;
use crate::trainer::TrainRequest;
use crate::validation::Validation;

/// Started when the training loop starts (it runs the utilisation monitor meanwhile); finished
/// with the run's state into the summary.
pub(crate) struct SummaryBuilder {
    task: String,
    model: String,
    device: String,
    gpu: bool,
    precision: Precision,
    batch_size: usize,
    accumulate: usize,
    train_windows: usize,
    val_windows: usize,
    samples_per_window: usize,
    started: Instant,
    monitor: Monitor,
}

impl SummaryBuilder {
    /// Starts the clock and the monitor for a run of `req` validated by `validation`.
    pub fn start(req: &TrainRequest, validation: &Validation) -> Self {
        let t = &req.config.train;
        let gpu = is_gpu(&req.device_name);
        Self {
            task: req.task.clone(),
            model: req.config.model.kind().into(),
            device: req.device_name.clone(),
            gpu,
            precision: t.precision,
            batch_size: t.batch_size,
            accumulate: t.accumulate,
            train_windows: validation.train_windows(),
            val_windows: validation.val_windows(),
            samples_per_window: validation.samples_per_window(),
            started: Instant::now(),
            monitor: Monitor::start(Duration::from_millis(500), gpu),
        }
    }

    pub fn finish(self, state: &TrainState, learner: &Learner, clock: &StepClock) -> RunSummary {
        let seconds = self.started.elapsed().as_secs_f64();
        let utilisation = self.monitor.finish();
        let time = clock.split(state.step_time.clone());
        let step_seconds = time.data_wait_s + time.compute_s + time.optimizer_s;
        let mixed = learner.is_mixed();
        RunSummary {
            task: self.task,
            model: self.model,
            device: self.device,
            fusion: self.gpu && fusion_enabled(),
            precision: if mixed { self.precision.name() } else { "f32" }.into(),
            skipped_steps: learner.loss_scale().map_or(0, |s| s.skipped),
            parameters: learner.model.num_params(),
            epochs: state.epoch - 1,
            steps: state.step,
            batch_size: self.batch_size,
            train_windows: self.train_windows,
            val_windows: self.val_windows,
            best_epoch: state.best_epoch,
            best_val_loss: state.best_val_loss,
            // Every finished epoch sets `train_loss`; the records are evaluations only, and a run
            // evaluated less often than once per run has none.
            final_train_loss: state
                .train_loss
                .or_else(|| state.records.last().map(|r| r.train_loss))
                .unwrap_or(f64::NAN),
            samples_per_s: (state.step as f64 * (self.batch_size * self.samples_per_window) as f64)
                / step_seconds.max(1e-9),
            data_stall_fraction: time.data_wait_s / step_seconds.max(1e-12),
            accumulate: self.accumulate,
            diagnosis: diagnose(&time, &utilisation, self.batch_size, mixed),
            step_time: time,
            utilisation_mean_percent: utilisation.mean_percent,
            utilisation_std_percent: utilisation.std_percent,
            utilisation_source: utilisation.source.into(),
            machine_cpu_percent: utilisation.machine_percent,
            peak_memory_bytes: utilisation.peak_memory_bytes,
            memory_total_bytes: utilisation.memory_total_bytes,
            seconds,
        }
    }
}
