//! A checkpoint loaded for data it must fit: trained on the same prepared data (manifest hash)
//! and with the same input and target columns, or refused before the model sees a batch.

use std::path::PathBuf;

use burn::prelude::Device;
use stoker_artifact::layout::{BEST_CHECKPOINT, LAST_CHECKPOINT};
use stoker_artifact::{CheckpointChoice, CheckpointMeta};
use stoker_zoo::{Model, checkpoint};

use crate::error::{Error, Result};

/// What the data at hand requires of a checkpoint.
pub(crate) struct Expected<'a> {
    pub manifest_sha256: &'a str,
    pub features: usize,
    pub targets: &'a [usize],
}

pub(crate) struct Loaded {
    pub model: Model,
    pub meta: CheckpointMeta,
    /// `best` or `last`.
    pub name: &'static str,
}

impl Loaded {
    /// Loads `choice` from `train_dir`; a checkpoint of other data is the error `stale` makes
    /// from its metadata path.
    pub fn load(
        train_dir: &std::path::Path,
        choice: CheckpointChoice,
        device: &Device,
        expected: Expected,
        stale: impl FnOnce(PathBuf) -> Error,
    ) -> Result<Self> {
        let name = match choice {
            CheckpointChoice::Best => BEST_CHECKPOINT,
            CheckpointChoice::Last => LAST_CHECKPOINT,
        };
        let meta_path = train_dir.join(format!("{name}.json"));
        let (model, meta) =
            checkpoint::load(train_dir, name, device).map_err(|e| Error::Checkpoint(e.into()))?;
        if meta.manifest_sha256 != expected.manifest_sha256 {
            return Err(stale(meta_path));
        }
        // Same hash, so normally the same shapes; a hand-edited checkpoint must not reach the
        // model.
        if meta.input_features != expected.features || meta.targets != expected.targets {
            return Err(Error::ShapeMismatch {
                checkpoint: meta_path,
                expected: format!(
                    "{} inputs, targets {:?}",
                    expected.features, expected.targets
                ),
                found: format!("{} inputs, targets {:?}", meta.input_features, meta.targets),
            });
        }
        Ok(Self { model, meta, name })
    }

    /// `best (epoch 7)`, as metrics name the checkpoint.
    pub fn label(&self) -> String {
        format!("{} (epoch {})", self.name, self.meta.epoch)
    }
}
