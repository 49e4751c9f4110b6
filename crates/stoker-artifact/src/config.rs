//! The task config: one TOML file per task under `configs/`, read by every stage.
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ArtifactError, Result};
use crate::model::ModelSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Seed for data generation, initialisation and shuffling.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub data: DataConfig,
    pub model: ModelSpec,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub predict: PredictConfig,
}

fn default_seed() -> u64 {
    42
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Raw input path used when `--input` is not given.
    #[serde(default)]
    pub input: Option<PathBuf>,
    /// Input window length in rows (forecasting; ANC derives it from the model's receptive
    /// field and the secondary path).
    #[serde(default)]
    pub input_len: usize,
    /// How many rows ahead of the last input row the first target lies (1 = next row).
    #[serde(default = "one")]
    pub horizon: usize,
    /// Consecutive target rows predicted per window (96 for the ETT protocol; for ANC the
    /// error-microphone samples in the loss of one training chunk).
    #[serde(default = "one")]
    pub output_len: usize,
    /// Rows per Parquet shard: bounds prepare's memory, whatever the input size.
    #[serde(default = "default_shard_rows")]
    pub shard_rows: usize,
    pub source: SourceConfig,
}

fn one() -> usize {
    1
}

fn default_shard_rows() -> usize {
    65_536
}

/// Where raw rows come from and how they are split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    /// The UCI Beijing PM2.5 hourly CSV (`No,year,month,day,hour,pm2.5,…`).
    Pm25 {
        /// First year of validation; earlier rows train.
        val_start_year: i32,
        /// First year of test; earlier rows (from `val_start_year`) validate.
        test_start_year: i32,
        /// Longest run of missing hours filled by linear interpolation for inputs.
        /// Filled values are never used as targets.
        #[serde(default = "default_max_gap")]
        max_gap: usize,
        /// Adds hour-of-day, day-of-week and day-of-year as sin/cos pairs.
        #[serde(default)]
        calendar: bool,
    },
    /// ETT-format CSV: a timestamp column (`date`) then numeric columns, all inputs and targets.
    /// Split by row counts; the defaults are the literature's ETTh 12/4/4 months.
    Ett {
        #[serde(default = "ett_train_rows")]
        train_rows: usize,
        #[serde(default = "ett_eval_rows")]
        val_rows: usize,
        #[serde(default = "ett_eval_rows")]
        test_rows: usize,
        #[serde(default = "default_max_gap")]
        max_gap: usize,
    },
    /// A noise recording (WAV) with measured primary and secondary acoustic paths, for active
    /// noise control: d = primary * x; the first `train_fraction` of the signal trains (its
    /// last `val_fraction` of the whole validates), the rest tests.
    Anc(AncSourceConfig),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AncSourceConfig {
    /// Impulse response of the primary path (noise source → error microphone): one
    /// coefficient per line (`#` comments) or a WAV, at `sample_rate`.
    pub primary_path: Option<PathBuf>,
    /// Impulse response of the secondary path (loudspeaker → error microphone), same formats.
    pub secondary_path: Option<PathBuf>,
    #[serde(default = "default_anc_rate")]
    pub sample_rate: u32,
    /// Resample recordings at another rate (anti-aliased); when false they are an error.
    #[serde(default = "yes")]
    pub resample: bool,
    #[serde(default = "default_train_fraction")]
    pub train_fraction: f64,
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    /// Loudspeaker saturation η between the controller output y and the secondary path:
    /// the plant hears tanh(η·y)/η, y in units of the disturbance's train RMS (0 = linear).
    #[serde(default)]
    pub saturation: f64,
}

fn default_anc_rate() -> u32 {
    16_000
}

fn yes() -> bool {
    true
}

fn default_train_fraction() -> f64 {
    0.7
}

fn default_val_fraction() -> f64 {
    0.1
}

fn ett_train_rows() -> usize {
    12 * 30 * 24
}

fn ett_eval_rows() -> usize {
    4 * 30 * 24
}

