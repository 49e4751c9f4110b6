//! Which run a `train/state.json` belongs to: the settings that shape its numbers (hashed, and
//! kept so a refusal can name what changed), its seed and when it started. `--resume` continues
//! only a run started with the same settings and seed.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::TaskConfig;
use crate::diff::{Difference, Side, describe, differences};
use crate::manifest::hex;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// SHA-256 of `settings` (serialised with sorted keys).
    pub config_sha256: String,
    pub seed: u64,
    /// When the run started, seconds since the Unix epoch.
    pub started_unix: u64,
    /// The effective settings after command-line overrides that the hash covers: the window
    /// (`data.input_len`, `horizon`, `output_len`), `model` and `train`, less the keys that only
    /// say how the run uses the machine and the disk (`workers`, `prefetch`, `keep_last`,
    /// `log_steps`) or
    /// when it stops (`epochs`, `patience`: `--resume --epochs 20` extends a run, and nothing
    /// in a step depends on the total). The data itself is matched by the manifest hash;
    /// `predict` is not the train stage's.
    pub settings: Value,
}

impl RunIdentity {
    /// The identity of a run of `config` (validated, overrides applied) started at `started_unix`.
    pub fn new(config: &TaskConfig, started_unix: u64) -> Self {
        let mut train =
            serde_json::to_value(&config.train).expect("train settings serialise to JSON");
        if let Some(t) = train.as_object_mut() {
            for key in [
                "workers",
                "prefetch",
                "keep_last",
                "epochs",
                "patience",
                "log_steps",
            ] {
                t.remove(key);
            }
        }
        let settings = json!({
            "data": {
                "input_len": config.data.input_len,
                "horizon": config.data.horizon,
                "output_len": config.data.output_len,
            },
            "model": serde_json::to_value(&config.model).expect("model specs serialise to JSON"),
            "train": train,
        });
        // serde_json's maps keep keys sorted, so equal settings give equal bytes.
        let bytes = serde_json::to_vec(&settings).expect("a JSON value serialises");
        Self {
            config_sha256: hex(&Sha256::digest(&bytes)),
            seed: config.seed,
            started_unix,
            settings,
        }
    }

    /// The identity of the same run trained data-parallel by `ranks` processes (1: alone): the
    /// global batch, and so every step, depends on it.
    pub fn with_ranks(mut self, ranks: usize) -> Self {
        self.settings["ranks"] = ranks.into();
        let bytes = serde_json::to_vec(&self.settings).expect("a JSON value serialises");
        self.config_sha256 = hex(&Sha256::digest(&bytes));
        self
    }

    /// Why a run with identity `current` may not continue the run `self` names (`run was started
    /// with seed 7, this run has seed 42`), or `None` when it may.
    pub fn refusal(&self, current: &RunIdentity) -> Option<String> {
        let mut diffs = Vec::new();
        if self.seed != current.seed {
            diffs.push(Difference::new("seed", self.seed, current.seed));
        }
        if self.config_sha256 != current.config_sha256 {
            let settings = differences("", &self.settings, &current.settings);
            if settings.is_empty() {
                // Only a hand-edited state gets here: the hash is all there is to report.
                diffs.push(Difference::new(
                    "settings hash",
                    &self.config_sha256,
                    &current.config_sha256,
                ));
            }
            diffs.extend(settings);
        }
        if diffs.is_empty() {
            return None;
        }
        Some(format!(
            "run was started with {}, this run has {}",
            describe(&diffs, Side::Left, " "),
            describe(&diffs, Side::Right, " ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(extra: &str) -> TaskConfig {
        TaskConfig::parse(
            &format!(
                "seed = 7\n[data]\ninput_len = 8\nsource = {{ kind = \"pm25\", val_start_year = 2011, test_start_year = 2012 }}\n[model]\nkind = \"cnn2d\"\nhidden = 16\n[train]\n{extra}\n"
            ),
            Path::new("c.toml"),
        )
        .unwrap()
    }

    #[test]
    fn same_settings_match_whatever_the_start_time_and_machine_knobs() {
        let a = RunIdentity::new(&config(""), 100);
        let b = RunIdentity::new(
            &config("workers = 7\nkeep_last = 5\nepochs = 40\npatience = 3"),
            200,
        );
        assert_eq!(a.config_sha256, b.config_sha256);
        assert_eq!(a.refusal(&b), None);
    }

    #[test]
    fn another_seed_or_setting_is_named_with_both_values() {
        let a = RunIdentity::new(&config(""), 100);
        let mut seed = config("");
        seed.seed = 42;
        assert_eq!(
            a.refusal(&RunIdentity::new(&seed, 100)).unwrap(),
            "run was started with seed 7, this run has seed 42"
        );
        let lr = RunIdentity::new(&config("lr = 0.01"), 100);
        assert_ne!(a.config_sha256, lr.config_sha256);
        assert_eq!(
            a.refusal(&lr).unwrap(),
            "run was started with train.lr 0.001, this run has train.lr 0.01"
        );
    }
}
