//! `predict --input FILE`: the forecast for the window that ends at FILE's last row is the one
//! the split predict makes for the same window, and its timestamps are the 1..H intervals after
//! the window's end.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use arrow::array::{Array, Float32Array, StringArray, TimestampSecondArray, UInt32Array};
use arrow::datatypes::{DataType, TimeUnit};
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use stoker_artifact::DatasetManifest;

/// A Parquet table's columns by name: timestamps (UTC seconds), numbers and text.
#[derive(Default)]
struct Table {
    times: HashMap<String, Vec<i64>>,
    numbers: HashMap<String, Vec<f64>>,
    texts: HashMap<String, Vec<String>>,
    rows: usize,
}

fn read_table(path: &Path) -> Table {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut t = Table::default();
    for batch in reader {
        let batch = batch.unwrap();
        t.rows += batch.num_rows();
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let name = field.name().clone();
            let any = column.as_any();
            match field.data_type() {
                DataType::Timestamp(TimeUnit::Second, Some(tz)) => {
                    assert_eq!(tz.as_ref(), "UTC", "{name}");
                    let a = any.downcast_ref::<TimestampSecondArray>().unwrap();
                    t.times.entry(name).or_default().extend(a.values().iter());
                }
                DataType::Float32 => {
                    let a = any.downcast_ref::<Float32Array>().unwrap();
                    let values = a.values().iter().map(|&v| f64::from(v));
                    t.numbers.entry(name).or_default().extend(values);
                }
                DataType::UInt32 => {
                    let a = any.downcast_ref::<UInt32Array>().unwrap();
                    let values = a.values().iter().map(|&v| f64::from(v));
                    t.numbers.entry(name).or_default().extend(values);
                }
                DataType::Utf8 => {
                    let a = any.downcast_ref::<StringArray>().unwrap();
                    let values = (0..a.len()).map(|i| a.value(i).to_string());
                    t.texts.entry(name).or_default().extend(values);
                }
                other => panic!("{}: column {name} of type {other}", path.display()),
            }
        }
    }
    t
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1e-6)
}

/// Writes the header and the data lines of `csv` whose time (`time_of`) is at most `end`.
fn truncate(csv: &Path, out: &Path, end: i64, time_of: impl Fn(&str) -> i64) {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let mut kept = vec![lines.next().unwrap().to_string()];
    kept.extend(lines.filter(|l| time_of(l) <= end).map(str::to_string));
    std::fs::write(out, kept.join("\n") + "\n").unwrap();
}

/// One row per step and target of the window that `predict --input` forecast from.
struct Forecast {
    window_end: Vec<i64>,
    time: Vec<i64>,
    step: Vec<f64>,
    target: Vec<String>,
    value: Vec<f64>,
}

fn forecast(art: &Path) -> Forecast {
    let mut t = read_table(&art.join("predict/forecast.parquet"));
    Forecast {
        window_end: t.times.remove("window_end").unwrap(),
        time: t.times.remove("timestamp").unwrap(),
        step: t.numbers.remove("step").unwrap(),
        target: t.texts.remove("target").unwrap(),
        value: t.numbers.remove("forecast").unwrap(),
    }
}

fn predict_input(dir: &Path, config: &str, art: &str, input: &Path) {
    let o = xtask(
        &[
            "predict",
            "--config",
            config,
            "--artifacts",
            art,
            "--input",
            input.to_str().unwrap(),
        ],
        dir,
    );
    assert!(o.status.success(), "predict --input: {}", stderr(&o));
    assert!(
        stdout(&o).trim().ends_with("forecast.parquet"),
        "{}",
        stdout(&o)
    );
}