fn default_max_gap() -> usize {
    3
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Learning rate of the model's linear part (the LSTM-attention's skip, the ANC's linear
    /// FIR) as a multiple of `lr`: a network that starts from a fitted linear forecast learns
    /// its residual faster than that fit should drift (0 freezes it).
    pub linear_lr_scale: f64,
    pub weight_decay: f64,
    /// Multiply the learning rate by `lr_decay` every epoch.
    pub lr_decay: f64,
    /// Clip the gradient norm to this value (0 = off).
    pub grad_clip: f64,
    /// Loss on normalised targets.
    pub loss: LossKind,
    /// Split every batch into this many micro-batches and accumulate their gradients: the same
    /// update as one batch of `batch_size`, with the activation memory of `batch_size / K`.
    pub accumulate: usize,
    /// Loader threads gathering batches from the window store.
    pub workers: usize,
    /// Batches each loader thread may hold ready ahead of the training step.
    pub prefetch: usize,
    /// How often to evaluate on the validation split ("1 epoch", "500 steps").
    pub eval_interval: Interval,
    /// How often to write a resumable checkpoint ("1 epoch", "200 steps").
    pub checkpoint_interval: Interval,
    /// Stop after this many evaluations without a better validation loss (0 = never).
    pub patience: usize,
    /// Resumable checkpoints kept on disk (the newest ones).
    pub keep_last: usize,
    /// Compute precision: f32 master weights and optimizer state always; the mixed modes run
    /// matmul / conv / LSTM-gate ops in the low type.
    pub precision: Precision,
    /// Write every step's training loss to `train/steps.jsonl` (reading it waits for the
    /// device each step: for curves and checks, not for speed).
    pub log_steps: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    F32,
    Bf16Mixed,
    F16Mixed,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16Mixed => "bf16-mixed",
            Precision::F16Mixed => "f16-mixed",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16-mixed" => Ok(Self::Bf16Mixed),
            "f16-mixed" => Ok(Self::F16Mixed),
            other => Err(format!("`{other}`: expected f32, bf16-mixed or f16-mixed")),
        }
    }
}

/// "N epoch(s)" or "N step(s)".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Interval {
    pub every: usize,
    pub unit: IntervalUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalUnit {
    Epochs,
    Steps,
}

impl Interval {
    pub fn epochs(every: usize) -> Self {
        Self {
            every,
            unit: IntervalUnit::Epochs,
        }
    }

    /// Whether the interval falls at the end of `epoch` / after optimizer step `step`.
    pub fn at_epoch_end(&self, epoch: usize) -> bool {
        self.unit == IntervalUnit::Epochs && epoch.is_multiple_of(self.every)
    }

    pub fn at_step(&self, step: u64) -> bool {
        self.unit == IntervalUnit::Steps && step.is_multiple_of(self.every as u64)
    }
}

impl TryFrom<String> for Interval {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("`{text}`: expected \"N epochs\" or \"N steps\" with N > 0");
        let mut parts = text.split_whitespace();
        let every: usize = parts
            .next()
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .ok_or_else(bad)?;
        let unit = match parts.next() {
            Some("epoch" | "epochs") => IntervalUnit::Epochs,
            Some("step" | "steps") => IntervalUnit::Steps,
            _ => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self { every, unit })
    }
}

