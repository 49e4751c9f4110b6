//! Checkpoints: `<name>.bpk` weights (burnpack, written atomically by burn) beside `<name>.json`
//! metadata (written after the weights, so metadata never points at missing weights).

use std::path::Path;

use burn::prelude::*;
use stoker_artifact::CheckpointMeta;

use crate::error::{Error, Result};
use crate::{InputShape, Model};

pub fn save(dir: &Path, name: &str, model: &Model, meta: &CheckpointMeta) -> Result<()> {
    let expected = format!("{name}.bpk");
    if meta.weights != expected {
        return Err(Error::WeightsName {
            expected,
            found: meta.weights.clone(),
        });
    }
    let weights = dir.join(&meta.weights);
    model
        .clone()
        .save_file(&weights)
        .map_err(|e| Error::SaveWeights {
            path: weights.clone(),
            message: e.to_string(),
        })?;
    meta.save(&dir.join(format!("{name}.json")))?;
    Ok(())
}

pub fn load(dir: &Path, name: &str, device: &Device) -> Result<(Model, CheckpointMeta)> {
    let meta_path = dir.join(format!("{name}.json"));
    if !meta_path.exists() {
        return Err(Error::NotFound(meta_path));
    }
    let meta = CheckpointMeta::load(&meta_path)?;
    let shape = InputShape {
        window: meta.window,
        features: meta.input_features,
        targets: meta.targets.clone(),
        anc: meta.anc.clone(),
    };
    let weights = dir.join(&meta.weights);
    let model = Model::new(&meta.model, &shape, device)
        .map_err(|e| Error::Metadata {
            path: meta_path.clone(),
            message: e.to_string(),
        })?
        .try_load_file(&weights)
        .map_err(|e| Error::LoadWeights {
            path: weights.clone(),
            message: e.to_string(),
        })?;
    Ok((model, meta))
}