fn pm25_time(line: &str) -> i64 {
    let c: Vec<u32> = line
        .split(',')
        .skip(1)
        .take(4)
        .map(|v| v.parse().unwrap())
        .collect();
    chrono::NaiveDate::from_ymd_opt(c[0] as i32, c[1], c[2])
        .unwrap()
        .and_hms_opt(c[3], 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
}

#[test]
fn pm25_cnn2d_forecast_of_the_last_window_is_the_split_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synthetic_csv(dir.path(), 3);
    let (config, art) = tiny_task_through_predict(dir.path(), &csv, 2011, 2012);
    let (config, art_s) = (config.to_str().unwrap(), art.to_str().unwrap());
    let split = read_table(&art.join("predict/predictions.parquet"));
    let (times, predictions) = (&split.times["timestamp"], &split.numbers["prediction"]);
    assert!(split.numbers["step"].iter().all(|&s| s == 1.0), "one step");

    // A test window well inside the split whose 12 input lines hold no missing cell, so the
    // truncated file's gap filling cannot differ from the whole file's.
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().skip(1).collect();
    let line_at: HashMap<i64, usize> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (pm25_time(l), i))
        .collect();
    let w = (times.len() / 2..times.len())
        .find(|&w| {
            let end = line_at[&(times[w] - 3600)];
            lines[end + 1 - 12..=end].iter().all(|l| !l.contains("NA"))
        })
        .expect("a clean test window");
    let end = times[w] - 3600;
    let short = dir.path().join("history.csv");
    truncate(&csv, &short, end, pm25_time);

    predict_input(dir.path(), config, art_s, &short);
    let f = forecast(&art);
    assert_eq!(f.value.len(), 1, "one step, one target");
    assert_eq!(f.window_end, vec![end]);
    assert_eq!(f.time, vec![end + 3600]);
    assert_eq!((f.step[0], f.target[0].as_str()), (1.0, "pm2.5"));
    assert!(
        close(f.value[0], predictions[w]),
        "input forecast {} vs split prediction {}",
        f.value[0],
        predictions[w]
    );

    // Every complete window of the history: the same forecasts as the split's wherever both
    // have one (the file's gap filling is the whole file's: its last 12 lines are clean), and
    // metrics where the file holds the truth.
    let o = xtask(
        &[
            "predict",
            "--config",
            config,
            "--artifacts",
            art_s,
            "--input",
            short.to_str().unwrap(),
            "--all-windows",
            "--csv",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let all = forecast(&art);
    assert_eq!(all.time.last(), Some(&(end + 3600)));
    assert!(close(*all.value.last().unwrap(), f.value[0]));
    let split_at: HashMap<i64, usize> = times.iter().enumerate().map(|(i, &t)| (t, i)).collect();
    let shared: Vec<(usize, usize)> = (0..all.time.len())
        .filter_map(|i| Some((i, *split_at.get(&all.time[i])?)))
        .collect();
    assert!(shared.len() > 100, "{} shared windows", shared.len());
    for (i, j) in shared {
        assert!(
            close(all.value[i], predictions[j]),
            "window ending {}: {} vs {}",
            all.window_end[i],
            all.value[i],
            predictions[j]
        );
    }
    let metrics =
        stoker_artifact::ForecastMetrics::load(&art.join("predict/metrics.json")).unwrap();
    assert_eq!(
        (metrics.split.as_str(), metrics.unit.as_str()),
        ("input", "µg/m³")
    );
    assert!(metrics.windows > 0 && metrics.windows < all.time.len());
    assert!(metrics.rmse.is_finite() && metrics.persistence_rmse > 0.0);
    let csv_text = std::fs::read_to_string(art.join("predict/forecast.csv")).unwrap();
    assert_eq!(
        csv_text.lines().next(),
        Some("window_end,timestamp,step,target,forecast")
    );
    assert_eq!(csv_text.lines().count(), all.time.len() + 1);
}

#[test]
fn ett_lstm_attention_forecast_of_the_last_window_is_the_split_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let csv = ett_csv(dir.path(), 700);
    let config = small_ett_config(dir.path(), 1);
    let art = dir.path().join("art");
    let (config, art_s) = (config.to_str().unwrap(), art.to_str().unwrap());
    let input = ["--input", csv.to_str().unwrap()];
    run_stages(dir.path(), config, art_s, &["prepare"], &input);
    run_stages(dir.path(), config, art_s, &["train", "predict"], &[]);
    let manifest = DatasetManifest::load(&art.join("data")).unwrap();
    let split = read_table(&art.join("predict/predictions.parquet"));
    let (h, targets) = (12, manifest.targets.len());
    let block = h * targets;
    assert_eq!(split.rows % block, 0);

    // The 40th test window: rows block·40 .. block·41 (window-major, then step, then target).
    let first = 40 * block;
    let end = split.times["timestamp"][first] - 3600;
    let ett_time = |l: &str| {
        chrono::NaiveDateTime::parse_from_str(l.split(',').next().unwrap(), "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp()
    };
    let short = dir.path().join("history.csv");
    truncate(&csv, &short, end, ett_time);

    predict_input(dir.path(), config, art_s, &short);
    let f = forecast(&art);
    assert_eq!(f.value.len(), block);
    for i in 0..block {
        let (k, t) = (i / targets, i % targets);
        let feature = &manifest.features[manifest.targets[t]];
        assert_eq!(f.window_end[i], end);
        assert_eq!(f.time[i], end + 3600 * (k as i64 + 1), "step {}", k + 1);
        assert_eq!(f.step[i], (k + 1) as f64);
        assert_eq!(f.target[i], feature.name);
        // The split's predictions are on the normalised scale (ETT's metrics); forecasts are in
        // the file's units.
        let j = first + i;
        assert_eq!(split.texts["target"][j], feature.name);
        assert_eq!(split.times["timestamp"][j], f.time[i]);
        let expected = feature.denormalize(split.numbers["prediction"][j]);
        assert!(
            close(f.value[i], expected),
            "step {} {}: input forecast {} vs split prediction {expected}",
            k + 1,
            feature.name,
            f.value[i]
        );
    }

    // The library API, from the same file's rows in their own units: the same forecast.
    let model = stoker_infer::TrainedModel::open(
        &art,
        stoker_artifact::CheckpointChoice::Best,
        &burn::prelude::Device::flex(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&short).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let columns: Vec<usize> = model
        .input_columns()
        .iter()
        .map(|c| header.iter().position(|h| h == c).unwrap())
        .collect();
    let history: Vec<stoker_infer::HistoryRow> = lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            stoker_infer::HistoryRow {
                timestamp: ett_time(l),
                values: columns.iter().map(|&c| cells[c].parse().unwrap()).collect(),
                category: None,
            }
        })
        .collect();
    let api = model.forecast(&history).unwrap();
    assert_eq!(api.len(), block);
    for (i, v) in api.iter().enumerate() {
        assert_eq!(
            (v.timestamp, v.step as f64, v.target.as_str()),
            (f.time[i], f.step[i], f.target[i].as_str())
        );
        assert!(
            close(f64::from(v.value), f.value[i]),
            "{i}: {} vs {}",
            v.value,
            f.value[i]
        );
    }
    // A gap in the history is refused, naming the row.
    let mut gapped = history.clone();
    let last = gapped.len() - 1;
    gapped[last].timestamp += 3600;
    let err = model.forecast(&gapped).unwrap_err().to_string();
    assert!(
        err.contains(&format!("row {last}")) && err.contains("3600 s after"),
        "{err}"
    );
}