impl From<Interval> for String {
    fn from(i: Interval) -> String {
        let unit = match i.unit {
            IntervalUnit::Epochs => "epochs",
            IntervalUnit::Steps => "steps",
        };
        format!("{} {unit}", i.every)
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 128,
            lr: 1e-3,
            linear_lr_scale: 1.0,
            weight_decay: 0.0,
            lr_decay: 1.0,
            grad_clip: 0.0,
            loss: LossKind::Mse,
            accumulate: 1,
            workers: 2,
            prefetch: 4,
            eval_interval: Interval::epochs(1),
            checkpoint_interval: Interval::epochs(1),
            patience: 0,
            keep_last: 2,
            precision: Precision::F32,
            log_steps: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    Mse,
    /// Huber with delta 1 on normalised targets: robust to pollution spikes.
    Huber,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictConfig {
    /// Windows per inference batch (ANC: control samples per batch).
    pub batch_size: usize,
    /// Which checkpoint to evaluate.
    pub checkpoint: CheckpointChoice,
    /// ANC baselines: taps of FxNLMS and of the offline least-squares FIR.
    pub fxnlms_taps: usize,
    /// ANC baselines: FxNLMS step size μ (normalised LMS, 0 < μ < 2).
    pub fxnlms_step: f64,
}

impl Default for PredictConfig {
    fn default() -> Self {
        Self {
            batch_size: 2048,
            checkpoint: CheckpointChoice::Best,
            fxnlms_taps: 512,
            fxnlms_step: 0.1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointChoice {
    Best,
    Last,
}

/// A real-valued setting: its name (and flag), its value, the range it must lie in and how
/// the error states that range.
type NumberRule = (&'static str, f64, fn(f64) -> bool, &'static str);

impl TaskConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ArtifactError::io(path, e))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| ArtifactError::Parse {
            path: path.into(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the settings a run will use. Stages call it again after command-line overrides,
    /// so a flag cannot smuggle in what the file may not hold; `path` is the config file.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let anc = matches!(self.data.source, SourceConfig::Anc(_));
        if anc != matches!(self.model, ModelSpec::MultibandAnc(_)) {
            return Err(ArtifactError::invalid(
                path,
                "an `anc` data source goes with a `multiband-anc` model, and only with it",
            ));
        }
        let positive = [
            (
                "`data.input_len`",
                if anc { 1 } else { self.data.input_len },
            ),
            ("`data.horizon`", self.data.horizon),
            ("`data.output_len`", self.data.output_len),
            ("`data.shard_rows`", self.data.shard_rows),
            ("`train.epochs` (`--epochs`)", self.train.epochs),
            ("`train.batch_size` (`--batch-size`)", self.train.batch_size),
            ("`train.accumulate` (`--accumulate`)", self.train.accumulate),
            ("`train.workers`", self.train.workers),
            ("`train.prefetch`", self.train.prefetch),
            ("`train.keep_last`", self.train.keep_last),
            (
                "`predict.batch_size` (predict `--batch-size`)",
                self.predict.batch_size,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ArtifactError::invalid(path, format!("{key} must be > 0")));
            }
        }
        self.model
            .validate()
            .map_err(|message| ArtifactError::invalid(path, message))?;
        if let (ModelSpec::MultibandAnc(m), SourceConfig::Anc(src)) =
            (&self.model, &self.data.source)
        {
            let nyquist = f64::from(src.sample_rate) / 2.0;
            let inside = m.band_edges.iter().all(|&f| f > 0.0 && f < nyquist);
            let increasing = m.band_edges.windows(2).all(|w| w[0] < w[1]);
            if !(inside && increasing) {
                return Err(ArtifactError::invalid(
                    path,
                    format!("`model.band_edges` must increase strictly inside (0, {nyquist}) Hz"),
                ));
            }
        }
        self.validate_numbers(path)
    }

    /// Real-valued knobs: NaN or infinity would train on without a word and write `null`s.
    fn validate_numbers(&self, path: &Path) -> Result<()> {
        let t = &self.train;
        let rules: [NumberRule; 6] = [
            ("`train.lr` (`--lr`)", t.lr, |x| x > 0.0, "> 0"),
            (
                "`train.linear_lr_scale`",
                t.linear_lr_scale,
                |x| x >= 0.0,
                "≥ 0 (0 = frozen)",
            ),
            ("`train.lr_decay`", t.lr_decay, |x| x > 0.0, "> 0"),
            ("`train.weight_decay`", t.weight_decay, |x| x >= 0.0, "≥ 0"),
            (
                "`train.grad_clip`",
                t.grad_clip,
                |x| x >= 0.0,
                "≥ 0 (0 = off)",
            ),
            (
                "`predict.fxnlms_step`",
                self.predict.fxnlms_step,
                |x| x > 0.0 && x < 2.0,
                "in (0, 2)",
            ),
        ];
        for (key, value, ok, wanted) in rules {
            if !value.is_finite() || !ok(value) {
                return Err(ArtifactError::invalid(
                    path,
                    format!("{key} must be a finite number {wanted}, got {value}"),
                ));
            }
        }
        Ok(())
    }

    /// The window of a forecasting task (ANC's depends on the prepared secondary path: see
    /// [`TaskConfig::window_for`]).
    pub fn window(&self) -> crate::WindowSpec {
        crate::WindowSpec {
            input_len: self.data.input_len,
            horizon: self.data.horizon as isize,
            output_len: self.data.output_len,
            stride: 1,
        }
    }

    /// The window on prepared data. An ANC chunk holds `output_len` error-microphone samples
    /// (the targets, concurrent with the last input rows), the controller outputs whose
    /// secondary-path history they need, and the reference history those outputs read.
    pub fn window_for(&self, manifest: &crate::DatasetManifest) -> crate::WindowSpec {
        match (&self.model, &manifest.anc) {
            (ModelSpec::MultibandAnc(spec), Some(anc)) => {
                let chunk = self.data.output_len;
                crate::WindowSpec {
                    input_len: spec.receptive_field() - 1 + anc.secondary_path.len() - 1 + chunk,
                    horizon: 1 - chunk as isize,
                    output_len: chunk,
                    stride: chunk,
                }
            }
            _ => self.window(),
        }
    }

    /// The task name: the config file's stem (`configs/pm25-cnn2d.toml` → `pm25-cnn2d`).
    pub fn name_of(path: &Path) -> String {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "task".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [data]
        input_len = 24
        source = { kind = "pm25", val_start_year = 2013, test_start_year = 2014 }
        [model]
        kind = "cnn2d"
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = TaskConfig::parse(MINIMAL, Path::new("x.toml")).unwrap();
        assert_eq!(c.data.horizon, 1);
        assert_eq!(c.train.batch_size, 128);
        assert_eq!(c.seed, 42);
    }

    #[test]
    fn unknown_keys_are_rejected_everywhere() {
        for (section, typo) in [
            ("[train]", "epochz = 3"),
            ("[model]", "chanels = [1]"),
            ("[predict]", "batch = 3"),
        ] {
            let text = if section == "[model]" {
                MINIMAL.replace("kind = \"cnn2d\"", &format!("kind = \"cnn2d\"\n{typo}"))
            } else {
                format!("{MINIMAL}\n{section}\n{typo}\n")
            };
            let err = TaskConfig::parse(&text, Path::new("bad.toml")).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("bad.toml:"), "{msg}");
            assert!(msg.contains(typo.split(' ').next().unwrap()), "{msg}");
        }
    }

    #[test]
    fn intervals_parse_in_epochs_or_steps() {
        let text = format!(
            "{MINIMAL}\n[train]\neval_interval = \"200 steps\"\ncheckpoint_interval = \"2 epochs\"\n"
        );
        let c = TaskConfig::parse(&text, Path::new("c.toml")).unwrap();
        assert!(c.train.eval_interval.at_step(400) && !c.train.eval_interval.at_step(300));
        assert!(
            c.train.checkpoint_interval.at_epoch_end(4)
                && !c.train.checkpoint_interval.at_epoch_end(3)
        );
        let bad = format!("{MINIMAL}\n[train]\neval_interval = \"often\"\n");
        let msg = TaskConfig::parse(&bad, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("often") && msg.contains("N epochs"), "{msg}");
    }

    #[test]
    fn non_finite_and_negative_knobs_are_rejected_naming_the_key() {
        for (line, key) in [
            ("lr = inf", "train.lr"),
            ("lr = nan", "train.lr"),
            ("lr = -1.0", "train.lr"),
            ("lr_decay = nan", "train.lr_decay"),
            ("linear_lr_scale = -1.0", "train.linear_lr_scale"),
            ("linear_lr_scale = nan", "train.linear_lr_scale"),
            ("grad_clip = -0.5", "train.grad_clip"),
            ("weight_decay = nan", "train.weight_decay"),
        ] {
            let text = format!("{MINIMAL}\n[train]\n{line}\n");
            let msg = TaskConfig::parse(&text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                msg.starts_with("c.toml:") && msg.contains(key),
                "{line}: {msg}"
            );
        }
        let fine = format!("{MINIMAL}\n[train]\ngrad_clip = 0.0\nweight_decay = 0.0\n");
        TaskConfig::parse(&fine, Path::new("c.toml")).unwrap();
    }

    #[test]
    fn overrides_are_checked_by_validating_again() {
        let mut c = TaskConfig::parse(MINIMAL, Path::new("c.toml")).unwrap();
        c.train.epochs = 0;
        let msg = c.validate(Path::new("c.toml")).unwrap_err().to_string();
        assert!(msg.contains("train.epochs"), "{msg}");
    }

    #[test]
    fn zero_batch_is_rejected() {
        let text = format!("{MINIMAL}\n[train]\nbatch_size = 0\n");
        let err = TaskConfig::parse(&text, Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("train.batch_size"));
    }
}
