//! Training-step and batched-inference throughput of every zoo model on its reference shape, in
//! f32 and bf16-mixed, each model's rows alternated with its PyTorch peer.

use anyhow::Result;
use burn::prelude::*;
use serde_json::{Map, Value, json};
use stoker_artifact::{LossKind, Precision};
use stoker_runtime::Autocast;
use stoker_runtime::batch::{inputs_tensor, try_to_host};
use stoker_runtime::device::is_gpu;
use stoker_train::{batch_gradients, optimizer};
use stoker_zoo::Model;

use crate::BenchArgs;
use crate::measure::throughput;
use crate::peers::Peers;
use crate::reference::{Reference, random_batch, references};
use crate::rounds::{Figure, print_table};

const PRECISIONS: [Precision; 2] = [Precision::F32, Precision::Bf16Mixed];

/// Training and inference samples/s; None when the device cannot compute in `precision`.
fn bench_model(
    r: &Reference,
    precision: Precision,
    device: &Device,
    quick: bool,
) -> Result<Option<(f64, f64)>> {
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
        let x = inputs_tensor(batch.inputs.clone(), dims, &device);
        valid.forward(x).dims().iter().product()
    };
    // The read-back is the sync that makes the timing honest; its first failure ends the row.
    let mut failure = None;
    let infer = throughput(infer_samples, steps, repeats, || {
        let x = inputs_tensor(batch.inputs.clone(), dims, &device);
        if let Err(e) = try_to_host(valid.forward_with(x, &ac)) {
            failure.get_or_insert(e);
        }
    });
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(Some((train, infer))),
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
            let mut ours = [None; 2];
            for (slot, precision) in ours.iter_mut().zip(PRECISIONS) {
                let figures = bench_model(&r, precision, device, args.quick)?;
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
                *slot = figures;
            }
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
    print_table(args.rounds, &table);
    if let Some(reason) = &peers.off {
        println!("PyTorch peers: {reason}");
    }
    if let Some(version) = peers.torch_version {
        report.insert("pytorch_version".into(), version);
    }
    Ok(())
}
