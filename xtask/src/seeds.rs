//! `cargo xtask run --seeds N`: one prepared data set, N trainings that differ only in their
//! seed, each scored on the test split; the spread of the test metric says how much of a
//! difference between two configs is the seed's. Writes `<artifacts>/seeds/seed-<s>/{train,
//! predict}` and `<artifacts>/seeds/seeds.json`.

use std::path::Path;

use anyhow::{Result, bail};
use serde::Serialize;
use stoker_artifact::{ArtifactLayout, TaskConfig, atomic};
use stoker_cli::{DeviceArgs, TaskArgs};
use stoker_infer::{PredictRequest, Prediction, predict};
use stoker_runtime::device::open;
use stoker_train::{TrainRequest, train};

/// One seed's test metrics: the model's, its linear part alone (if it has one) and the
/// baseline's, in the metric's unit.
#[derive(Debug, Clone, Serialize)]
struct SeedOutcome {
    seed: u64,
    best_epoch: usize,
    model: f64,
    linear_only: Option<f64>,
    baseline: f64,
}

/// Mean and sample standard deviation (n − 1) of a metric over the seeds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
        Some(Self {
            mean,
            std: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.4} ± {:.4} [{:.4}–{:.4}]",
            self.mean, self.std, self.min, self.max
        )
    }
}

#[derive(Debug, Serialize)]
struct SeedsReport {
    /// `rmse` (raw units), `mse` (normalised) or `nr_db` (ANC; higher is better).
    metric: String,
    unit: String,
    /// `persistence` / `repeat_last_value` for forecasts, `least_squares_fir` for ANC.
    baseline: String,
    seeds: Vec<SeedOutcome>,
    model: Spread,
    linear_only: Option<Spread>,
    baseline_spread: Spread,
}

/// Trains and scores `count` seeds from `first` on the data already prepared under `task`.
pub fn run_seeds(
    task: &TaskArgs,
    device_args: &DeviceArgs,
    first: Option<u64>,
    count: usize,
    epochs: Option<usize>,
) -> Result<()> {
    if count == 0 {
        bail!("--seeds must be ≥ 1");
    }
    let base = task.load_config()?;
    let layout = task.layout();
    let device = open(&device_args.device, !device_args.no_fusion)?;
    let first = first.unwrap_or(base.seed);
    let root = layout.root().join("seeds");
    let mut outcomes = Vec::with_capacity(count);
    let mut names = None;
    for seed in (first..).take(count) {
        let mut config: TaskConfig = base.clone();
        config.seed = seed;
        config.train.epochs = epochs.unwrap_or(config.train.epochs);
        config.validate(&task.config)?;
        let run = ArtifactLayout::new(root.join(format!("seed-{seed}")));
        eprintln!("seed {seed} ({} of {count})", outcomes.len() + 1);
        let summary = train(&TrainRequest {
            config: config.clone(),
            task: task.task(),
            data_dir: layout.data_dir(),
            out_dir: run.train_dir(),
            device: device.clone(),
            device_name: device_args.device.clone(),
            resume: false,
        })?;
        let prediction = predict(&PredictRequest {
            data_dir: layout.data_dir(),
            train_dir: run.train_dir(),
            out_dir: run.predict_dir(),
            checkpoint: config.predict.checkpoint,
            batch_size: config.predict.batch_size,
            device: device.clone(),
            anc_mode: Default::default(),
            fxnlms_taps: config.predict.fxnlms_taps,
            fxnlms_step: config.predict.fxnlms_step,
            input: None,
        })?;
        let (outcome, metric) = outcome(seed, summary.best_epoch, &prediction)?;
        println!(
            "seed {seed}: test {} {:.4}{}; {} {:.4} (best epoch {})",
            metric.0,
            outcome.model,
            outcome
                .linear_only
                .map(|v| format!(", linear part alone {v:.4}"))
                .unwrap_or_default(),
            metric.2,
            outcome.baseline,
            outcome.best_epoch
        );
        names = Some(metric);
        outcomes.push(outcome);
    }
    let column = |f: fn(&SeedOutcome) -> Option<f64>| -> Option<Spread> {
        let values: Option<Vec<f64>> = outcomes.iter().map(f).collect();
        Spread::of(&values?)
    };
    let (Some((metric, unit, baseline)), Some(model), Some(baseline_spread)) = (
        names,
        column(|o| Some(o.model)),
        column(|o| Some(o.baseline)),
    ) else {
        bail!("no seed was run");
    };
    let report = SeedsReport {
        model,
        linear_only: column(|o| o.linear_only),
        baseline_spread,
        metric: metric.into(),
        unit: unit.clone(),
        baseline: baseline.into(),
        seeds: outcomes,
    };
    let path = root.join("seeds.json");
    atomic::write_json(&path, &report)?;
    print_report(&report, &path);
    Ok(())
}

/// The metric a prediction is judged by, with (name, unit, baseline name).
fn outcome(
    seed: u64,
    best_epoch: usize,
    prediction: &Prediction,
) -> Result<(SeedOutcome, (&'static str, String, &'static str))> {
    Ok(match prediction {
        Prediction::Forecast(m) if m.unit == "normalised" => (
            SeedOutcome {
                seed,
                best_epoch,
                model: m.mse,
                linear_only: m.linear_only_mse,
                baseline: m.repeat_mse,
            },
            ("MSE", m.unit.clone(), "repeat-last-value"),
        ),
        Prediction::Forecast(m) => (
            SeedOutcome {
                seed,
                best_epoch,
                model: m.rmse,
                linear_only: m.linear_only_rmse,
                baseline: m.persistence_rmse,
            },
            ("RMSE", m.unit.clone(), "persistence"),
        ),
        Prediction::Anc(m) => (
            SeedOutcome {
                seed,
                best_epoch,
                model: m.nr_db,
                linear_only: m.linear_only_nr_db,
                baseline: m.wiener_nr_db,
            },
            ("NR (dB)", "dB".into(), "least-squares FIR"),
        ),
        Prediction::Input(_) => bail!("a seed run predicts on the test split, not on input"),
    })
}

fn print_report(r: &SeedsReport, path: &Path) {
    let n = r.seeds.len();
    println!(
        "test {} over {n} seed(s), mean ± std [min–max] ({}): model {}",
        r.metric, r.unit, r.model
    );
    if let Some(linear) = &r.linear_only {
        println!("  its linear part alone {linear}");
    }
    println!("  {} {}", r.baseline, r.baseline_spread);
    println!("{}", path.display());
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn spread_is_the_sample_standard_deviation() {
        let s = Spread::of(&[1.0, 2.0, 3.0, 6.0]).unwrap();
        assert!((s.mean - 3.0).abs() < 1e-12);
        // Σ(v − 3)² = 4 + 1 + 0 + 9 = 14; / (4 − 1).
        assert!((s.std - (14.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!((s.min, s.max), (1.0, 6.0));
        let one = Spread::of(&[2.5]).unwrap();
        assert_eq!((one.mean, one.std), (2.5, 0.0));
        assert!(Spread::of(&[]).is_none());
    }
}
