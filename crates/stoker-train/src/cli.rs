//! The train stage's command line, shared by its binary and `cargo xtask train`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use stoker_artifact::layout::SUMMARY_FILE;
use stoker_artifact::{Precision, PreparedData, RunSummary, TaskConfig, atomic};
use stoker_cli::{DeviceArgs, TaskArgs};
use stoker_runtime::device::{open, open_nth};

use crate::{Team, TrainRequest, TuneReport, TuneRequest, train_in, tune};

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Overrides `seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Overrides `train.epochs`.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Overrides `train.batch_size`; `auto` probes candidates first (see `cargo xtask tune`).
    #[arg(long)]
    pub batch_size: Option<BatchSize>,
    /// Overrides `train.lr`.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Overrides `train.accumulate`: gradient accumulation over K micro-batches per batch.
    #[arg(long)]
    pub accumulate: Option<usize>,
    /// Overrides `train.precision`: f32, bf16-mixed or f16-mixed.
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Continue the run in `train/` from its newest resumable checkpoint.
    #[arg(long)]
    pub resume: bool,
}

/// Trains as `args` say: alone, or as one rank of the MPI job the launcher started (feature
/// `mpi`); a rank that fails ends the whole job, so no rank waits for it forever.
pub fn run_train(args: &TrainArgs) -> Result<RunSummary> {
    let team = Team::from_launcher()?;
    let result = train_as(args, &team);
    if let Err(e) = &result
        && !team.is_solo()
    {
        eprintln!("error: rank {} of {}: {e:#}", team.rank(), team.size());
        team.abort(1);
    }
    result
}

fn train_as(args: &TrainArgs, team: &Team) -> Result<RunSummary> {
    let mut config = args.task.load_config()?;
    config.seed = args.seed.unwrap_or(config.seed);
    config.train.epochs = args.epochs.unwrap_or(config.train.epochs);
    config.train.lr = args.lr.unwrap_or(config.train.lr);
    config.train.accumulate = args.accumulate.unwrap_or(config.train.accumulate);
    config.train.precision = args.precision.unwrap_or(config.train.precision);
    if let Some(BatchSize::Fixed(b)) = args.batch_size {
        config.train.batch_size = b;
    }
    // The flags are checked by the same rules as the file they override.
    config.validate(&args.task.config)?;
    let device = open_nth(
        &args.device.device,
        !args.device.no_fusion,
        team.local_rank(),
    )?;
    match args.batch_size {
        Some(BatchSize::Fixed(_)) | None => {}
        Some(BatchSize::Auto) if !team.is_solo() => {
            anyhow::bail!(
                "--batch-size auto probes one process's batch; a distributed run needs the same                  batch on every rank: tune alone first (cargo xtask tune), then pass --batch-size"
            );
        }
        Some(BatchSize::Auto) => {
            let data = Arc::new(PreparedData::open(&args.task.layout().data_dir())?);
            let report = tune(&TuneRequest {
                config: &config,
                data,
                device: device.clone(),
                candidates: DEFAULT_CANDIDATES.to_vec(),
                steps: DEFAULT_STEPS,
                headroom: DEFAULT_HEADROOM,
            })?;
            eprintln!(
                "--batch-size auto: chose {} ({})",
                report.chosen, report.rule
            );
            config.train.batch_size = report.chosen;
        }
    }
    let layout = args.task.layout();
    let request = TrainRequest {
        config,
        task: args.task.task(),
        data_dir: layout.data_dir(),
        out_dir: layout.train_dir(),
        device,
        device_name: args.device.device.clone(),
        resume: args.resume,
    };
    let summary = train_in(&request, team)?;
    if team.leads() {
        print_summary(&summary, &layout.train_dir().join(SUMMARY_FILE));
    }
    Ok(summary)
}

/// The run summary as people read it at the end of training.
fn print_summary(s: &RunSummary, path: &std::path::Path) {
    let t = &s.step_time;
    let total = t.total_s().max(1e-12);
    println!(
        "trained {} ({} parameters, {}) for {} epochs on {}{}: best val loss {:.5} at epoch {}",
        s.model,
        s.parameters,
        s.precision,
        s.epochs,
        s.device,
        if s.fusion { " (fused kernels)" } else { "" },
        s.best_val_loss,
        s.best_epoch
    );
    println!(
        "  {:.0} samples/s, batch {} ({} micro-batch{}); step time: data wait {:.1} %, forward+backward {:.1} %, optimizer {:.1} %",
        s.samples_per_s,
        s.batch_size,
        s.accumulate,
        if s.accumulate == 1 { "" } else { "es" },
        100.0 * t.data_wait_s / total,
        100.0 * t.compute_s / total,
        100.0 * t.optimizer_s / total,
    );
    println!(
        "  utilisation {:.0} ± {:.0} % ({}{}), peak memory {:.0} MiB; bound by {}: {}",
        s.utilisation_mean_percent,
        s.utilisation_std_percent,
        s.utilisation_source,
        s.machine_cpu_percent
            .map(|m| format!("; machine CPUs {m:.0} % busy"))
            .unwrap_or_default(),
        s.peak_memory_bytes as f64 / (1 << 20) as f64,
        s.diagnosis.bound,
        s.diagnosis.advice
    );
    if let Some(initial) = s.initial_val_loss {
        let below = 100.0 * (1.0 - s.best_val_loss / initial);
        match &s.linear_start {
            Some(start) if s.best_epoch == 0 => println!(
                "  the learned parts added nothing on validation: the best model is the start, {start} ({initial:.5})"
            ),
            Some(start) => println!(
                "  the learned parts lower the validation loss {below:.2} % below the linear part alone, {start} ({initial:.5} → {:.5})",
                s.best_val_loss
            ),
            None => println!(
                "  validation loss {below:.1} % below the untrained model's ({initial:.5} → {:.5})",
                s.best_val_loss
            ),
        }
    }
    if let Some(d) = &s.distributed {
        let stalls: Vec<String> = d
            .rank_data_stall_fraction
            .iter()
            .map(|f| format!("{:.1} %", 100.0 * f))
            .collect();
        println!(
            "  {} ranks, global batch {}: all-reduce {:.1} % of step time; data wait by rank {}",
            s.ranks,
            d.global_batch,
            100.0 * d.allreduce_fraction,
            stalls.join(", ")
        );
    }
    println!("  → {}", path.display());
}

/// `--batch-size N` or `--batch-size auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Fixed(usize),
    Auto,
}

