//! The run summary (`summary.json`): what was trained, how fast, where the time went, and what
//! bounds the run.

use std::time::{Duration, Instant};

use burn::module::Module;

use stoker_artifact::run::TrainState;
use stoker_artifact::{DistributedSummary, Precision, RunSummary};
use stoker_runtime::device::{fusion_enabled, is_gpu};

use crate::clock::StepClock;
use crate::diagnosis::diagnose;
use crate::monitor::{Monitor, Utilisation};
use crate::step::Learner;
use crate::team::Team;
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
    ranks: usize,
    accumulate: usize,
    train_windows: usize,
    val_windows: usize,
    samples_per_window: usize,
    linear_start: Option<&'static str>,
    started: Instant,
    monitor: Monitor,
}

impl SummaryBuilder {
    /// Starts the clock and the monitor for a run of `req` validated by `validation`.
    pub fn start(req: &TrainRequest, validation: &Validation, team: &Team) -> Self {
        let t = &req.config.train;
        let gpu = is_gpu(&req.device_name);
        Self {
            task: req.task.clone(),
            model: req.config.model.kind().into(),
            device: req.device_name.clone(),
            gpu,
            precision: t.precision,
            batch_size: t.batch_size,
            ranks: team.size(),
            accumulate: t.accumulate,
            train_windows: validation.train_windows(),
            val_windows: validation.val_windows(),
            samples_per_window: validation.samples_per_window(),
            linear_start: req.config.model.linear_start(),
            started: Instant::now(),
            monitor: Monitor::start(Duration::from_millis(500), gpu),
        }
    }

    /// The summary; in a team every rank calls it (it gathers each rank's data stall).
    pub fn finish(
        self,
        state: &TrainState,
        learner: &Learner,
        clock: &StepClock,
        team: &Team,
    ) -> RunSummary {
        let seconds = self.started.elapsed().as_secs_f64();
        let utilisation = self.monitor.finish();
        // The machine's busy share counts this run's other ranks here as other processes: to
        // the diagnosis they are this run (taken as busy as this one), not a neighbour's load.
        let siblings = (team.local_size() - 1) as f64;
        let ours = utilisation.mean_percent;
        let diagnosed = Utilisation {
            machine_percent: utilisation
                .machine_percent
                .map(|m| (m - siblings * ours).max(ours)),
            ..utilisation.clone()
        };
        let time = clock.split(state.step_time.clone());
        let step_seconds = time.total_s();
        let stall = time.data_wait_s / step_seconds.max(1e-12);
        let global_batch = self.batch_size * self.ranks;
        let distributed = (!team.is_solo()).then(|| DistributedSummary {
            allreduce_fraction: time.allreduce_s / step_seconds.max(1e-12),
            rank_data_stall_fraction: team.gather_f64(stall),
            global_batch,
        });
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
            samples_per_s: (state.step as f64 * (global_batch * self.samples_per_window) as f64)
                / step_seconds.max(1e-9),
            data_stall_fraction: stall,
            accumulate: self.accumulate,
            diagnosis: diagnose(&time, &diagnosed, self.batch_size, mixed),
            step_time: time,
            utilisation_mean_percent: utilisation.mean_percent,
            utilisation_std_percent: utilisation.std_percent,
            utilisation_source: utilisation.source.into(),
            machine_cpu_percent: utilisation.machine_percent,
            peak_memory_bytes: utilisation.peak_memory_bytes,
            memory_total_bytes: utilisation.memory_total_bytes,
            seconds,
            initial_val_loss: state.initial_val_loss,
            linear_start: state
                .initial_val_loss
                .and(self.linear_start)
                .map(String::from),
            ranks: self.ranks,
            distributed,
        }
    }
}
