//! `cargo xtask sweep`: every combination of a parameter grid through the train stage, ranked by
//! validation loss. Prepared data is shared by all runs whose data settings match the base
//! config (the window length is not a data setting: windows are cut at load time).
//!
//! The train stage does not depend on the prepare stage: the caller hands the sweep a
//! [`Prepare`] (xtask's is stoker-data's).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use clap::Args;
use stoker_artifact::{TaskConfig, atomic, table};
use stoker_cli::{DeviceArgs, TaskArgs};
use stoker_runtime::device::open;
use toml::Value;

use crate::error::{BoxError, Error, Result};
use crate::trainer::{TrainRequest, train};

/// The prepare stage, as the sweep calls it.
pub trait Prepare {
    /// Prepares the task's own data (`--config`, `--input` or `data.input`) into its layout's
    /// `data/`, as `cargo xtask prepare` would.
    fn prepare_task(&self, task: &TaskArgs, input: Option<&Path>) -> Result<(), BoxError>;

    /// Prepares `input` under `config`'s data settings into `out_dir`.
    fn prepare(&self, config: &TaskConfig, input: &Path, out_dir: &Path) -> Result<(), BoxError>;
}

#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Raw data file; overrides `data.input`.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// `key=v1,v2,…`; repeat for more keys. Keys: hidden, layers, seq_len, lr, linear_lr_scale,
    /// batch_size, epochs, dropout, or any dotted config path (`model.attention`).
    #[arg(long = "grid", required = true)]
    pub grid: Vec<String>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Short names for the usual knobs.
fn config_path(key: &str) -> String {
    match key {
        "hidden" | "layers" | "dropout" | "channels" | "attention" => format!("model.{key}"),
        "seq_len" | "input_len" => "data.input_len".into(),
        "lr" | "linear_lr_scale" | "batch_size" | "epochs" | "weight_decay" | "lr_decay" => {
            format!("train.{key}")
        }
        other => other.into(),
    }
}

fn parse_value(text: &str) -> Value {
    if let Ok(i) = text.parse::<i64>() {
        Value::Integer(i)
    } else if let Ok(f) = text.parse::<f64>() {
        Value::Float(f)
    } else if let Ok(b) = text.parse::<bool>() {
        Value::Boolean(b)
    } else {
        Value::String(text.into())
    }
}

fn set(table: &mut Value, path: &str, value: Value) -> Result<()> {
    let mut node = table;
    let parts: Vec<&str> = path.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        node = node.get_mut(part).ok_or_else(|| {
            Error::Settings(format!(
                "--grid: the config has no section `{part}` (in `{path}`)"
            ))
        })?;
    }
    node.as_table_mut()
        .ok_or_else(|| Error::Settings("--grid: not a table".into()))?
        .insert(parts[parts.len() - 1].into(), value);
    Ok(())
}

/// Every combination of the grid, as (display key, config path, value) lists.
fn combinations(grid: &[String]) -> Result<Vec<Vec<(String, String, Value)>>> {
    let mut combos = vec![Vec::new()];
    for spec in grid {
        let (key, values) = spec
            .split_once('=')
            .ok_or_else(|| Error::Settings(format!("--grid {spec}: expected key=v1,v2,…")))?;
        let values: Vec<&str> = values.split(',').filter(|v| !v.is_empty()).collect();
        if values.is_empty() {
            return Err(Error::Settings(format!("--grid {spec}: no values")));
        }
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((key.to_string(), config_path(key), parse_value(v)));
                    c
                })
            })
            .collect();
    }
    Ok(combos)
}

struct Outcome {
    label: String,
    config: PathBuf,
    val_loss: f64,
    best_epoch: usize,
    seconds: f64,
}

/// A config's data settings without the window, which windows are cut by at load time.
fn data_key(config: &TaskConfig) -> String {
    let mut data = config.data.clone();
    (data.input_len, data.horizon, data.output_len) = (0, 0, 0);
    format!("{data:?}")
}

