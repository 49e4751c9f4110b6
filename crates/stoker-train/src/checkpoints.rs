//! Every checkpoint file in `train/`, written and read in one place.
//!
//! - `best` and `last` (`<name>.bpk` weights + `<name>.json` metadata, through the zoo's
//!   checkpoint format, which predict reads);
//! - resumable checkpoints: `ckpt-<step>.bpk` (weights) and `ckpt-<step>.optim.bpk` (optimizer
//!   state), then `state.json` naming them — written last, so a run killed at any instant
//!   resumes from the newest complete checkpoint. Only the newest `keep_last` are kept.

use std::fs;
use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use stoker_artifact::layout::{BEST_CHECKPOINT, LAST_CHECKPOINT};
use stoker_artifact::run::{CHECKPOINT_VERSION, StepTime, TRAIN_STATE_VERSION, TrainState};
use stoker_artifact::{CheckpointMeta, TaskConfig, atomic};
use stoker_zoo::{InputShape, Model, checkpoint};

use crate::error::{Error, Result};
use crate::step::Learner;

const STATE_FILE: &str = "state.json";

pub(crate) struct CheckpointStore {
    dir: PathBuf,
    /// What every checkpoint's metadata says; epoch, step, loss and file are set per save.
    meta: CheckpointMeta,
    keep_last: usize,
}

impl CheckpointStore {
    /// The store of `dir` (created if missing) for a run of `cfg` on data of `shape`.
    pub fn create(
        dir: &Path,
        cfg: &TaskConfig,
        shape: &InputShape,
        manifest_sha256: &str,
    ) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create", e))?;
        let meta = CheckpointMeta {
            format_version: CHECKPOINT_VERSION,
            model: cfg.model.clone(),
            input_features: shape.features,
            window: shape.window,
            targets: shape.targets.clone(),
            anc: shape.anc.clone(),
            manifest_sha256: manifest_sha256.into(),
            epoch: 0,
            step: 0,
            val_loss: f64::NAN,
            precision: cfg.train.precision.name().into(),
            weights: String::new(),
        };
        Ok(Self {
            dir: dir.into(),
            meta,
            keep_last: cfg.train.keep_last.max(1),
        })
    }

    /// The model that reached the best validation loss so far.
    pub fn save_best(&self, model: &Model, epoch: usize, step: u64, val_loss: f64) -> Result<()> {
        self.save_named(BEST_CHECKPOINT, model, epoch, step, val_loss)
    }

    /// The model at the end of the latest epoch.
    pub fn save_last(&self, model: &Model, epoch: usize, step: u64, val_loss: f64) -> Result<()> {
        self.save_named(LAST_CHECKPOINT, model, epoch, step, val_loss)
    }

    fn save_named(
        &self,
        name: &str,
        model: &Model,
        epoch: usize,
        step: u64,
        val_loss: f64,
    ) -> Result<()> {
        let meta = CheckpointMeta {
            epoch,
            step,
            val_loss,
            weights: format!("{name}.bpk"),
            ..self.meta.clone()
        };
        Ok(checkpoint::save(&self.dir, name, model, &meta)?)
    }

    /// Weights, optimizer state (and f16 loss scale) of `learner`, then `state` naming them.
    pub fn save_resumable(&self, learner: &Learner, state: &mut TrainState) -> Result<()> {
        // A diverged run's state would hold `null`s that no resume can read back.
        Error::check_finite(
            state.epoch_loss_sum,
            "training loss",
            state.epoch,
            state.step,
        )?;
        state.weights = format!("ckpt-{:08}.bpk", state.step);
        state.optimizer = format!("ckpt-{:08}.optim.bpk", state.step);
        state.loss_scale = learner.loss_scale();
        let weights = self.dir.join(&state.weights);
        learner
            .model
            .clone()
            .save_file(&weights)
            .map_err(|e| Error::checkpoint(&weights, "cannot write weights", e))?;
        let optimizer = self.dir.join(&state.optimizer);
        learner
            .optim
            .save(&optimizer)
            .map_err(|e| Error::checkpoint(&optimizer, "cannot write optimizer state", e))?;
        atomic::write_json(&self.dir.join(STATE_FILE), state)?;
        self.prune()
    }

    /// The newest resumable checkpoint, loaded into `model` and `optim`.
    pub fn load_resumable(
        &self,
        model: Model,
        optim: ModuleOptimizer,
    ) -> Result<(Model, ModuleOptimizer, TrainState)> {
        let path = self.dir.join(STATE_FILE);
        if !path.exists() {
            return Err(Error::Resume {
                path,
                message: "not found: nothing to resume (train without --resume first)",
            });
        }
        let state = TrainState::load(&path)?;
        if state.manifest_sha256 != self.meta.manifest_sha256 {
            return Err(Error::Resume {
                path,
                message: "the run being resumed trained on other prepared data (manifest hash differs)",
            });
        }
        let weights = self.dir.join(&state.weights);
        let model = model
            .try_load_file(&weights)
            .map_err(|e| Error::checkpoint(&weights, "cannot load weights", e))?;
        let optimizer = self.dir.join(&state.optimizer);
        let optim = optim
            .load(&optimizer)
            .map_err(|e| Error::checkpoint(&optimizer, "cannot load optimizer state", e))?;
        Ok((model, optim, state))
    }

    /// Removes all but the newest `keep_last` resumable checkpoints (names sort by step).
    fn prune(&self) -> Result<()> {
        let mut steps: Vec<String> = fs::read_dir(&self.dir)
            .map_err(|e| Error::io(&self.dir, "cannot list", e))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| {
                n.strip_prefix("ckpt-")?
                    .strip_suffix(".optim.bpk")
                    .map(String::from)
            })
            .collect();
        steps.sort();
        for step in steps
            .iter()
            .take(steps.len().saturating_sub(self.keep_last))
        {
            for suffix in [".bpk", ".optim.bpk"] {
                let _ = fs::remove_file(self.dir.join(format!("ckpt-{step}{suffix}")));
            }
        }
        Ok(())
    }
}