impl FromStr for BatchSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            n => n
                .parse()
                .ok()
                .filter(|&b| b > 0)
                .map(Self::Fixed)
                .ok_or_else(|| format!("`{n}`: expected a batch size > 0 or `auto`")),
        }
    }
}

pub const DEFAULT_CANDIDATES: [usize; 9] = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
pub const DEFAULT_STEPS: usize = 10;
pub const DEFAULT_HEADROOM: f64 = 0.8;

#[derive(Debug, Clone, Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Candidate batch sizes, comma-separated, probed smallest first.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_CANDIDATES)]
    pub candidates: Vec<usize>,
    /// Timed training steps per candidate (after two warm-up steps).
    #[arg(long, default_value_t = DEFAULT_STEPS)]
    pub steps: usize,
    /// Fraction of available memory a candidate may use.
    #[arg(long, default_value_t = DEFAULT_HEADROOM)]
    pub headroom: f64,
    /// Scale the learning rate with the batch size: none, linear (lr·b/b₀) or sqrt (lr·√(b/b₀)).
    #[arg(long, default_value = "none")]
    pub lr_scaling: LrScaling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LrScaling {
    None,
    Linear,
    Sqrt,
}

/// Probes batch sizes, then writes `<config>.tuned.toml` beside the config and the measured
/// table to `artifacts/<task>/tune.json`. Returns the tuned config's path.
pub fn run_tune(args: &TuneArgs) -> Result<PathBuf> {
    let config = args.task.load_config()?;
    let device = open(&args.device.device, !args.device.no_fusion)?;
    let layout = args.task.layout();
    let data = Arc::new(PreparedData::open(&layout.data_dir())?);
    let report = tune(&TuneRequest {
        config: &config,
        data,
        device,
        candidates: args.candidates.clone(),
        steps: args.steps,
        headroom: args.headroom,
    })?;
    let ratio = report.chosen as f64 / config.train.batch_size as f64;
    let lr = match args.lr_scaling {
        LrScaling::None => config.train.lr,
        LrScaling::Linear => config.train.lr * ratio,
        LrScaling::Sqrt => config.train.lr * ratio.sqrt(),
    };
    let tuned = tuned_path(&args.task.config);
    write_tuned(&args.task.config, &tuned, &report, lr)?;
    atomic::write_json(&layout.root().join("tune.json"), &report)?;
    println!("{:>8} {:>12} {:>10}", "batch", "samples/s", "peak MiB");
    for p in &report.probes {
        println!(
            "{:>8} {:>12.0} {:>10.0}{}",
            p.batch_size,
            p.samples_per_s,
            p.peak_memory_bytes as f64 / 1048576.0,
            if p.batch_size == report.chosen {
                "  ← chosen"
            } else {
                ""
            }
        );
    }
    println!("batch {} (lr {lr}) → {}", report.chosen, tuned.display());
    Ok(tuned)
}

/// `configs/pm25-cnn2d.toml` → `configs/pm25-cnn2d.tuned.toml`.
pub fn tuned_path(config: &Path) -> PathBuf {
    config.with_file_name(format!("{}.tuned.toml", TaskConfig::name_of(config)))
}

fn write_tuned(base: &Path, out: &Path, report: &TuneReport, lr: f64) -> Result<()> {
    let text = std::fs::read_to_string(base)
        .with_context(|| format!("{}: cannot read", base.display()))?;
    let mut value: toml::Value =
        toml::from_str(&text).with_context(|| format!("{}: not TOML", base.display()))?;
    let root = value.as_table_mut().context("config is not a table")?;
    let train = root
        .entry("train")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .context("`train` is not a table")?;
    train.insert(
        "batch_size".into(),
        toml::Value::Integer(report.chosen as i64),
    );
    train.insert("lr".into(), toml::Value::Float(lr));
    let header = format!(
        "# Tuned from {} by `cargo xtask tune`: {}.\n# Measured table: artifacts/<task>/tune.json.\n",
        base.display(),
        report.rule
    );
    let body = toml::to_string(&value)?;
    atomic::write_bytes(out, format!("{header}{body}").as_bytes())?;
    Ok(())
}
