//! Every checkpoint file in `train/`, written and read in one place.
//!
//! - `best` and `last` (`<name>.bpk` weights + `<name>.json` metadata, through the zoo's
//!   checkpoint format, which predict reads);
//! - resumable checkpoints: `ckpt-<step>.bpk` (weights) and `ckpt-<step>.optim.bpk` (optimizer
//!   state), then `state.json` naming them — written last, so a run killed at any instant
//!   resumes from the newest complete checkpoint. Only the newest `keep_last` are kept. The
//!   state names its run ([`RunIdentity`]): resume continues only a run of the same settings,
//!   and a fresh run discards the resumable checkpoints of the one before.

use std::fs;
use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use stoker_artifact::layout::{BEST_CHECKPOINT, LAST_CHECKPOINT};
use stoker_artifact::run::{CHECKPOINT_VERSION, StepTime, TRAIN_STATE_VERSION, TrainState};
use stoker_artifact::{CheckpointMeta, RunIdentity, TaskConfig, atomic};
use stoker_zoo::{InputShape, Model, checkpoint};

use crate::error::{Error, Result};
use crate::step::Learner;

const STATE_FILE: &str = "state.json";

pub(crate) struct CheckpointStore {
    dir: PathBuf,
    /// What every checkpoint's metadata says; epoch, step, loss and file are set per save.
    meta: CheckpointMeta,
    keep_last: usize,
    /// The run being trained: written into fresh states, matched against resumed ones.
    run: RunIdentity,
    /// Writes files: false on a distributed run's ranks other than the leader, which only read.
    writes: bool,
}

