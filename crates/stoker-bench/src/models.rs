//! Training-step and batched-inference throughput of every zoo model on its reference shape, in
//! f32 and bf16-mixed, each model's rows alternated with its PyTorch peer.

use anyhow::Result;
use burn::prelude::*;
use serde_json::{Map, Value, json};
use stoker_artifact::{LossKind, Precision};
use stoker_kernels::gemm::product_flops;
use stoker_kernels::roof;
use stoker_runtime::Autocast;
use stoker_runtime::batch::{inputs_tensor, try_to_host};
use stoker_runtime::device::is_gpu;
use stoker_train::{batch_gradients, optimizer};
use stoker_zoo::Model;

use crate::BenchArgs;
use crate::measure::{calls, throughput};
use crate::peers::Peers;
use crate::reference::{Reference, random_batch, references};
use crate::rounds::{Figure, print_table};

const PRECISIONS: [Precision; 2] = [Precision::F32, Precision::Bf16Mixed];

/// A row's figures: samples/s and the FLOPs a sample costs in stoker's products (0 where none
/// run through them: a GPU device).
#[derive(Debug, Clone, Copy)]
struct RowFigures {
    train: f64,
    infer: f64,
    train_flops: f64,
    infer_flops: f64,
}

/// Samples/s of `call` (as `throughput`) and the product FLOPs it ran per sample.
fn counted(samples: usize, steps: usize, repeats: usize, call: impl FnMut()) -> (f64, f64) {
    let before = product_flops();
    let per_s = throughput(samples, steps, repeats, call);
    let flops = (product_flops() - before) as f64;
    (per_s, flops / (calls(steps, repeats) * samples) as f64)
}

/// Training and inference figures; None when the device cannot compute in `precision`.
fn bench_model(
    r: &Reference,
    precision: Precision,
    device: &Device,
    quick: bool,
) -> Result<Option<RowFigures>> {
    let (steps, repeats) = if quick { (2, 1) } else { (10, 5) };
    let ac = Autocast::for_device(precision, device);
    if ac.is_mixed() != (precision != Precision::F32) {
        return Ok(None);
    }
    let device = device.clone();
    let ad = device.clone().autodiff();
    let batch = random_batch(&r.shape, r.batch);
    let mut model = Model::new(&r.spec, &r.shape, &ad)?;
    let mut optim = optimizer(&Default::default());
    let samples = r.batch * r.samples_per_window;
    let (train, train_flops) = counted(samples, steps, repeats, || {
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
        let x = inputs_tensor(batch.inputs.clone(), dims, &device);
        valid.forward(x).dims().iter().product()
    };
    // The read-back is the sync that makes the timing honest; its first failure ends the row.
    let mut failure = None;
    let (infer, infer_flops) = counted(infer_samples, steps, repeats, || {
        let x = inputs_tensor(batch.inputs.clone(), dims, &device);
        if let Err(e) = try_to_host(valid.forward_with(x, &ac)) {
            failure.get_or_insert(e);
        }
    });
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(Some(RowFigures {
            train,
            infer,
            train_flops,
            infer_flops,
        })),
    }
}

