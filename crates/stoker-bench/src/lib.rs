//! # stoker-bench — how fast stoker runs
//!
//! [`run_bench`] (`cargo xtask bench`) measures, in [`Section`] order:
//! - **models**: training-step and batched-inference throughput of every zoo model on its
//!   reference shape in f32 and bf16-mixed, each model's rows alternated `--rounds` times with
//!   its PyTorch peer (`bench/peers/run.py`, when PyTorch is importable); the table reports
//!   medians and the median and range of the per-round stoker / PyTorch ratios;
//! - **anc-predict**: whole-signal ANC prediction, batched against one pass per sample;
//! - **anc-stream**: the streaming ANC controller on one thread, blocks of 1, 16 and 64
//!   samples: samples/s, real-time factor, block latency against its deadline;
//! - **loader**: the training loader beside a plain memcpy of the same bytes;
//! - **prepare**: prepare throughput and peak memory on a generated CSV of 20 million rows,
//!   run as `<current binary> prepare …` (the binary calling [`run_bench`] must have the
//!   prepare stage's subcommand, as `cargo xtask` does);
//! - **distributed**: training steps on 2 MPI ranks × 1 thread against 1 process × 2 threads
//!   (CNN2D and ANC reference shapes, same global batch), run as `<current binary> bench-worker
//!   …` ([`run_worker`]); then each model's gradient bytes and all-reduce time on paper.
//!
//! Figures are medians of repeated runs after warm-up; `--json` writes them (the keys are
//! documented in the README and checked by `tests/bench.rs`). Scratch files go to
//! `target/bench/`.
//!
//! ```
//! use clap::Parser;
//! use stoker_bench::{BenchArgs, Section};
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     bench: BenchArgs,
//! }
//! let cli = Cli::parse_from(["bench", "--quick", "--only", "loader", "--rounds", "3"]);
//! assert!(cli.bench.quick);
//! assert_eq!((cli.bench.only, cli.bench.rounds), (vec![Section::Loader], 3));
//! // stoker_bench::run_bench(&cli.bench)? would run the loader section.
//! ```

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde_json::Value;
use stoker_cli::DeviceArgs;
use stoker_runtime::device::open;

pub use distributed::{WorkerArgs, run_worker};

mod anc_predict;
mod anc_stream;
mod distributed;
mod loader;
mod measure;
mod models;
mod peers;
mod prepare;
mod reference;
mod rounds;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Small sizes and few repeats: checks the harness, not the machine.
    #[arg(long)]
    pub quick: bool,
    /// Run only these parts (repeatable; all by default).
    #[arg(long, value_enum)]
    pub only: Vec<Section>,
    /// Bench only these models (repeatable: cnn2d, lstm_attention, multiband_anc; all by
    /// default). Applies to the PyTorch peers too.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Measure each model's rows, then its PyTorch peer, this many times; report medians and
    /// the median and range of the per-round stoker / PyTorch ratios.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub rounds: usize,
    /// Rows of the generated CSV for the prepare benchmark.
    #[arg(long, default_value_t = 20_000_000)]
    pub prepare_rows: usize,
    /// Device of the model rows and the ANC predict figure.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The parts of the benchmark, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    Models,
    AncPredict,
    AncStream,
    Loader,
    Prepare,
    Distributed,
}

/// Runs the selected sections, prints their figures and writes `--json`.
pub fn run_bench(args: &BenchArgs) -> Result<()> {
    let dir = Path::new("target/bench");
    std::fs::create_dir_all(dir)?;
    let mut report = serde_json::Map::new();
    let wanted = |s: Section| args.only.is_empty() || args.only.contains(&s);
    let device = open(&args.device.device, !args.device.no_fusion).map_err(anyhow::Error::msg)?;
    let keys: Vec<&str> = reference::references().iter().map(|r| r.key).collect();
    if let Some(unknown) = args.models.iter().find(|m| !keys.contains(&m.as_str())) {
        anyhow::bail!("--model {unknown}: not a benchmarked model (one of {keys:?})");
    }
    if wanted(Section::Models) {
        models::bench_models(args, &device, &mut report)?;
    }
    if wanted(Section::AncPredict) {
        let anc = anc_predict::bench_anc_predict(&device, args.quick)?;
        println!(
            "ANC predict of {} samples: batched {:.0} samples/s, --per-sample {:.0} samples/s (over {} samples): {:.0}× faster batched",
            anc["samples"],
            anc["batched_samples_per_s"].as_f64().unwrap_or(0.0),
            anc["per_sample_samples_per_s"].as_f64().unwrap_or(0.0),
            anc["per_sample_samples"],
            anc["speedup"].as_f64().unwrap_or(0.0)
        );
        report.insert("anc_predict".into(), anc);
    }
    if wanted(Section::AncStream) {
        let stream = anc_stream::bench_anc_stream(&device, args.quick)?;
        report.insert("anc_stream".into(), stream);
    }
    if wanted(Section::Loader) {
        let loader = loader::bench_loader(dir, args.quick)?;
        println!(
            "loader: {:.0} windows/s, {:.2} GB/s (plain memcpy of the same bytes: {:.2} GB/s)",
            loader["windows_per_s"].as_f64().unwrap_or(0.0),
            loader["gb_per_s"].as_f64().unwrap_or(0.0),
            loader["memcpy_gb_per_s"].as_f64().unwrap_or(0.0)
        );
        report.insert("loader".into(), loader);
    }
    if wanted(Section::Prepare) {
        let rows = if args.quick {
            200_000
        } else {
            args.prepare_rows
        };
        let prepare = prepare::bench_prepare(dir, rows)?;
        println!(
            "prepare: {rows} rows in {:.1}s ({:.0} rows/s, {:.0} MB/s of CSV), peak RSS {:.0} MB of which heap {:.0} MB (the rest: the mapped store)",
            prepare["seconds"].as_f64().unwrap_or(0.0),
            prepare["rows_per_s"].as_f64().unwrap_or(0.0),
            prepare["mb_per_s"].as_f64().unwrap_or(0.0),
            prepare["peak_rss_mb"].as_f64().unwrap_or(0.0),
            prepare["peak_anon_mb"].as_f64().unwrap_or(0.0)
        );
        report.insert("prepare".into(), prepare);
    }
    if wanted(Section::Distributed) {
        report.insert("distributed".into(), distributed::bench_distributed(args)?);
    }
    if let Some(path) = &args.json {
        stoker_artifact::atomic::write_json(path, &Value::Object(report))?;
        println!("{}", path.display());
    }
    Ok(())
}
