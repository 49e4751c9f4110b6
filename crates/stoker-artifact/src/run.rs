//! What train leaves for predict and for people: checkpoint metadata, the per-epoch metrics log,
//! the run summary; and what predict leaves: its metrics.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::error::{ArtifactError, Result};
use crate::identity::RunIdentity;
use crate::manifest::WindowSpec;
use crate::model::{MAX_SIZE, ModelSpec};

/// 2: the LSTM layers became `StepLstm` (fused gate weights), so version-1 weights do not load.
pub const CHECKPOINT_VERSION: u32 = 2;

/// Reads a JSON artifact and refuses any `format_version` but `expected`.
fn load_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    version: impl Fn(&T) -> u32,
    expected: u32,
) -> Result<T> {
    let value: T = atomic::read_json(path)?;
    match version(&value) {
        found if found == expected => Ok(value),
        found => Err(ArtifactError::Version {
            path: path.into(),
            field: "format_version",
            found,
            expected,
        }),
    }
}

/// Written beside each weights file; predict refuses weights whose data manifest differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format_version: u32,
    pub model: ModelSpec,
    /// Number of input features the model was built for.
    pub input_features: usize,
    /// The windows the model was trained on (predict uses the same).
    pub window: WindowSpec,
    /// Indices of the targets among the input features.
    pub targets: Vec<usize>,
    /// The acoustic plant of an ANC model (its loss and the predictor's residual need it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anc: Option<crate::AncSignals>,
    /// SHA-256 of the `manifest.json` the model was trained on.
    pub manifest_sha256: String,
    pub epoch: usize,
    pub step: u64,
    pub val_loss: f64,
    pub precision: String,
    /// Weights file name, relative to the metadata file.
    pub weights: String,
}

impl CheckpointMeta {
    /// Reads and checks the metadata: the zoo builds a model from it before any weight is
    /// read, so what would not build (or would ask for absurd memory) is refused here.
    pub fn load(path: &Path) -> Result<Self> {
        let meta: Self = load_versioned(path, |m: &Self| m.format_version, CHECKPOINT_VERSION)?;
        crate::prepared::check_targets(path, &meta.targets, meta.input_features)?;
        crate::prepared::check_file_name(path, "weights", &meta.weights)?;
        let invalid = |message| ArtifactError::invalid(path, message);
        meta.model.validate().map_err(invalid)?;
        meta.window.check().map_err(invalid)?;
        if meta.input_features > MAX_SIZE {
            return Err(invalid(format!(
                "`input_features` must be at most {MAX_SIZE}, got {}",
                meta.input_features
            )));
        }
        Ok(meta)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        atomic::write_json(path, self)
    }
}

pub const TRAIN_STATE_VERSION: u32 = 1;

/// `train/state.json`: where a run stands, written last at every resumable checkpoint so that it
/// only ever names files that are complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format_version: u32,
    /// The epoch in progress (1-based) and how many of its batches are done.
    pub epoch: usize,
    pub batches_done: usize,
    pub step: u64,
    /// Sum over the finished batches of this epoch of (batch mean loss × batch size).
    pub epoch_loss_sum: f64,
    pub best_val_loss: f64,
    pub best_epoch: usize,
    pub evals_since_best: usize,
    pub records: Vec<EpochRecord>,
    pub step_time: StepTime,
    /// Weights and optimizer state of this checkpoint, relative to `train/`.
    pub weights: String,
    pub optimizer: String,
    /// SHA-256 of the manifest of the data being trained on.
    pub manifest_sha256: String,
    /// f16 runs: the dynamic loss scale, so a resumed run scales as the uninterrupted one.
    #[serde(default)]
    pub loss_scale: Option<LossScaleState>,
    /// Mean training loss of the last finished epoch, whether or not it was evaluated: the
    /// summary's `final_train_loss`. Absent before the first epoch ends (and in older states).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    /// The run this state belongs to; `--resume` refuses a state of another run. Absent in
    /// states written before run identities, which resume therefore refuses too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunIdentity>,
    /// The validation loss of the model training started from (epoch 0). Absent in older
    /// states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_val_loss: Option<f64>,
}

/// Dynamic loss scaling's state (f16-mixed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaleState {
    pub scale: f32,
    /// Finite steps since the scale last changed.
    pub clean_steps: usize,
    pub skipped: u64,
}

impl Default for LossScaleState {
    fn default() -> Self {
        Self {
            scale: 65_536.0,
            clean_steps: 0,
            skipped: 0,
        }
    }
}

impl TrainState {
    pub fn load(path: &Path) -> Result<Self> {
        load_versioned(path, |s: &Self| s.format_version, TRAIN_STATE_VERSION)
    }
}

/// One line of `train/metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub step: u64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub lr: f64,
    pub samples_per_s: f64,
    pub seconds: f64,
}

/// One line of `train/steps.jsonl` (`train.log_steps`): a step's training loss, the mean over
/// its (global) batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub epoch: usize,
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
}

