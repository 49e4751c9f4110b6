//! `cargo xtask bench`: training-step and batched-inference throughput of every zoo model on its
//! reference shape in f32 and bf16-mixed, loader throughput beside a plain memcpy of the same
//! bytes, and prepare throughput and peak memory on a generated CSV of 20 million rows.
//! Figures are medians of repeated runs after warm-up; `--rounds N` alternates each model's rows
//! with its PyTorch peer N times and reports medians over the rounds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use burn::prelude::*;
use clap::Args;
use serde_json::{Map, Value, json};
use stoker_artifact::{
    AncSignals, Cnn2dSpec, LossKind, LstmAttentionSpec, ModelSpec, MultibandAncSpec, Precision,
    PreparedData, Split, WindowSpec,
};
use stoker_cli::DeviceArgs;
use stoker_train::loader::{HostBatch, Loader};
use stoker_train::step::batch_gradients;
use stoker_train::trainer::optimizer;
use stoker_zoo::device::open;
use stoker_zoo::{Autocast, InputShape, Model};

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

struct Reference {
    key: &'static str,
    spec: ModelSpec,
    shape: InputShape,
    /// Windows per step.
    batch: usize,
    /// Samples a window counts for: 1 for a forecast window, its error-microphone samples for
    /// an ANC chunk.
    samples_per_window: usize,
}

/// The ANC reference: 3 bands × 256 taps, hidden 384, one chunk of 1024 error samples per
/// step, a 256-tap secondary path.
fn anc_reference() -> Reference {
    let spec = MultibandAncSpec::default();
    let secondary: Vec<f32> = (0..256)
        .map(|k| (-(k as f32) / 40.0).exp() * ((k as f32) * 0.3).sin())
        .collect();
    let chunk = 1024;
    let window = WindowSpec {
        input_len: spec.receptive_field() - 1 + secondary.len() - 1 + chunk,
        horizon: 1 - chunk as isize,
        output_len: chunk,
        stride: chunk,
    };
    Reference {
        key: "multiband_anc",
        spec: ModelSpec::MultibandAnc(spec),
        shape: InputShape {
            window,
            features: 2,
            targets: vec![1],
            anc: Some(AncSignals {
                sample_rate: 16_000,
                source_rate: 16_000,
                secondary_path: secondary,
                primary_taps: 512,
                saturation: 0.0,
                reference_rms: 1.0,
                disturbance_rms: 1.0,
            }),
        },
        batch: 1,
        samples_per_window: chunk,
    }
}

fn references() -> Vec<Reference> {
    let window = |input_len, output_len| WindowSpec {
        input_len,
        horizon: 1,
        output_len,
        stride: 1,
    };
    vec![
        Reference {
            key: "cnn2d",
            spec: ModelSpec::Cnn2d(Cnn2dSpec::default()),
            shape: InputShape {
                window: window(24, 1),
                features: 11,
                targets: vec![0],
                anc: None,
            },
            batch: 512,
            samples_per_window: 1,
        },
        Reference {
            key: "lstm_attention",
            spec: ModelSpec::LstmAttention(LstmAttentionSpec::default()),
            shape: InputShape {
                window: window(96, 96),
                features: 7,
                targets: (0..7).collect(),
                anc: None,
            },
            batch: 256,
            samples_per_window: 1,
        },
        anc_reference(),
    ]
}

fn random_batch(shape: &InputShape, len: usize) -> HostBatch {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    HostBatch {
        inputs: (0..len * shape.window.input_len * shape.features)
            .map(|_| next())
            .collect(),
        targets: (0..len * shape.outputs()).map(|_| next()).collect(),
        len,
    }
}

/// The median of a non-empty list (the mean of the middle two of an even count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    (xs[(n - 1) / 2] + xs[n / 2]) / 2.0
}

