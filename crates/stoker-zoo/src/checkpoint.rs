//! Checkpoints: `<name>.bpk` weights (burnpack, written atomically by burn) beside `<name>.json`
//! metadata (written after the weights, so metadata never points at missing weights).

use std::path::Path;

use anyhow::{Context, Result, ensure};
use burn::prelude::*;
use stoker_artifact::CheckpointMeta;

use crate::{InputShape, Model};

pub fn save(dir: &Path, name: &str, model: &Model, meta: &CheckpointMeta) -> Result<()> {
    let weights = dir.join(&meta.weights);
    ensure!(
        meta.weights == format!("{name}.bpk"),
        "checkpoint weights must be named {name}.bpk"
    );
    model
        .clone()
        .save_file(&weights)
        .with_context(|| format!("{}: cannot write weights", weights.display()))?;
    meta.save(&dir.join(format!("{name}.json")))?;
    Ok(())
}

pub fn load(dir: &Path, name: &str, device: &Device) -> Result<(Model, CheckpointMeta)> {
    let meta_path = dir.join(format!("{name}.json"));
    ensure!(
        meta_path.exists(),
        "{}: not found: run the train stage first (cargo xtask train --config …)",
        meta_path.display()
    );
    let meta = CheckpointMeta::load(&meta_path)?;
    let shape = InputShape {
        window: meta.window,
        features: meta.input_features,
        targets: meta.targets.clone(),
        anc: meta.anc.clone(),
    };
    let weights = dir.join(&meta.weights);
    let model = Model::new(&meta.model, &shape, device)
        .try_load_file(&weights)
        .map_err(|e| anyhow::anyhow!("{}: cannot load weights: {e}", weights.display()))?;
    Ok((model, meta))
}
