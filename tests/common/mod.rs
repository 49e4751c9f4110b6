//! Helpers shared by the end-to-end tests: run the xtask binary, write small configs and data.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn xtask(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("xtask runs")
}

/// Runs `stages` through xtask on `config` and `artifacts` (plus `extra` flags); each must succeed.
pub fn run_stages(cwd: &Path, config: &str, artifacts: &str, stages: &[&str], extra: &[&str]) {
    for stage in stages {
        let mut args = vec![*stage, "--config", config, "--artifacts", artifacts];
        args.extend(extra);
        let o = xtask(&args, cwd);
        assert!(o.status.success(), "{stage} {extra:?}: {}", stderr(&o));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small, fast config over PM2.5-format data: tiny CNN, one epoch.
pub fn tiny_config(dir: &Path, input: &Path, val_start_year: i32, test_start_year: i32) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        format!(
            r#"
seed = 7
[data]
input = "{}"
input_len = 12
source = {{ kind = "pm25", val_start_year = {val_start_year}, test_start_year = {test_start_year} }}
[model]
kind = "cnn2d"
channels = [4, 8]
hidden = 16
residual = true
[train]
epochs = 1
batch_size = 64
[predict]
batch_size = 500
"#,
            input.display()
        ),
    )
    .unwrap();
    path
}

/// The tiny task on a synthetic 2010–2012 series, trained `epochs` epochs with a resumable
/// checkpoint every `checkpoint_steps` steps (the newest two kept): for kill-and-resume tests.
pub fn checkpointed_tiny_config(dir: &Path, epochs: usize, checkpoint_steps: usize) -> PathBuf {
    let csv = synthetic_csv(dir, 3);
    let config = tiny_config(dir, &csv, 2011, 2012);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "epochs = 1",
        &format!(
            "epochs = {epochs}\ncheckpoint_interval = \"{checkpoint_steps} steps\"\nkeep_last = 2"
        ),
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// Every weight of the `last` checkpoint in `train_dir`, one list per parameter in visiting
/// order.
pub fn last_weights(train_dir: &Path) -> Vec<Vec<f32>> {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::prelude::*;
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .push(param.val().into_data().try_into_vec_as::<f32>().unwrap());
        }
    }
    let (model, _) = stoker_zoo::checkpoint::load(train_dir, "last", &Device::flex()).unwrap();
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

/// Writes a synthetic PM2.5 CSV of `years` years from 2010 through the xtask binary.
pub fn synthetic_csv(dir: &Path, years: u32) -> PathBuf {
    let out = dir.join("synthetic.csv");
    let o = xtask(
        &[
            "synth",
            "--out",
            out.to_str().unwrap(),
            "--years",
            &years.to_string(),
            "--seed",
            "3",
        ],
        dir,
    );
    assert!(o.status.success(), "synth failed: {}", stderr(&o));
    out
}

/// The project's shared datasets, if this machine has them.
pub fn shared_dataset(name: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/datasets")
        .join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipped: {} is absent (real-data tests need ../shared beside the project)",
            path.display()
        );
        None
    }
}

/// A smooth multivariate hourly series with daily cycles, `date` first, as ETT files are.
pub fn ett_csv(dir: &std::path::Path, rows: usize) -> std::path::PathBuf {
    let path = dir.join("plant.csv");
    let mut text = String::from("date,load_a,load_b,temp_x,temp_y,oil\n");
    let start = chrono::NaiveDate::from_ymd_opt(2020, 3, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    for i in 0..rows {
        let t = start + chrono::Duration::hours(i as i64);
        let d = std::f64::consts::TAU * i as f64 / 24.0;
        let vals = [
            d.sin() * 5.0 + 10.0,
            d.cos() * 2.0,
            (d * 0.5).sin() + i as f64 * 0.001,
            (d + 1.0).sin(),
            20.0 + d.sin() * 3.0 + (i % 7) as f64 * 0.1,
        ];
        let cells: Vec<String> = vals.iter().map(|v| format!("{v:.3}")).collect();
        text.push_str(&format!(
            "{},{}\n",
            t.format("%Y-%m-%d %H:%M:%S"),
            cells.join(",")
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// A synthetic ANC setup (`synth --anc`: noise.wav, primary_path.csv, secondary_path.csv) in
/// `dir/name`.
pub fn synth_anc(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let o = xtask(
        &[
            "synth",
            "--anc",
            out.to_str().unwrap(),
            "--seconds",
            "4",
            "--seed",
            "5",
        ],
        dir,
    );
    assert!(o.status.success(), "synth --anc failed: {}", stderr(&o));
    out
}

/// An ANC config at `dir/anc.toml`: the recording (if given), both paths, `source_extra` inside
/// the source table (`", resample = false"`) and `rest` after `[model] kind` (model keys, then
/// any further tables).
pub fn anc_config(
    dir: &Path,
    input: Option<&Path>,
    paths: (&Path, &Path),
    chunk: usize,
    source_extra: &str,
    rest: &str,
) -> PathBuf {
    let path = dir.join("anc.toml");
    let input = input
        .map(|p| format!("input = \"{}\"\n", p.display()))
        .unwrap_or_default();
    std::fs::write(
        &path,
        format!(
            "[data]\n{input}output_len = {chunk}\nsource = {{ kind = \"anc\", primary_path = \"{}\", secondary_path = \"{}\"{source_extra} }}\n[model]\nkind = \"multiband-anc\"\n{rest}\n",
            paths.0.display(),
            paths.1.display()
        ),
    )
    .unwrap();
    path
}

/// A synthetic ANC setup in `dir/setup` and a config over it with 256-sample chunks; `rest`
/// follows `[model] kind` (model keys, then further tables).
pub fn synthetic_anc_task(dir: &Path, rest: &str) -> PathBuf {
    let setup = synth_anc(dir, "setup");
    anc_config(
        dir,
        Some(&setup.join("noise.wav")),
        (
            &setup.join("primary_path.csv"),
            &setup.join("secondary_path.csv"),
        ),
        256,
        "",
        rest,
    )
}

/// A small LSTM-attention task on the 700-row file of [`ett_csv`]: 24 steps in, 12 out, rows
/// 400 / 150 / 150 for train, validation and test, trained `epochs` epochs.
pub fn small_ett_config(dir: &Path, epochs: usize) -> PathBuf {
    let config = dir.join("ett.toml");
    std::fs::write(
        &config,
        format!(
            r#"
seed = 3
[data]
input_len = 24
output_len = 12
source = {{ kind = "ett", train_rows = 400, val_rows = 150, test_rows = 150 }}
[model]
kind = "lstm-attention"
hidden = 8
layers = 1
attention = 4
instance_norm = true
linear_skip = true
[train]
epochs = {epochs}
batch_size = 32
"#
        ),
    )
    .unwrap();
    config
}

/// The tiny PM2.5 task of [`tiny_config`] on `csv`, prepared, trained and predicted into
/// `dir/art`: (config path, artifacts path).
pub fn tiny_task_through_predict(
    dir: &Path,
    csv: &Path,
    val_start_year: i32,
    test_start_year: i32,
) -> (PathBuf, PathBuf) {
    let config = tiny_config(dir, csv, val_start_year, test_start_year);
    let art = dir.join("art");
    run_stages(
        dir,
        config.to_str().unwrap(),
        art.to_str().unwrap(),
        &["prepare", "train", "predict"],
        &[],
    );
    (config, art)
}