/// `train/summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub task: String,
    pub model: String,
    pub device: String,
    /// burn's kernel fusion was on (GPU devices of a build with the `fusion` feature).
    #[serde(default)]
    pub fusion: bool,
    pub precision: String,
    /// Optimizer steps skipped by f16 loss scaling (non-finite gradients).
    pub skipped_steps: u64,
    pub parameters: usize,
    pub epochs: usize,
    pub steps: u64,
    pub batch_size: usize,
    pub train_windows: usize,
    pub val_windows: usize,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub final_train_loss: f64,
    pub samples_per_s: f64,
    /// Fraction of step time spent waiting for the next batch.
    pub data_stall_fraction: f64,
    /// Micro-batches per optimizer step; the effective batch is `batch_size`.
    pub accumulate: usize,
    pub step_time: StepTime,
    /// Device utilisation over the run, % of capacity, sampled twice a second.
    pub utilisation_mean_percent: f64,
    pub utilisation_std_percent: f64,
    /// Where utilisation and memory come from: `process-cpu` (the process's share of all
    /// cores and its resident set) or `nvml` (the GPU's own counters).
    #[serde(default)]
    pub utilisation_source: String,
    /// The whole machine's CPU busy share over the run, % (this process and any other).
    #[serde(default)]
    pub machine_cpu_percent: Option<f64>,
    /// Peak memory in use, bytes, and the capacity bounding it (device or machine memory).
    pub peak_memory_bytes: u64,
    #[serde(default)]
    pub memory_total_bytes: Option<u64>,
    pub diagnosis: Diagnosis,
    pub seconds: f64,
    /// The validation loss training started from (epoch 0), and what that start was when it is
    /// the model's linear part alone (a warm start: `the linear skip's ridge fit`, `the
    /// least-squares linear FIR`): `best_val_loss` below it is what the learned parts added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_start: Option<String>,
    /// Processes that trained data-parallel (`batch_size` is each one's batch).
    #[serde(default = "one_rank")]
    pub ranks: usize,
    /// A distributed run's: the gradients' all-reduce as a share of step time, and each rank's
    /// data stall (share of its step time waiting for a batch), in rank order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedSummary>,
}

fn one_rank() -> usize {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributedSummary {
    pub allreduce_fraction: f64,
    pub rank_data_stall_fraction: Vec<f64>,
    /// The global batch: ranks × `batch_size`.
    pub global_batch: usize,
}

/// Where the training steps' time went, summed over the run (seconds, measured at the host;
/// on GPU devices the split between compute and optimizer comes from steps timed with the
/// device synchronised, since the host otherwise only sees kernels being queued).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTime {
    pub data_wait_s: f64,
    pub compute_s: f64,
    pub optimizer_s: f64,
    /// Averaging gradients over the ranks of a distributed run (0 for one process).
    #[serde(default)]
    pub allreduce_s: f64,
}

impl StepTime {
    /// The steps' whole time.
    pub fn total_s(&self) -> f64 {
        self.data_wait_s + self.compute_s + self.allreduce_s + self.optimizer_s
    }
}

/// What bounds the run, and the knob to turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub bound: String,
    pub advice: String,
}

impl RunSummary {
    pub fn load(path: &Path) -> Result<Self> {
        atomic::read_json(path)
    }
}

/// `predict/metrics.json`: errors over every window, step and target of a split, in `unit`
/// (the targets' raw unit, or `normalised`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastMetrics {
    pub split: String,
    pub unit: String,
    pub windows: usize,
    pub mse: f64,
    pub rmse: f64,
    pub mae: f64,
    /// The same errors for persistence, `target(t+k) := target(t)`, on the same windows.
    pub persistence_mse: f64,
    pub persistence_rmse: f64,
    pub persistence_mae: f64,
    /// The literature's name for `persistence_mse` on multi-step tasks (repeat the last value).
    pub repeat_mse: f64,
    pub checkpoint: String,
    pub infer_samples_per_s: f64,
    /// The network's linear part alone on the same windows (the LSTM-attention's skip, plus
    /// persistence for a residual model): what the learned parts add is `mse` minus this.
    /// Absent for networks without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_only_mse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_only_rmse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_only_mae: Option<f64>,
}

/// `predict/metrics.json` of an ANC task: noise reduction NR = 10·log10(Σd² / Σe²) over the
/// test split (the last 30 % by default) for the network and both linear baselines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AncMetrics {
    pub split: String,
    /// Samples the NR figures cover.
    pub samples: usize,
    pub sample_rate: u32,
    pub nr_db: f64,
    /// FxNLMS adapting online over the whole signal (`fxnlms_taps`, `fxnlms_step`).
    pub fxnlms_nr_db: f64,
    /// The offline least-squares causal FIR (`fxnlms_taps` taps), fitted on train + validation.
    pub wiener_nr_db: f64,
    pub fxnlms_taps: usize,
    pub fxnlms_step: f64,
    /// The network's own linear FIR alone (its band networks off), on the same split: what the
    /// learned part adds is `nr_db` minus this. Absent for a network without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_only_nr_db: Option<f64>,
    /// NR of the network within each band of its filterbank.
    pub band_nr_db: Vec<BandNr>,
    pub saturation: f64,
    pub checkpoint: String,
    /// Control samples computed (the whole signal) and how fast; `per-sample` or `batched`.
    pub predicted_samples: usize,
    pub infer_samples_per_s: f64,
    pub mode: String,
    /// `--stream` only: how the live-style run kept up with its blocks' deadlines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamTiming>,
}

/// A streaming run's blocks against their deadlines (a block's duration at the sample rate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamTiming {
    pub block: usize,
    /// The weights' type in the products: `f32` or `bf16`.
    pub weights: String,
    pub blocks: usize,
    pub deadline_us: f64,
    pub missed_deadlines: usize,
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    pub latency_max_us: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandNr {
    pub low_hz: f64,
    pub high_hz: f64,
    pub nr_db: f64,
}

impl AncMetrics {
    pub fn load(path: &Path) -> Result<Self> {
        atomic::read_json(path)
    }
}

impl ForecastMetrics {
    pub fn load(path: &Path) -> Result<Self> {
        atomic::read_json(path)
    }
}