/// Every selected model's rows beside its PyTorch peer, `--rounds` times: stoker's rows of one
/// model, then its peer, so that each stoker / PyTorch pair runs close in time (this host's
/// throughput drifts ±20–40% over minutes). Figures are medians over the rounds.
pub(crate) fn bench_models(
    args: &BenchArgs,
    device: &Device,
    report: &mut Map<String, Value>,
) -> Result<()> {
    let mut peers = Peers::new(args.quick, is_gpu(&args.device.device));
    let peak = Peak::measure(is_gpu(&args.device.device), args.quick);
    if let Some(line) = peak.describe() {
        println!("{line}");
    }
    println!(
        "{:<16} {:<11} {:>5} {:>16} {:>16}   (device: {})",
        "model", "precision", "round", "train samples/s", "infer samples/s", args.device.device
    );
    let selected = |r: &Reference| args.models.is_empty() || args.models.iter().any(|m| m == r.key);
    let mut table = Vec::new();
    for r in references().into_iter().filter(selected) {
        // Per precision, each round's (stoker, PyTorch) train and infer figures.
        let mut rounds: [(Vec<_>, Vec<_>); 2] = Default::default();
        // Per precision, product FLOPs per train and infer sample (the same every round).
        let mut flops_per_sample = std::collections::HashMap::new();
        for round in 1..=args.rounds {
            let mut ours = [None; 2];
            for (slot, precision) in ours.iter_mut().zip(PRECISIONS) {
                let figures = bench_model(&r, precision, device, args.quick)?;
                match figures {
                    Some(f) => println!(
                        "{:<16} {:<11} {:>5} {:>16.0} {:>16.0}{}",
                        r.key,
                        precision.name(),
                        format!("{round}/{}", args.rounds),
                        f.train,
                        f.infer,
                        peak.products(precision, &f)
                    ),
                    None if round == 1 => println!(
                        "{:<16} {:<11} not supported on this device",
                        r.key,
                        precision.name()
                    ),
                    None => {}
                }
                *slot = figures;
            }
            let theirs = peers.run(r.key);
            for ((precision, ours), (train, infer)) in PRECISIONS.iter().zip(ours).zip(&mut rounds)
            {
                let Some(ours) = ours else { continue };
                let v = theirs.as_ref().map(|t| &t[precision.name()]);
                let figure = |key| v.and_then(|v| v[key].as_f64()).filter(|x| *x > 0.0);
                train.push((ours.train, figure("train_samples_per_s")));
                infer.push((ours.infer, figure("infer_samples_per_s")));
                flops_per_sample.insert(precision.name(), (ours.train_flops, ours.infer_flops));
            }
        }
        let mut per = Map::new();
        for (precision, (train, infer)) in PRECISIONS.iter().zip(rounds) {
            if train.is_empty() {
                continue;
            }
            let (train, infer) = (Figure::over(&train), Figure::over(&infer));
            let mut row = json!({"train_samples_per_s": train.ours, "infer_samples_per_s": infer.ours, "batch": r.batch * r.samples_per_window});
            if let Some(&(train_flops, infer_flops)) = flops_per_sample.get(precision.name())
                && train_flops > 0.0
            {
                let peak = peak.of(*precision);
                let (tg, ig) = (
                    train.ours * train_flops / 1e9,
                    infer.ours * infer_flops / 1e9,
                );
                row["products"] = json!({
                    "train_flops_per_sample": train_flops,
                    "infer_flops_per_sample": infer_flops,
                    "train_gflop_per_s": tg,
                    "infer_gflop_per_s": ig,
                    "peak_gflop_per_s": peak,
                    "train_share_of_peak": tg / peak,
                    "infer_share_of_peak": ig / peak,
                });
            }
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
    print_table(args.rounds, &table);
    if let Some(reason) = &peers.off {
        println!("PyTorch peers: {reason}");
    }
    if let Some(version) = peers.torch_version {
        report.insert("pytorch_version".into(), version);
    }
    Ok(())
}

/// This machine's product roof, measured at the start of the models' bench: the single-thread
/// peaks × rayon's threads (an upper bound: two threads measure a few % under twice one).
struct Peak {
    threads: usize,
    f32: f64,
    bf16: f64,
}

impl Peak {
    fn measure(gpu: bool, quick: bool) -> Self {
        let iterations = if quick { 2_000_000 } else { 20_000_000 };
        let threads = roof::product_threads();
        if gpu {
            return Self {
                threads,
                f32: 0.0,
                bf16: 0.0,
            };
        }
        let t = threads as f64;
        Self {
            threads,
            f32: roof::fma_peak_gflops(iterations) * t,
            bf16: roof::bf16_dot_peak_gflops(iterations) * t,
        }
    }

    /// The roof of a precision: bf16-mixed runs its products in bf16 where the CPU can.
    fn of(&self, precision: Precision) -> f64 {
        match precision {
            Precision::Bf16Mixed if self.bf16 > 0.0 => self.bf16,
            _ => self.f32,
        }
    }

    fn describe(&self) -> Option<String> {
        (self.f32 > 0.0).then(|| {
            format!(
                "product roof measured now, {} thread(s): f32 FMA {:.0} GFLOP/s, bf16 dot {:.0} GFLOP/s",
                self.threads, self.f32, self.bf16
            )
        })
    }

    /// `; products 123 / 456 GFLOP/s (12 / 45 % of peak)` for a row, or nothing without a roof
    /// or products.
    fn products(&self, precision: Precision, f: &RowFigures) -> String {
        let peak = self.of(precision);
        if peak <= 0.0 || f.train_flops <= 0.0 {
            return String::new();
        }
        let (tg, ig) = (f.train * f.train_flops / 1e9, f.infer * f.infer_flops / 1e9);
        format!(
            "   products train {tg:.0} / infer {ig:.0} GFLOP/s ({:.0} / {:.0} % of peak)",
            100.0 * tg / peak,
            100.0 * ig / peak
        )
    }
}
