//! Loader throughput beside a plain memcpy of the same bytes, on the synthetic PM2.5 series
//! prepared for a CNN.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use serde_json::{Value, json};
use stoker_artifact::{PreparedData, Split, TaskConfig};
use stoker_data::{PrepareRequest, SyntheticSpec, prepare, write_pm25_csv};
use stoker_train::Loader;

const WORKERS: usize = 2;
const BATCH: usize = 512;

pub(crate) fn bench_loader(dir: &Path, quick: bool) -> Result<Value> {
    let csv = dir.join("loader.csv");
    write_pm25_csv(
        &csv,
        &SyntheticSpec {
            start_year: 2010,
            years: 3,
            seed: 1,
        },
    )?;
    let config = dir.join("loader.toml");
    std::fs::write(
        &config,
        "[data]\ninput_len = 24\nsource = { kind = \"pm25\", val_start_year = 2011, test_start_year = 2012 }\n[model]\nkind = \"cnn2d\"\n",
    )?;
    let data_dir = dir.join("loader-data");
    prepare(&PrepareRequest {
        config: TaskConfig::load(&config)?,
        input: csv,
        out_dir: data_dir.clone(),
    })?;
    let data = Arc::new(PreparedData::open(&data_dir)?);
    let spec = data.manifest.window;
    let windows = data.windows(Split::Train, spec);
    let order: Vec<usize> = windows
        .iter()
        .copied()
        .cycle()
        .take(if quick { 20_000 } else { 400_000 })
        .collect();
    let bytes_per_window = (spec.input_len * data.store.cols() * 4) as f64;
    let mut loader = Loader::new(data.clone(), WORKERS, 4);
    let t = Instant::now();
    for b in loader.pass(order.clone(), BATCH, spec) {
        std::hint::black_box(&b.inputs);
    }
    let loader_s = t.elapsed().as_secs_f64();
    // The same bytes by plain memcpy, one window at a time into a reused buffer.
    let mut buffer = vec![0f32; BATCH * spec.input_len * data.store.cols()];
    let t = Instant::now();
    for chunk in order.chunks(BATCH) {
        for (i, &s) in chunk.iter().enumerate() {
            let w = data.store.window(s, spec);
            buffer[i * w.len()..(i + 1) * w.len()].copy_from_slice(w);
        }
        std::hint::black_box(&buffer);
    }
    let memcpy_s = t.elapsed().as_secs_f64();
    let n = order.len() as f64;
    Ok(json!({
        "windows_per_s": n / loader_s,
        "gb_per_s": n * bytes_per_window / loader_s / 1e9,
        "memcpy_gb_per_s": n * bytes_per_window / memcpy_s / 1e9,
        "workers": WORKERS,
        "batch": BATCH,
    }))
}
