//! `bench --only distributed`: data-parallel training steps on 2 ranks × 1 thread against one
//! process × 2 threads, same global batch, on the CNN2D and ANC reference shapes, alternated
//! `--rounds` times; then, on paper, each zoo model's gradient bytes per step and a ring
//! all-reduce's time at 10 and 100 Gbit/s.
//!
//! Each side runs `<current binary> bench-worker …` (the binary calling [`run_bench`] must have
//! that subcommand, as `cargo xtask` does): alone with `RAYON_NUM_THREADS=2`, or under `mpirun
//! -np 2` with one thread a rank. A worker prints one JSON line (rank 0).
//!
//! [`run_bench`]: crate::run_bench

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::prelude::*;
use clap::Args;
use serde_json::{Value, json};
use stoker_artifact::{LossKind, Precision};
use stoker_runtime::Autocast;
use stoker_runtime::batch::{inputs_tensor, try_to_host};
use stoker_train::{HostBatch, Team, batch_gradients, mpirun, optimizer};
use stoker_zoo::Model;

use crate::BenchArgs;
use crate::measure::median;
use crate::reference::{Reference, random_batch, references};

/// The shapes compared: (model, global batch). ANC's reference step is one chunk; two ranks
/// need two, so both sides take two.
const SHAPES: [(&str, usize); 2] = [("cnn2d", 512), ("multiband_anc", 2)];

/// `bench-worker`: timed training steps of one reference model as one rank of its team.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub model: String,
    /// Windows a step over every rank.
    #[arg(long)]
    pub global_batch: usize,
    /// Timed steps (after 3 warm-up steps).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Steps in bf16-mixed instead of f32 (the distributed bench runs f32; this lets a
    /// profiler such as `perf record` look at one model row's training step alone).
    #[arg(long)]
    pub bf16: bool,
    /// Time batched inference (the forward pass without autodiff, one process) instead of
    /// training steps: for a profiler, as `--bf16`.
    #[arg(long)]
    pub infer: bool,
}

/// Runs the worker: every rank steps; rank 0 prints `{"samples_per_s", "step_s", "allreduce_fraction", "parameters"}`.
pub fn run_worker(args: &WorkerArgs) -> Result<()> {
    let team = Team::from_launcher()?;
    let r = references()
        .into_iter()
        .find(|r| r.key == args.model)
        .with_context(|| format!("--model {}: not a reference model", args.model))?;
    let share = team.share(args.global_batch);
    let local = random_batch(&r.shape, share.len());
    let device = Device::flex().autodiff();
    device.seed(1);
    let mut model = Model::new(&r.spec, &r.shape, &device)?;
    let mut optim = optimizer(&Default::default());
    let precision = if args.bf16 {
        Precision::Bf16Mixed
    } else {
        Precision::F32
    };
    let ac = Autocast::for_device(precision, &device);
    if args.infer {
        anyhow::ensure!(team.is_solo(), "--infer runs in one process");
        return time_inference(args, &r, &model, &local, &ac);
    }
    let weight = share.len() as f32 / args.global_batch as f32;
    let mut allreduce = Duration::ZERO;
    let mut step = |allreduce: &mut Duration| {
        let (mut grads, loss) = batch_gradients(
            &model,
            &local,
            r.shape.window,
            r.shape.features,
            1,
            LossKind::Mse,
            &ac,
            1.0,
            &device,
        );
        let loss = loss.into_scalar::<f32>();
        // As the trainer: one process alone averages nothing (no copies on its side).
        if !team.is_solo() {
            let t = Instant::now();
            team.average_gradients(&model, &mut grads, weight, loss);
            *allreduce += t.elapsed();
        }
        model = optim.step(1e-4, model.clone(), grads);
    };
    for _ in 0..3 {
        step(&mut allreduce);
    }
    team.barrier();
    allreduce = Duration::ZERO;
    let t = Instant::now();
    for _ in 0..args.steps {
        step(&mut allreduce);
    }
    team.barrier();
    let seconds = t.elapsed().as_secs_f64();
    if team.leads() {
        let samples = (args.steps * args.global_batch * r.samples_per_window) as f64;
        let line = json!({
            "samples_per_s": samples / seconds,
            "step_s": seconds / args.steps as f64,
            "allreduce_fraction": allreduce.as_secs_f64() / seconds,
            "parameters": model.num_params(),
        });
        println!("{line}");
    }
    Ok(())
}

/// `bench-worker --infer`: timed forward passes over the batch, read back to the host.
fn time_inference(
    args: &WorkerArgs,
    r: &Reference,
    model: &Model,
    batch: &HostBatch,
    ac: &Autocast,
) -> Result<()> {
    let valid = model.valid();
    let device = Device::flex();
    let dims = [batch.len, r.shape.window.input_len, r.shape.features];
    let forward = || -> Result<()> {
        let x = inputs_tensor(batch.inputs.clone(), dims, &device);
        try_to_host(valid.forward_with(x, ac))?;
        Ok(())
    };
    for _ in 0..3 {
        forward()?;
    }
    let t = Instant::now();
    for _ in 0..args.steps {
        forward()?;
    }
    let seconds = t.elapsed().as_secs_f64();
    let windows = (args.steps * batch.len) as f64;
    let line = json!({
        "samples_per_s": windows * r.samples_per_window as f64 / seconds,
        "step_s": seconds / args.steps as f64,
        "allreduce_fraction": 0.0,
        "parameters": model.num_params(),
    });
    println!("{line}");
    Ok(())
}

