//! PyTorch peers (`bench/peers/run.py`): the same architectures, shapes, thread count and
//! optimizer in PyTorch, run beside stoker's model rows when PyTorch is importable, so the
//! stoker / PyTorch ratios come from one run on one machine.

use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value, json};

const SCRIPT: &str = "bench/peers/run.py";
/// run.py's exit status when `import torch` fails.
const NO_TORCH: i32 = 3;

/// The peers' figures, or None (with the reason printed) when they cannot run here.
pub fn run(out_dir: &Path, quick: bool, models: &[String]) -> Option<Value> {
    let python = std::env::var("STOKER_PEER_PYTHON").unwrap_or_else(|_| "python3".into());
    if !Path::new(SCRIPT).exists() {
        println!("PyTorch peers: skipped ({SCRIPT} not found; run from the workspace root)");
        return None;
    }
    let json = out_dir.join("peers.json");
    let mut cmd = Command::new(&python);
    cmd.arg(SCRIPT).arg("--json").arg(&json);
    if quick {
        cmd.arg("--quick");
    }
    for model in models {
        cmd.arg("--model").arg(model);
    }
    println!("PyTorch peers ({python} {SCRIPT}) …");
    match cmd.status() {
        Ok(s) if s.success() => std::fs::read_to_string(&json)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .or_else(|| {
                println!("PyTorch peers: {} unreadable", json.display());
                None
            }),
        Ok(s) if s.code() == Some(NO_TORCH) => {
            println!(
                "PyTorch peers: skipped (PyTorch not importable by {python}; see bench/peers/README.md)"
            );
            None
        }
        Ok(s) => {
            println!("PyTorch peers: failed ({s})");
            None
        }
        Err(e) => {
            println!("PyTorch peers: skipped ({python}: {e})");
            None
        }
    }
}

/// Prints stoker / PyTorch for every model and precision both measured, and records the
/// ratios beside stoker's figures in `report`.
pub fn compare(report: &mut Map<String, Value>, peers: &Value) {
    println!(
        "{:<16} {:<11} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7}",
        "model", "precision", "train", "torch", "ratio", "infer", "torch", "ratio"
    );
    for (model, per) in report.iter_mut() {
        let Some(per) = per.as_object_mut() else {
            continue;
        };
        for (precision, ours) in per.iter_mut() {
            let theirs = &peers[model.as_str()][precision.as_str()];
            let figure = |v: &Value, key: &str| v[key].as_f64().filter(|x| *x > 0.0);
            let (Some(train), Some(infer), Some(torch_train), Some(torch_infer)) = (
                figure(ours, "train_samples_per_s"),
                figure(ours, "infer_samples_per_s"),
                figure(theirs, "train_samples_per_s"),
                figure(theirs, "infer_samples_per_s"),
            ) else {
                continue;
            };
            let (train_ratio, infer_ratio) = (train / torch_train, infer / torch_infer);
            println!(
                "{model:<16} {precision:<11} {train:>12.0} {torch_train:>12.0} {train_ratio:>7.2} {infer:>12.0} {torch_infer:>12.0} {infer_ratio:>7.2}"
            );
            if let Some(ours) = ours.as_object_mut() {
                ours.insert(
                    "pytorch".into(),
                    json!({
                        "train_samples_per_s": torch_train,
                        "infer_samples_per_s": torch_infer,
                        "train_ratio": train_ratio,
                        "infer_ratio": infer_ratio,
                    }),
                );
            }
        }
    }
}
