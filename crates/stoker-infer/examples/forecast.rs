//! Embeds a trained forecaster: opens a task's artifacts once, reads the latest rows of a CSV
//! whose first column is the time (`YYYY-MM-DD HH:MM:SS`, as ETT's) and whose header names the
//! model's input columns, and prints the forecast with its timestamps.
//!
//! ```text
//! cargo xtask run --config configs/etth1-lstm-attention.toml --input ../shared/datasets/ETTh1.csv
//! cargo run --release -p stoker-infer --example forecast -- artifacts/etth1-lstm-attention ../shared/datasets/ETTh1.csv
//! ```

use std::error::Error;

use chrono::NaiveDateTime;
use stoker_infer::{HistoryRow, TrainedModel};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [artifacts, csv] = args.as_slice() else {
        return Err("usage: forecast ARTIFACTS_DIR FILE.csv".into());
    };
    let model = TrainedModel::open_best(artifacts)?;
    let text = std::fs::read_to_string(csv).map_err(|e| format!("{csv}: {e}"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or(format!("{csv}: empty"))?
        .split(',')
        .collect();
    // Where each input column the model reads is in the file.
    let at: Vec<usize> = model
        .input_columns()
        .iter()
        .map(|c| {
            header
                .iter()
                .position(|h| h.trim() == c)
                .ok_or(format!("{csv}: no column `{c}`"))
        })
        .collect::<Result<_, _>>()?;
    let rows: Vec<&str> = lines.collect();
    let latest = &rows[rows.len().saturating_sub(model.window_len())..];
    let mut history = Vec::with_capacity(latest.len());
    for (i, line) in latest.iter().enumerate() {
        let line_no = rows.len() - latest.len() + i + 2;
        let cells: Vec<&str> = line.split(',').collect();
        let time = NaiveDateTime::parse_from_str(cells[0], "%Y-%m-%d %H:%M:%S")
            .map_err(|e| format!("{csv}: line {line_no}: {e}"))?;
        let values = at
            .iter()
            .map(|&c| cells.get(c).and_then(|v| v.trim().parse::<f32>().ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or(format!(
                "{csv}: line {line_no}: a missing or non-numeric value"
            ))?;
        history.push(HistoryRow {
            timestamp: time.and_utc().timestamp(),
            values,
            category: None,
        });
    }
    for f in model.forecast(&history)? {
        let time = chrono::DateTime::from_timestamp(f.timestamp, 0).ok_or("time out of range")?;
        println!(
            "{} +{:>3} {:>6} {:10.3}",
            time.format("%Y-%m-%d %H:%M"),
            f.step,
            f.target,
            f.value
        );
    }
    Ok(())
}
