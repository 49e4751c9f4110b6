//! Resumable checkpoints: `ckpt-<step>.bpk` (weights) and `ckpt-<step>.optim.bpk` (optimizer
//! state), then `state.json` naming them — written last, so a run killed at any instant resumes
//! from the newest complete checkpoint. Only the newest `keep_last` are kept.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use stoker_artifact::atomic;
use stoker_artifact::run::TrainState;
use stoker_zoo::Model;

pub const STATE_FILE: &str = "state.json";

pub fn save(
    dir: &Path,
    model: &Model,
    optim: &ModuleOptimizer,
    state: &mut TrainState,
    keep_last: usize,
) -> Result<()> {
    state.weights = format!("ckpt-{:08}.bpk", state.step);
    state.optimizer = format!("ckpt-{:08}.optim.bpk", state.step);
    let weights = dir.join(&state.weights);
    model
        .clone()
        .save_file(&weights)
        .with_context(|| format!("{}: cannot write weights", weights.display()))?;
    let optimizer = dir.join(&state.optimizer);
    optim.save(&optimizer).map_err(|e| {
        anyhow::anyhow!("{}: cannot write optimizer state: {e}", optimizer.display())
    })?;
    atomic::write_json(&dir.join(STATE_FILE), state)?;
    prune(dir, keep_last.max(1))
}

/// Removes all but the newest `keep` checkpoints (names sort by step).
fn prune(dir: &Path, keep: usize) -> Result<()> {
    let mut steps: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| {
            n.strip_prefix("ckpt-")?
                .strip_suffix(".optim.bpk")
                .map(String::from)
        })
        .collect();
    steps.sort();
    for step in steps.iter().take(steps.len().saturating_sub(keep)) {
        for suffix in [".bpk", ".optim.bpk"] {
            let _ = fs::remove_file(dir.join(format!("ckpt-{step}{suffix}")));
        }
    }
    Ok(())
}

/// Loads the newest resumable checkpoint into `model` and `optim`.
pub fn load(
    dir: &Path,
    model: Model,
    optim: ModuleOptimizer,
    manifest_sha256: &str,
) -> Result<(Model, ModuleOptimizer, TrainState)> {
    let path = dir.join(STATE_FILE);
    ensure!(
        path.exists(),
        "{}: not found: nothing to resume (train without --resume first)",
        path.display()
    );
    let state = TrainState::load(&path)?;
    ensure!(
        state.manifest_sha256 == manifest_sha256,
        "{}: the run being resumed trained on other prepared data (manifest hash differs)",
        path.display()
    );
    let weights = dir.join(&state.weights);
    let model = model
        .try_load_file(&weights)
        .map_err(|e| anyhow::anyhow!("{}: cannot load weights: {e}", weights.display()))?;
    let optimizer = dir.join(&state.optimizer);
    let optim = optim.load(&optimizer).map_err(|e| {
        anyhow::anyhow!("{}: cannot load optimizer state: {e}", optimizer.display())
    })?;
    Ok((model, optim, state))
}
