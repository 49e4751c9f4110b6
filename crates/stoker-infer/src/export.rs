//! The export stage: a trained checkpoint → `export/model.safetensors` (every parameter under
//! the PyTorch peer's names and layouts, see `stoker_zoo::export`) and `export/model.json`
//! ([`ExportMeta`]: the specs, features with their train normalisation, targets, the source
//! checkpoint and the tensor list). Both files appear together or not at all.

pub mod cli;

use std::path::PathBuf;

use burn::prelude::Device;
use stoker_artifact::atomic::StagingDir;
use stoker_artifact::export::{
    EXPORT_META_FILE, EXPORT_VERSION, EXPORT_WEIGHTS_FILE, ExportFeature, ExportSource, TensorShape,
};
use stoker_artifact::layout::{BEST_CHECKPOINT, LAST_CHECKPOINT};
use stoker_artifact::manifest::MANIFEST_FILE;
use stoker_artifact::{CheckpointChoice, ExportMeta, PreparedData, RunLock};
use stoker_zoo::checkpoint;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub data_dir: PathBuf,
    pub train_dir: PathBuf,
    pub out_dir: PathBuf,
    pub checkpoint: CheckpointChoice,
}

/// What export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub weights: PathBuf,
    pub meta_path: PathBuf,
    pub meta: ExportMeta,
}

pub fn export(req: &ExportRequest) -> Result<Exported> {
    let _lock = RunLock::for_stage_dir(&req.out_dir)?;
    let data = PreparedData::open(&req.data_dir)?;
    let name = match req.checkpoint {
        CheckpointChoice::Best => BEST_CHECKPOINT,
        CheckpointChoice::Last => LAST_CHECKPOINT,
    };
    // Exporting is a copy of the weights: the CPU reads them fastest.
    let (model, meta) = checkpoint::load(&req.train_dir, name, &Device::flex())
        .map_err(|e| Error::Checkpoint(e.into()))?;
    if meta.manifest_sha256 != data.manifest_sha256 {
        return Err(Error::StaleCheckpoint {
            checkpoint: req.train_dir.join(format!("{name}.json")),
            manifest: data.dir.join(MANIFEST_FILE),
        });
    }
    let tensors = model.pytorch_tensors()?;
    let manifest = &data.manifest;
    let export_meta = ExportMeta {
        format_version: EXPORT_VERSION,
        format: "safetensors".into(),
        weights: EXPORT_WEIGHTS_FILE.into(),
        model: meta.model.clone(),
        window: meta.window,
        features: manifest
            .features
            .iter()
            .map(|f| ExportFeature {
                name: f.name.clone(),
                mean: f.mean,
                std: f.std,
            })
            .collect(),
        targets: meta.targets.clone(),
        metric_scale: manifest.metric_scale,
        target_unit: manifest.target_unit.clone(),
        anc: meta.anc.clone(),
        checkpoint: ExportSource {
            name: name.into(),
            epoch: meta.epoch,
            step: meta.step,
            val_loss: meta.val_loss,
            manifest_sha256: meta.manifest_sha256.clone(),
        },
        tensors: tensors
            .iter()
            .map(|t| TensorShape {
                name: t.name.clone(),
                shape: t.shape.clone(),
            })
            .collect(),
    };
    let staging = StagingDir::new(&req.out_dir)?;
    stoker_artifact::export::write_safetensors(
        &staging.path().join(EXPORT_WEIGHTS_FILE),
        &tensors,
    )?;
    export_meta.save(&staging.path().join(EXPORT_META_FILE))?;
    staging.commit()?;
    Ok(Exported {
        weights: req.out_dir.join(EXPORT_WEIGHTS_FILE),
        meta_path: req.out_dir.join(EXPORT_META_FILE),
        meta: export_meta,
    })
}