/// One side's figures, parsed from its worker's line.
fn side(mut command: Command, args: &[String]) -> Result<(f64, f64)> {
    let o = command
        .args(args)
        .output()
        .context("cannot start the bench worker")?;
    if !o.status.success() {
        bail!(
            "bench worker failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let line: Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("the bench worker printed no figures")?;
    let f = |k: &str| line[k].as_f64().unwrap_or(f64::NAN);
    Ok((f("samples_per_s"), f("allreduce_fraction")))
}

pub(crate) fn bench_distributed(args: &BenchArgs) -> Result<Value> {
    let mut rows = serde_json::Map::new();
    if !stoker_train::MPI {
        println!(
            "distributed: this build has no MPI (cargo run --release -p xtask --features mpi -- \
             bench --only distributed); the paper figures only"
        );
    } else {
        let exe = std::env::current_exe()?;
        let steps = if args.quick { 3 } else { 20 };
        println!(
            "distributed training steps, same global batch ({} rounds): 2 ranks × 1 thread vs 1 process × 2 threads",
            args.rounds
        );
        for (key, global) in SHAPES {
            let worker: Vec<String> = [
                "bench-worker",
                "--model",
                key,
                "--global-batch",
                &global.to_string(),
                "--steps",
                &steps.to_string(),
            ]
            .map(String::from)
            .to_vec();
            let (mut one, mut two, mut share, mut ratios) = (vec![], vec![], vec![], vec![]);
            for _ in 0..args.rounds {
                let mut alone = Command::new(&exe);
                alone.env("RAYON_NUM_THREADS", "2");
                let (a, _) = side(alone, &worker)?;
                let mut ranks = mpirun(2);
                ranks.args(["-x", "RAYON_NUM_THREADS=1"]).arg(&exe);
                let (b, f) = side(ranks, &worker)?;
                one.push(a);
                two.push(b);
                share.push(f);
                ratios.push(b / a);
            }
            let ratio_range = (
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(0.0, f64::max),
            );
            let row = json!({
                "global_batch": global,
                "one_process_samples_per_s": median(one),
                "two_ranks_samples_per_s": median(two),
                "allreduce_fraction": median(share),
                "ratio": median(ratios),
                "ratio_min": ratio_range.0,
                "ratio_max": ratio_range.1,
            });
            println!(
                "  {key:<14} batch {global:>3}: 1 × 2 threads {:>9.0} samples/s, 2 × 1 thread {:>9.0} samples/s ({:.2}×, range {:.2}–{:.2}); all-reduce {:.1} % of the 2-rank step",
                row["one_process_samples_per_s"].as_f64().unwrap_or(0.0),
                row["two_ranks_samples_per_s"].as_f64().unwrap_or(0.0),
                row["ratio"].as_f64().unwrap_or(0.0),
                ratio_range.0,
                ratio_range.1,
                100.0 * row["allreduce_fraction"].as_f64().unwrap_or(0.0),
            );
            rows.insert(key.into(), row);
        }
    }
    Ok(json!({ "measured": rows, "on_paper": on_paper() }))
}

/// Each zoo model's gradient bytes per step (f32) and a ring all-reduce's time for 2 and 8
/// ranks at 10 and 100 Gbit/s: 2(N−1)/N × bytes over the link, latency left out.
fn on_paper() -> Value {
    let device = Device::flex();
    println!("  on paper (ring all-reduce, f32 gradients, bandwidth only):");
    let mut rows = serde_json::Map::new();
    for r in references() {
        let params = parameters(&r, &device);
        let bytes = 4.0 * params as f64;
        let time_ms =
            |ranks: f64, gbit: f64| 1e3 * 2.0 * (ranks - 1.0) / ranks * bytes * 8.0 / (gbit * 1e9);
        let row = json!({
            "parameters": params,
            "gradient_bytes": bytes,
            "ms_2_ranks_10gbit": time_ms(2.0, 10.0),
            "ms_2_ranks_100gbit": time_ms(2.0, 100.0),
            "ms_8_ranks_10gbit": time_ms(8.0, 10.0),
            "ms_8_ranks_100gbit": time_ms(8.0, 100.0),
        });
        println!(
            "  {:<14} {:>9} parameters, {:>6.2} MB a step: 2 ranks {:.3} ms at 10 Gbit/s, {:.3} ms at 100; 8 ranks {:.3} / {:.3} ms",
            r.key,
            params,
            bytes / 1e6,
            time_ms(2.0, 10.0),
            time_ms(2.0, 100.0),
            time_ms(8.0, 10.0),
            time_ms(8.0, 100.0),
        );
        rows.insert(r.key.into(), row);
    }
    Value::Object(rows)
}

fn parameters(r: &Reference, device: &Device) -> usize {
    Model::new(&r.spec, &r.shape, device).map_or(0, |m| m.num_params())
}