/// Median samples/s of `repeats` timed runs of `steps` calls each, after one warm-up run.
fn throughput(
    samples_per_call: usize,
    steps: usize,
    repeats: usize,
    mut call: impl FnMut(),
) -> f64 {
    for _ in 0..steps.min(3) {
        call();
    }
    median(
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..steps {
                    call();
                }
                (steps * samples_per_call) as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Training and inference samples/s; None when the device cannot compute in `precision`.
fn bench_model(
    r: &Reference,
    precision: Precision,
    device: &Device,
    quick: bool,
) -> Option<(f64, f64)> {
    let (steps, repeats) = if quick { (2, 1) } else { (10, 5) };
    let ac = Autocast::for_device(precision, device);
    if ac.is_mixed() != (precision != Precision::F32) {
        return None;
    }
    let device = device.clone();
    let ad = device.clone().autodiff();
    let batch = random_batch(&r.shape, r.batch);
    let mut model = Model::new(&r.spec, &r.shape, &ad);
    let mut optim = optimizer(&Default::default());
    let samples = r.batch * r.samples_per_window;
    let train = throughput(samples, steps, repeats, || {
        let (grads, loss) = batch_gradients(
            &model,
            &batch,
            r.shape.window,
            r.shape.features,
            1,
            LossKind::Mse,
            &ac,
            1.0,
            &ad,
        );
        model = optim.step(1e-4, model.clone(), grads);
        let _ = loss.into_scalar::<f32>(); // one sync per step, as the trainer's loss read
    });
    let valid = model.valid();
    let dims = [r.batch, r.shape.window.input_len, r.shape.features];
    // Inference counts what the forward pass yields: an ANC chunk's control samples include
    // the secondary path's history.
    let infer_samples = if r.samples_per_window == 1 {
        r.batch
    } else {
        let x = stoker_zoo::batch::inputs_tensor(batch.inputs.clone(), dims, &device);
        valid.forward(x).dims().iter().product()
    };
    let infer = throughput(infer_samples, steps, repeats, || {
        let x = stoker_zoo::batch::inputs_tensor(batch.inputs.clone(), dims, &device);
        let _ = stoker_zoo::batch::to_host(valid.forward_with(x, &ac));
    });
    Some((train, infer))
}

/// One figure of a row (train or infer samples/s) over the rounds.
#[derive(Debug, PartialEq)]
struct Figure {
    /// Median of stoker's figures.
    ours: f64,
    /// Median of PyTorch's, over the rounds its peer ran.
    theirs: Option<f64>,
    /// stoker / PyTorch of each round both ran. Each pair ran minutes apart at most, so its
    /// ratio holds while the host's speed drifts between rounds; the median ratio is the figure
    /// to quote, not median(ours) / median(theirs).
    ratios: Vec<f64>,
}

impl Figure {
    /// From each round's stoker figure and PyTorch's (None: the peer did not run).
    fn over(rounds: &[(f64, Option<f64>)]) -> Figure {
        let theirs: Vec<f64> = rounds.iter().filter_map(|r| r.1).collect();
        Figure {
            ours: median(rounds.iter().map(|r| r.0).collect()),
            theirs: (!theirs.is_empty()).then(|| median(theirs)),
            ratios: rounds.iter().filter_map(|&(o, t)| Some(o / t?)).collect(),
        }
    }

    /// Median, min and max of the per-round ratios.
    fn ratio(&self) -> Option<(f64, f64, f64)> {
        let min = self.ratios.iter().copied().reduce(f64::min)?;
        let max = self.ratios.iter().copied().reduce(f64::max)?;
        Some((median(self.ratios.clone()), min, max))
    }

    /// The table's cells: stoker, PyTorch, ratio, [min–max].
    fn cells(&self) -> String {
        let theirs = self.theirs.map_or("-".into(), |t| format!("{t:.0}"));
        let (ratio, range) = self
            .ratio()
            .map_or(("-".into(), String::new()), |(m, lo, hi)| {
                (format!("{m:.2}"), format!("[{lo:.2}–{hi:.2}]"))
            });
        format!("{:>12.0} {theirs:>12} {ratio:>6} {range:<11}", self.ours)
    }
}

/// Every selected model's rows beside its PyTorch peer, `--rounds` times: stoker's rows of one
/// model, then its peer, so that each stoker / PyTorch pair runs close in time (this host's
/// throughput drifts ±20–40% over minutes). Figures are medians over the rounds.
fn bench_models(args: &BenchArgs, device: &Device, report: &mut Map<String, Value>) {
    const PRECISIONS: [Precision; 2] = [Precision::F32, Precision::Bf16Mixed];
    let gpu = stoker_zoo::device::is_gpu(&args.device.device);
    let mut peers = crate::peers::Peers::new(args.quick, gpu);
    println!(
        "{:<16} {:<11} {:>5} {:>16} {:>16}   (device: {})",
        "model", "precision", "round", "train samples/s", "infer samples/s", args.device.device
    );
    let selected = |r: &Reference| args.models.is_empty() || args.models.iter().any(|m| m == r.key);
    let mut table = Vec::new();
    for r in references().into_iter().filter(selected) {
        // Per precision, each round's (stoker, PyTorch) train and infer figures.
        let mut rounds: [(Vec<_>, Vec<_>); 2] = Default::default();
        for round in 1..=args.rounds {
            let ours = PRECISIONS.map(|precision| {
                let figures = bench_model(&r, precision, device, args.quick);
                match figures {
                    Some((train, infer)) => println!(
                        "{:<16} {:<11} {:>5} {train:>16.0} {infer:>16.0}",
                        r.key,
                        precision.name(),
                        format!("{round}/{}", args.rounds)
                    ),
                    None if round == 1 => println!(
                        "{:<16} {:<11} not supported on this device",
                        r.key,
                        precision.name()
                    ),
                    None => {}
                }
                figures
            });
            let theirs = peers.run(r.key);
            for ((precision, ours), (train, infer)) in PRECISIONS.iter().zip(ours).zip(&mut rounds)
            {
                let Some(ours) = ours else { continue };
                let v = theirs.as_ref().map(|t| &t[precision.name()]);
                let figure = |key| v.and_then(|v| v[key].as_f64()).filter(|x| *x > 0.0);
                train.push((ours.0, figure("train_samples_per_s")));
                infer.push((ours.1, figure("infer_samples_per_s")));
            }
        }
        let mut per = Map::new();
        for (precision, (train, infer)) in PRECISIONS.iter().zip(rounds) {
            if train.is_empty() {
                continue;
            }
            let (train, infer) = (Figure::over(&train), Figure::over(&infer));
            let mut row = json!({"train_samples_per_s": train.ours, "infer_samples_per_s": infer.ours, "batch": r.batch * r.samples_per_window});
            if let (Some(torch_train), Some(torch_infer), Some(t), Some(i)) =
                (train.theirs, infer.theirs, train.ratio(), infer.ratio())
            {
                row["pytorch"] = json!({
                    "train_samples_per_s": torch_train,
                    "infer_samples_per_s": torch_infer,
                    "train_ratio": t.0,
                    "infer_ratio": i.0,
                    "rounds": train.ratios.len(),
                    "train_ratios": train.ratios,
                    "infer_ratios": infer.ratios,
                });
            }
            per.insert(precision.name().into(), row);
            table.push((r.key, precision.name(), train, infer));
        }
        report.insert(r.key.into(), Value::Object(per));
    }
    println!(
        "\nmedians over {} round(s); ratio = stoker / PyTorch, the median of the per-round ratios [min–max]",
        args.rounds
    );
    println!(
        "{:<16} {:<11} {:>12} {:>12} {:>6} {:<11} {:>12} {:>12} {:>6} [min–max]",
        "model", "precision", "train", "torch", "ratio", "[min–max]", "infer", "torch", "ratio"
    );
    for (model, precision, train, infer) in &table {
        let line = format!(
            "{model:<16} {precision:<11} {} {}",
            train.cells(),
            infer.cells()
        );
        println!("{}", line.trim_end());
    }
    if let Some(reason) = &peers.off {
        println!("PyTorch peers: {reason}");
    }
    if let Some(version) = peers.torch_version {
        report.insert("pytorch_version".into(), version);
    }
}

/// Whole-signal ANC prediction, batched against one forward pass per sample, on the reference
/// model (random weights: speed does not depend on them).
fn bench_anc_predict(device: &Device, quick: bool) -> Value {
    let r = anc_reference();
    let model = Model::new(&r.spec, &r.shape, device);
    let stoker_zoo::Forecaster::MultibandAnc(net) = &model.net else {
        unreachable!("the ANC reference is a multiband-anc model")
    };
    let samples = if quick { 20_000 } else { 180_000 };
    let per_sample_samples = if quick { 500 } else { samples };
    let signal: Vec<f32> = (0..samples)
        .map(|n| ((n * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let opts = |per_sample| stoker_infer::anc::AncOptions {
        batch_size: 8192,
        per_sample,
        baseline_taps: 512,
        fxnlms_step: 0.1,
    };
    let rate = |signal: &[f32], per_sample| {
        let _ = stoker_infer::anc::control_signal(
            net,
            &signal[..signal.len().min(2_000)],
            opts(per_sample),
        )
        .expect("warm-up pass");
        let t = Instant::now();
        let y = stoker_infer::anc::control_signal(net, signal, opts(per_sample))
            .expect("ANC predict pass");
        assert_eq!(y.len(), signal.len());
        signal.len() as f64 / t.elapsed().as_secs_f64()
    };
    let batched = rate(&signal, false);
    let per_sample = rate(&signal[..per_sample_samples], true);
    json!({
        "samples": samples,
        "batched_samples_per_s": batched,
        "per_sample_samples": per_sample_samples,
        "per_sample_samples_per_s": per_sample,
        "speedup": batched / per_sample,
    })
}

fn bench_loader(dir: &Path, quick: bool) -> Result<Value> {
    let csv = dir.join("loader.csv");
    stoker_data::synthetic::write_pm25_csv(
        &csv,
        &stoker_data::synthetic::SyntheticSpec {
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
    stoker_data::prepare::prepare(&stoker_data::prepare::PrepareRequest {
        config: stoker_artifact::TaskConfig::load(&config)?,
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
    let loader = Loader::new(data.clone(), 2, 4);
    let t = Instant::now();
    loader
        .for_each_batch(order.clone(), 512, spec, |b| -> Result<(), ()> {
            std::hint::black_box(&b.inputs);
            Ok(())
        })
        .ok();
    let loader_s = t.elapsed().as_secs_f64();
    // The same bytes by plain memcpy, one window at a time into a reused buffer.
    let mut buffer = vec![0f32; 512 * spec.input_len * data.store.cols()];
    let t = Instant::now();
    for chunk in order.chunks(512) {
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
        "workers": 2,
        "batch": 512,
    }))
}

/// A PM2.5-format CSV of `rows` hourly rows, streamed to disk (cheap deterministic values).
fn big_csv(path: &Path, rows: usize) -> Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
        && path.with_extension("rows").exists()
        && std::fs::read_to_string(path.with_extension("rows"))?.trim() == rows.to_string()
    {
        return Ok(());
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(
        out,
        "No,year,month,day,hour,pm2.5,DEWP,TEMP,PRES,cbwd,Iws,Is,Ir"
    )?;
    let start = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let wind = ["NE", "NW", "SE", "cv"];
    let mut t = start;
    for i in 0..rows {
        use chrono::{Datelike, Timelike};
        let v = (i * 7919 % 1000) as f32;
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{:.2},0,0",
            i + 1,
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            v * 0.3,
            (v * 0.01) - 5.0,
            (v * 0.02) - 3.0,
            1000.0 + v * 0.02,
            wind[i / 37 % 4],
            v * 0.05
        )?;
        t += chrono::Duration::hours(1);
    }
    out.flush()?;
    std::fs::write(path.with_extension("rows"), rows.to_string())?;
    Ok(())
}

fn bench_prepare(dir: &Path, rows: usize) -> Result<Value> {
    let csv = dir.join("big.csv");
    big_csv(&csv, rows)?;
    let years = (rows / 8766).max(3) as i32;
    let config = dir.join("prepare.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\ninput_len = 24\nsource = {{ kind = \"pm25\", val_start_year = {}, test_start_year = {} }}\n[model]\nkind = \"cnn2d\"\n",
            2000 + years * 8 / 10,
            2000 + years * 9 / 10
        ),
    )?;
    let t = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "prepare",
            "--config",
            config.to_str().unwrap(),
            "--input",
            csv.to_str().unwrap(),
            "--artifacts",
            dir.join("prepare-out").to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("cannot start the prepare child")?;
    // VmHWM includes the store's memory-mapped pages, which are page cache the kernel can
    // reclaim; RssAnon (sampled) is the heap, the memory that must stay bounded.
    let (mut peak_kb, mut peak_anon_kb) = (0u64, 0u64);
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            let field = |name: &str| -> Option<u64> {
                s.lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            };
            peak_kb = peak_kb.max(field("VmHWM:").unwrap_or(0));
            peak_anon_kb = peak_anon_kb.max(field("RssAnon:").unwrap_or(0));
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    anyhow::ensure!(status.success(), "prepare of the generated CSV failed");
    let seconds = t.elapsed().as_secs_f64();
    let csv_bytes = std::fs::metadata(&csv)?.len() as f64;
    Ok(json!({
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows as f64 / seconds,
        "mb_per_s": csv_bytes / seconds / 1e6,
        "csv_mb": csv_bytes / 1e6,
        "peak_rss_mb": peak_kb as f64 / 1024.0,
        "peak_anon_mb": peak_anon_kb as f64 / 1024.0,
    }))
}

/// The parts of the benchmark, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    Models,
    AncPredict,
    Loader,
    Prepare,
}

pub fn run_bench(args: &BenchArgs) -> Result<()> {
    let dir = Path::new("target/bench");
    std::fs::create_dir_all(dir)?;
    let mut report = serde_json::Map::new();
    let wanted = |s: Section| args.only.is_empty() || args.only.contains(&s);
    let device = open(&args.device.device, !args.device.no_fusion).map_err(anyhow::Error::msg)?;
    let keys: Vec<&str> = references().iter().map(|r| r.key).collect();
    if let Some(unknown) = args.models.iter().find(|m| !keys.contains(&m.as_str())) {
        anyhow::bail!("--model {unknown}: not a benchmarked model (one of {keys:?})");
    }
    if wanted(Section::Models) {
        bench_models(args, &device, &mut report);
    }
    if wanted(Section::AncPredict) {
        let anc = bench_anc_predict(&device, args.quick);
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
    if wanted(Section::Loader) {
        let loader = bench_loader(dir, args.quick)?;
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
        let prepare = bench_prepare(dir, rows)?;
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
    if let Some(path) = &args.json {
        stoker_artifact::atomic::write_json(path, &Value::Object(report))?;
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_per_round_then_median_and_range() {
        // The host slowed down in round 2; the peer did not run in round 4.
        let f = Figure::over(&[
            (100.0, Some(100.0)),
            (60.0, Some(40.0)),
            (90.0, Some(100.0)),
            (50.0, None),
        ]);
        assert_eq!(f.ratios, vec![1.0, 1.5, 0.9]);
        assert_eq!(f.ours, 75.0); // the mean of the middle two of four
        assert_eq!(f.theirs, Some(100.0));
        // The median of the per-round ratios, not median(ours) / median(theirs) = 0.75.
        assert_eq!(f.ratio(), Some((1.0, 0.9, 1.5)));
        let even = Figure::over(&[(3.0, Some(1.0)), (1.0, Some(1.0))]);
        assert_eq!(even.ratio(), Some((2.0, 1.0, 3.0)));
        let alone = Figure::over(&[(5.0, None)]);
        assert_eq!((alone.ours, alone.theirs, alone.ratio()), (5.0, None, None));
    }
}