/// Trains every combination of `args.grid`, preparing data with `data` where a combination
/// changes the data settings; writes `sweep/sweep.parquet` and `sweep/best.toml` (returned).
pub fn run_sweep(args: &SweepArgs, data: &dyn Prepare) -> Result<PathBuf> {
    let config_file = &args.task.config;
    let base_text = std::fs::read_to_string(config_file)
        .map_err(|e| Error::io(config_file, "cannot read", e))?;
    let base_value: Value = toml::from_str(&base_text).map_err(|e| Error::Toml {
        path: config_file.clone(),
        source: Box::new(e),
    })?;
    let base = args.task.load_config()?;
    let layout = args.task.layout();
    let device = open(&args.device.device, !args.device.no_fusion)?;
    data.prepare_task(&args.task, args.input.as_deref())
        .map_err(Error::Prepare)?;
    let sweep_dir = layout.root().join("sweep");
    let combos = combinations(&args.grid)?;
    let mut outcomes = Vec::new();
    for (i, combo) in combos.iter().enumerate() {
        let run_dir = sweep_dir.join(format!("run-{i:03}"));
        std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, "cannot create", e))?;
        let mut value = base_value.clone();
        for (_, path, v) in combo {
            set(&mut value, path, v.clone())?;
        }
        let config_path = run_dir.join("config.toml");
        atomic::write_bytes(&config_path, toml::to_string(&value)?.as_bytes())?;
        let config = TaskConfig::load(&config_path)?;
        let data_dir = if data_key(&config) == data_key(&base) {
            layout.data_dir()
        } else {
            let dir = run_dir.join("data");
            let input = args
                .input
                .clone()
                .or(config.data.input.clone())
                .ok_or_else(|| Error::Settings("no input".into()))?;
            data.prepare(&config, &input, &dir)
                .map_err(Error::Prepare)?;
            dir
        };
        let label = combo
            .iter()
            .map(|(k, _, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!("sweep run {}/{}: {label}", i + 1, combos.len());
        let summary = train(&TrainRequest {
            config,
            task: args.task.task(),
            data_dir,
            out_dir: run_dir.join("train"),
            device: device.clone(),
            device_name: args.device.device.clone(),
            resume: false,
        })?;
        outcomes.push(Outcome {
            label,
            config: config_path,
            val_loss: summary.best_val_loss,
            best_epoch: summary.best_epoch,
            seconds: summary.seconds,
        });
    }
    outcomes.sort_by(|a, b| a.val_loss.total_cmp(&b.val_loss));
    println!(
        "{:<4} {:<40} {:>12} {:>6} {:>9}",
        "rank", "parameters", "val loss", "epoch", "seconds"
    );
    for (rank, o) in outcomes.iter().enumerate() {
        println!(
            "{:<4} {:<40} {:>12.6} {:>6} {:>9.1}",
            rank + 1,
            o.label,
            o.val_loss,
            o.best_epoch,
            o.seconds
        );
    }
    write_table(&sweep_dir.join("sweep.parquet"), &outcomes)?;
    let best = sweep_dir.join("best.toml");
    let best_config = &outcomes[0].config;
    let text = std::fs::read(best_config).map_err(|e| Error::io(best_config, "cannot read", e))?;
    atomic::write_bytes(&best, &text)?;
    println!(
        "best: {} (val loss {:.6}) → {}",
        outcomes[0].label,
        outcomes[0].val_loss,
        best.display()
    );
    Ok(best)
}

fn write_table(path: &Path, outcomes: &[Outcome]) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("rank", DataType::UInt32, false),
        Field::new("parameters", DataType::Utf8, false),
        Field::new("val_loss", DataType::Float64, false),
        Field::new("best_epoch", DataType::UInt32, false),
        Field::new("seconds", DataType::Float64, false),
        Field::new("config", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(1..=outcomes.len() as u32)),
        Arc::new(StringArray::from_iter_values(
            outcomes.iter().map(|o| o.label.as_str()),
        )),
        Arc::new(Float64Array::from_iter_values(
            outcomes.iter().map(|o| o.val_loss),
        )),
        Arc::new(UInt32Array::from_iter_values(
            outcomes.iter().map(|o| o.best_epoch as u32),
        )),
        Arc::new(Float64Array::from_iter_values(
            outcomes.iter().map(|o| o.seconds),
        )),
        Arc::new(StringArray::from_iter_values(
            outcomes.iter().map(|o| o.config.display().to_string()),
        )),
    ];
    table::write_batch(path, schema, columns, Vec::new())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_expands_to_the_cartesian_product_with_aliases() {
        let combos = combinations(&["hidden=64,128".into(), "seq_len=96,192,336".into()]).unwrap();
        assert_eq!(combos.len(), 6);
        assert_eq!(combos[0][0].1, "model.hidden");
        assert_eq!(
            combos[5][1],
            (
                "seq_len".into(),
                "data.input_len".into(),
                Value::Integer(336)
            )
        );
        assert!(combinations(&["hidden".into()]).is_err());
    }
}