/// The state of a run that starts at epoch 1 with `initial` as its best validation loss.
pub(crate) fn fresh_state(initial: f64, manifest_sha256: &str) -> TrainState {
    TrainState {
        format_version: TRAIN_STATE_VERSION,
        epoch: 1,
        batches_done: 0,
        step: 0,
        epoch_loss_sum: 0.0,
        best_val_loss: initial,
        best_epoch: 0,
        evals_since_best: 0,
        records: Vec::new(),
        step_time: StepTime::default(),
        weights: String::new(),
        optimizer: String::new(),
        manifest_sha256: manifest_sha256.into(),
        loss_scale: None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::adam::optimizer;
    use crate::testing::one_target_of_two;

    fn run(dir: &Path) -> (CheckpointStore, Learner, TaskConfig, InputShape) {
        let mut cfg = TaskConfig::parse(
            "[data]\ninput_len = 8\nsource = { kind = \"pm25\", val_start_year = 2011, test_start_year = 2012 }\n[model]\nkind = \"cnn2d\"\nchannels = [2]\nhidden = 4\n",
            Path::new("test.toml"),
        )
        .unwrap();
        cfg.train.keep_last = 1;
        let shape = one_target_of_two(8);
        let device = Device::flex();
        let model = Model::new(&cfg.model, &shape, &device.clone().autodiff()).unwrap();
        let learner = Learner::new(
            model,
            optimizer(&cfg.train),
            &cfg.train,
            &shape,
            &device,
            None,
        );
        let store = CheckpointStore::create(dir, &cfg, &shape, "sha").unwrap();
        (store, learner, cfg, shape)
    }

    #[test]
    fn resumable_checkpoints_round_trip_and_only_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (store, learner, cfg, shape) = run(dir.path());
        let nothing = store
            .load_resumable(learner.model.clone(), optimizer(&cfg.train))
            .err()
            .unwrap();
        assert!(
            nothing.to_string().contains("nothing to resume"),
            "{nothing}"
        );
        let mut state = fresh_state(1.0, "sha");
        for step in [7, 14] {
            state.step = step;
            store.save_resumable(&learner, &mut state).unwrap();
        }
        let mut files: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(
            files,
            ["ckpt-00000014.bpk", "ckpt-00000014.optim.bpk", STATE_FILE]
        );
        let fresh = Model::new(&cfg.model, &shape, &Device::flex().autodiff()).unwrap();
        let (_, _, loaded) = store.load_resumable(fresh, optimizer(&cfg.train)).unwrap();
        assert_eq!(
            (loaded.step, loaded.weights.as_str()),
            (14, "ckpt-00000014.bpk")
        );

        let other = CheckpointStore::create(dir.path(), &cfg, &shape, "other data").unwrap();
        let err = other
            .load_resumable(learner.model.clone(), optimizer(&cfg.train))
            .err()
            .unwrap();
        assert!(err.to_string().contains("manifest hash differs"), "{err}");
    }
}