impl CheckpointStore {
    /// The store of `dir` (created if missing) for the run `run` of `cfg` on data of `shape`.
    pub fn create(
        dir: &Path,
        cfg: &TaskConfig,
        shape: &InputShape,
        manifest_sha256: &str,
        run: RunIdentity,
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
            run,
            writes: true,
        })
    }

    /// The store writing files (`yes`), or only reading them (a distributed run's other ranks).
    pub fn writing(self, yes: bool) -> Self {
        Self {
            writes: yes,
            ..self
        }
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
        if !self.writes {
            return Ok(());
        }
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
        if !self.writes {
            return Ok(());
        }
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
                message: "not found: nothing to resume (a run started without --resume \
                          discards the resumable checkpoints before it, and none was written \
                          since); train without --resume"
                    .into(),
            });
        }
        let state = TrainState::load(&path)?;
        if state.manifest_sha256 != self.meta.manifest_sha256 {
            return Err(Error::Resume {
                path,
                message:
                    "the run being resumed trained on other prepared data (manifest hash differs)"
                        .into(),
            });
        }
        let refusal = match &state.run {
            None => Some(
                "holds no run identity (written by an older stoker), so it cannot be matched \
                 to this run's settings"
                    .to_string(),
            ),
            Some(run) => run.refusal(&self.run),
        };
        if let Some(why) = refusal {
            return Err(Error::Resume {
                path,
                message: format!("{why}; rerun without --resume to start over"),
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

    /// A fresh run's first act: the resumable checkpoints of the run before go, state first
    /// (so no state names a removed file). Otherwise a fresh run killed before its first
    /// checkpoint would leave `--resume` to continue the old run beside this one's `best`.
    pub fn discard_resumable(&self) -> Result<()> {
        if !self.writes {
            return Ok(());
        }
        let state = self.dir.join(STATE_FILE);
        match fs::remove_file(&state) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(state, "cannot remove", e)),
        }
        self.remove_checkpoints(0)
    }

    /// Removes all but the newest `keep_last` resumable checkpoints.
    fn prune(&self) -> Result<()> {
        self.remove_checkpoints(self.keep_last)
    }

    /// Removes the resumable checkpoints but the newest `keep` (names sort by step).
    fn remove_checkpoints(&self, keep: usize) -> Result<()> {
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
        for step in steps.iter().take(steps.len().saturating_sub(keep)) {
            for suffix in [".bpk", ".optim.bpk"] {
                let _ = fs::remove_file(self.dir.join(format!("ckpt-{step}{suffix}")));
            }
        }
        Ok(())
    }

    /// The state of a run that starts at epoch 1 with `initial` as its best validation loss.
    pub fn fresh_state(&self, initial: f64) -> TrainState {
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
            manifest_sha256: self.meta.manifest_sha256.clone(),
            loss_scale: None,
            train_loss: None,
            run: Some(self.run.clone()),
            initial_val_loss: Some(initial),
        }
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
        let store = CheckpointStore::create(dir, &cfg, &shape, "sha", identity(&cfg)).unwrap();
        (store, learner, cfg, shape)
    }

    fn identity(cfg: &TaskConfig) -> RunIdentity {
        RunIdentity::new(cfg, 1_000)
    }

    /// The error of resuming in `store`'s directory as a run of `cfg`.
    fn resume_error(store: &CheckpointStore, learner: &Learner, cfg: &TaskConfig) -> String {
        store
            .load_resumable(learner.model.clone(), optimizer(&cfg.train))
            .err()
            .expect("resume was refused")
            .to_string()
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
        let mut state = store.fresh_state(1.0);
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

        let other = CheckpointStore::create(dir.path(), &cfg, &shape, "other data", identity(&cfg))
            .unwrap();
        let err = resume_error(&other, &learner, &cfg);
        assert!(err.contains("manifest hash differs"), "{err}");
    }

    #[test]
    fn a_state_of_another_seed_settings_or_no_identity_is_refused_saying_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let (store, learner, cfg, shape) = run(dir.path());
        let mut state = store.fresh_state(1.0);
        state.step = 3;
        store.save_resumable(&learner, &mut state).unwrap();
        let state_file = dir.path().join(STATE_FILE);

        let mut seeded = cfg.clone();
        seeded.seed = 7;
        let store7 =
            CheckpointStore::create(dir.path(), &seeded, &shape, "sha", identity(&seeded)).unwrap();
        let err = resume_error(&store7, &learner, &seeded);
        assert_eq!(
            err,
            format!(
                "{}: run was started with seed 42, this run has seed 7; rerun without --resume to start over",
                state_file.display()
            )
        );

        let mut wider = cfg.clone();
        if let stoker_artifact::ModelSpec::Cnn2d(m) = &mut wider.model {
            m.hidden = 6;
        }
        wider.train.lr = 0.01;
        let store_wider =
            CheckpointStore::create(dir.path(), &wider, &shape, "sha", identity(&wider)).unwrap();
        let err = resume_error(&store_wider, &learner, &cfg);
        assert!(
            err.contains("run was started with model.hidden 4, train.lr 0.001, this run has model.hidden 6, train.lr 0.01"),
            "{err}"
        );

        // Same settings, another start time: the same run as far as resume can tell.
        let later = CheckpointStore::create(
            dir.path(),
            &cfg,
            &shape,
            "sha",
            RunIdentity::new(&cfg, 2_000),
        )
        .unwrap();
        let fresh = Model::new(&cfg.model, &shape, &Device::flex().autodiff()).unwrap();
        let (_, _, loaded) = later.load_resumable(fresh, optimizer(&cfg.train)).unwrap();
        assert_eq!(loaded.run.unwrap().started_unix, 1_000);

        // A state written before run identities.
        let mut json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&state_file).unwrap()).unwrap();
        json.as_object_mut().unwrap().remove("run");
        fs::write(&state_file, json.to_string()).unwrap();
        let err = resume_error(&store, &learner, &cfg);
        assert!(
            err.contains(STATE_FILE)
                && err.contains("no run identity")
                && err.contains("without --resume"),
            "{err}"
        );
    }

    #[test]
    fn a_fresh_run_discards_the_resumable_checkpoints_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, learner, cfg, _) = run(dir.path());
        let mut state = store.fresh_state(1.0);
        state.step = 5;
        store.save_resumable(&learner, &mut state).unwrap();
        fs::write(dir.path().join("best.json"), b"{}").unwrap();
        store.discard_resumable().unwrap();
        let left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["best.json"]);
        let err = resume_error(&store, &learner, &cfg);
        assert!(err.contains("nothing to resume"), "{err}");
        // Nothing to discard is fine too.
        store.discard_resumable().unwrap();
    }
}
