//! Bad input: a one-line error naming the file and the place, a non-zero exit, and the
//! artifacts of the last good run left exactly as they were.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != ".stoker.lock") {
                // The lock file names its last holder's PID: not an artifact.
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

struct Fixture {
    dir: tempfile::TempDir,
    csv: PathBuf,
    config: PathBuf,
    art: PathBuf,
}

impl Fixture {
    /// Runs `args` (a stage and its flags) on this fixture's config and artifacts, expecting a
    /// one-line error that contains every `expected` part and leaves the artifacts untouched.
    fn stage_fails(&self, args: &[&str], expected: &[&str]) {
        let before = snapshot(&self.art);
        let mut all = args.to_vec();
        all.extend([
            "--config",
            self.config.to_str().unwrap(),
            "--artifacts",
            self.art.to_str().unwrap(),
        ]);
        let o = xtask(&all, self.dir.path());
        assert!(!o.status.success(), "{args:?} was accepted");
        let err = stderr(&o);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        for part in expected {
            assert!(err.contains(part), "{args:?}: `{part}` missing from: {err}");
        }
        assert_eq!(before, snapshot(&self.art), "{args:?} changed artifacts");
    }

    /// A good prepared (and optionally trained) artifacts directory.
    fn new(train: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let csv = synthetic_csv(dir.path(), 3);
        let config = tiny_config(dir.path(), &csv, 2011, 2012);
        let art = dir.path().join("art");
        let f = Self {
            dir,
            csv,
            config,
            art,
        };
        assert!(f.run("prepare", None).status.success());
        if train {
            assert!(f.run("train", None).status.success());
        }
        f
    }

    fn run(&self, stage: &str, input: Option<&Path>) -> std::process::Output {
        match input {
            Some(input) => self.run_with(stage, &["--input", input.to_str().unwrap()]),
            None => self.run_with(stage, &[]),
        }
    }

    /// `stage` on the fixture's config and artifacts, with `flags`.
    fn run_with(&self, stage: &str, flags: &[&str]) -> std::process::Output {
        let mut args = vec![
            stage,
            "--config",
            self.config.to_str().unwrap(),
            "--artifacts",
            self.art.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        xtask(&args, self.dir.path())
    }

    /// Runs prepare on `bad` and checks the error and that nothing changed.
    fn prepare_fails(&self, bad: &Path, expected: &[&str]) {
        let before = snapshot(&self.art);
        let o = self.run("prepare", Some(bad));
        assert!(!o.status.success(), "prepare accepted {}", bad.display());
        let err = stderr(&o);
        assert_eq!(
            err.trim().lines().count(),
            1,
            "error must be one line: {err}"
        );
        for part in expected {
            assert!(err.contains(part), "`{part}` missing from: {err}");
        }
        assert_eq!(
            before,
            snapshot(&self.art),
            "artifacts changed after a failed prepare"
        );
    }
}

#[test]
fn truncated_csv() {
    let f = Fixture::new(false);
    let text = std::fs::read_to_string(&f.csv).unwrap();
    let bad = f.dir.path().join("truncated.csv");
    // Cut in the middle of line 1001 (the header is line 1).
    let cut: usize = text.lines().take(1000).map(|l| l.len() + 1).sum::<usize>() + 17;
    std::fs::write(&bad, &text[..cut]).unwrap();
    f.prepare_fails(&bad, &["truncated.csv", "line 1001", "expected 13 fields"]);
}

#[test]
fn non_numeric_cell() {
    let f = Fixture::new(false);
    let text = std::fs::read_to_string(&f.csv).unwrap();
    let bad = f.dir.path().join("cell.csv");
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 99 {
                let mut cells: Vec<&str> = l.split(',').collect();
                cells[7] = "warm"; // TEMP
                cells.join(",")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&bad, lines.join("\n")).unwrap();
    f.prepare_fails(
        &bad,
        &[
            "cell.csv",
            "line 100, column `TEMP`",
            "`warm` is not a number",
        ],
    );
}

#[test]
fn empty_file() {
    let f = Fixture::new(false);
    let bad = f.dir.path().join("empty.csv");
    std::fs::write(&bad, "").unwrap();
    f.prepare_fails(&bad, &["empty.csv", "empty file"]);
}

#[test]
fn missing_input_file() {
    let f = Fixture::new(false);
    f.prepare_fails(
        &f.dir.path().join("nope.csv"),
        &["nope.csv", "no such file"],
    );
}

#[test]
fn manifest_of_another_format_version() {
    let f = Fixture::new(true);
    let manifest = f.art.join("data/manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replacen("\"format_version\": 1", "\"format_version\": 2", 1),
    )
    .unwrap();
    for stage in ["train", "predict"] {
        let before = snapshot(&f.art);
        let o = f.run(stage, None);
        assert!(!o.status.success(), "{stage} accepted a version-2 manifest");
        let err = stderr(&o);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("manifest.json")
                && err.contains("`format_version`")
                && err.contains("found format version 2"),
            "{err}"
        );
        assert_eq!(before, snapshot(&f.art), "{stage} changed artifacts");
    }
}

/// A good prepared ANC artifacts directory: a synthetic 16 kHz setup (`synth --anc`) prepared
/// with `resample = false`. `csv` holds the noise recording.
fn anc_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let setup = synth_anc(dir.path(), "setup");
    let config = anc_config(
        dir.path(),
        None,
        (
            &setup.join("primary_path.csv"),
            &setup.join("secondary_path.csv"),
        ),
        256,
        ", resample = false",
        "",
    );
    let art = dir.path().join("art");
    let f = Fixture {
        csv: setup.join("noise.wav"),
        config,
        art,
        dir,
    };
    let o = f.run("prepare", Some(&f.csv));
    assert!(o.status.success(), "ANC prepare failed: {}", stderr(&o));
    f
}

/// A mono PCM WAV of `bits`-bit samples, byte by byte (hound refuses to write some of these).
fn wav_bytes(rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block = bits / 8;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    b.extend_from_slice(&block.to_le_bytes());
    b.extend_from_slice(&bits.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn anc_truncated_wav_header() {
    let f = anc_fixture();
    let bytes = std::fs::read(&f.csv).unwrap();
    let bad = f.dir.path().join("truncated.wav");
    std::fs::write(&bad, &bytes[..30]).unwrap();
    f.prepare_fails(&bad, &["truncated.wav", "not a readable WAV file"]);
}

#[test]
fn anc_8bit_pcm() {
    let f = anc_fixture();
    let bad = f.dir.path().join("pcm8.wav");
    let samples: Vec<u8> = (0..16_000u32).map(|i| (128 + (i % 64)) as u8).collect();
    std::fs::write(&bad, wav_bytes(16_000, 8, &samples)).unwrap();
    f.prepare_fails(
        &bad,
        &["pcm8.wav: 8-bit PCM is not supported, convert to 16-bit or float"],
    );
}

#[test]
fn anc_zero_length_file() {
    let f = anc_fixture();
    let bad = f.dir.path().join("empty.wav");
    std::fs::write(&bad, "").unwrap();
    f.prepare_fails(&bad, &["empty.wav", "empty file"]);
}

#[test]
fn anc_rate_mismatch_without_resampling() {
    let f = anc_fixture();
    let other = f.dir.path().join("rec48k");
    let o = xtask(
        &[
            "synth",
            "--anc",
            other.to_str().unwrap(),
            "--seconds",
            "1",
            "--rate",
            "48000",
        ],
        f.dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    f.prepare_fails(
        &other.join("noise.wav"),
        &[
            "rec48k/noise.wav",
            "48000 Hz",
            "16000 Hz",
            "resample = false",
        ],
    );
}

#[test]
fn flags_are_checked_like_the_config_they_override() {
    let f = Fixture::new(true);
    for (args, expected) in [
        (
            &["train", "--epochs", "0"][..],
            &["--epochs", "must be > 0"][..],
        ),
        (&["train", "--lr", "NaN"], &["--lr", "finite"]),
        (&["train", "--lr=-1"], &["--lr", "> 0"]),
        (&["train", "--lr", "inf"], &["--lr", "finite"]),
        (
            &["predict", "--batch-size", "0"],
            &["--batch-size", "must be > 0"],
        ),
    ] {
        f.stage_fails(args, expected);
    }
}

#[test]
fn a_second_run_on_the_same_artifacts_directory_is_refused_naming_the_holder() {
    use std::io::Write;
    let f = Fixture::new(true);
    // Another run holds the directory: this test process takes the lock as a stage would.
    let mut lock = std::fs::OpenOptions::new()
        .write(true)
        .open(f.art.join(".stoker.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    lock.set_len(0).unwrap();
    write!(lock, "{}", std::process::id()).unwrap();
    let pid = std::process::id().to_string();
    for stage in ["train", "predict", "prepare"] {
        f.stage_fails(&[stage], &["already running", &pid, "art"]);
    }
    drop(lock);
    assert!(f.run("predict", None).status.success());
}

#[test]
fn temporaries_of_killed_runs_are_removed_by_the_next_run() {
    let f = Fixture::new(true);
    // PIDs above the kernel's maximum (2^22) belong to no process.
    let staged = f.art.join(".data.tmp-4999999");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("windows.bin"), b"partial").unwrap();
    let scratch = f.art.join("train/best.bpk.4999998-0.tmp");
    let ours = f.art.join("train/.state.json.tmp-4999997");
    std::fs::write(&scratch, b"partial").unwrap();
    std::fs::write(&ours, b"partial").unwrap();
    let o = f.run("predict", None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!staged.exists() && !scratch.exists() && !ours.exists());
    assert!(f.art.join("train/best.bpk").exists());
}

#[test]
fn a_diverging_run_stops_saying_where_and_leaves_readable_checkpoints() {
    let f = Fixture::new(true);
    let o = f.run_with("train", &["--lr", "1e30"]);
    assert!(!o.status.success(), "a diverging run exited 0");
    let err = stderr(&o);
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains("diverged at epoch 1") && last.contains("train.lr"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // `null` is how serde writes a NaN: only the optional loss scale may be absent.
    for file in snapshot(&f.art.join("train")).keys() {
        if file
            .extension()
            .is_some_and(|e| e == "json" || e == "jsonl")
        {
            for line in std::fs::read_to_string(file).unwrap().lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    assert_no_null(&v, file);
                }
            }
            let whole: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(file).unwrap())
                    .unwrap_or(serde_json::Value::Bool(true));
            assert_no_null(&whole, file);
        }
    }
    let o = f.run("predict", None);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn assert_no_null(v: &serde_json::Value, file: &Path) {
    if let Some(map) = v.as_object() {
        for (key, value) in map {
            assert!(
                !value.is_null() || key == "loss_scale",
                "{}: `{key}` is null",
                file.display()
            );
            assert_no_null(value, file);
        }
    } else if let Some(items) = v.as_array() {
        items.iter().for_each(|x| assert_no_null(x, file));
    }
}

#[test]
fn metadata_naming_a_column_that_does_not_exist_is_refused() {
    let f = Fixture::new(true);
    let manifest = f.art.join("data/manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["targets"] = serde_json::json!([99]);
    std::fs::write(&manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    for stage in ["train", "predict"] {
        f.stage_fails(
            &[stage],
            &["manifest.json", "target column 99 does not exist"],
        );
    }
}

#[test]
fn a_checkpoint_whose_shapes_do_not_fit_the_data_is_refused() {
    let f = Fixture::new(true);
    let meta = f.art.join("train/best.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    m["input_features"] = serde_json::json!(m["input_features"].as_u64().unwrap() + 3);
    std::fs::write(&meta, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    // The weights' shapes give it away first; either way the error names the checkpoint.
    f.stage_fails(&["predict"], &["train/best"]);
}

impl Fixture {
    /// Rewrites this fixture's config, replacing `from` by `to`.
    fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(from), "{from} not in the config");
        std::fs::write(&self.config, text.replacen(from, to, 1)).unwrap();
    }
}

#[test]
fn resume_with_another_seed_or_settings_is_refused_saying_what_it_found() {
    let f = Fixture::new(true);
    // The run's own settings resume (here: a finished run, so nothing is left to train).
    let o = f.run_with("train", &["--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let state = "train/state.json";
    f.stage_fails(
        &["train", "--resume", "--seed", "42"],
        &[
            state,
            "run was started with seed 7, this run has seed 42",
            "rerun without --resume",
        ],
    );
    f.stage_fails(
        &["train", "--resume", "--lr", "0.01"],
        &[
            state,
            "run was started with train.lr 0.001, this run has train.lr 0.01",
        ],
    );
    f.edit_config("hidden = 16", "hidden = 24");
    f.stage_fails(
        &["train", "--resume"],
        &[
            state,
            "run was started with model.hidden 16, this run has model.hidden 24",
        ],
    );
}

#[test]
fn resume_state_without_a_run_identity_is_refused() {
    let f = Fixture::new(true);
    let path = f.art.join("train/state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(state["run"]["config_sha256"].is_string(), "{state}");
    state.as_object_mut().unwrap().remove("run");
    std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
    f.stage_fails(
        &["train", "--resume"],
        &["train/state.json", "no run identity", "without --resume"],
    );
}

#[test]
fn resume_after_a_fresh_run_killed_before_its_first_checkpoint_is_refused() {
    use std::io::BufRead;
    let f = Fixture::new(true);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "train",
            "--config",
            f.config.to_str().unwrap(),
            "--artifacts",
            f.art.to_str().unwrap(),
        ])
        .current_dir(f.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The initial evaluation is printed before the first training step; the first resumable
    // checkpoint comes at the end of epoch 1.
    let stderr_lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in stderr_lines {
        let line = line.unwrap();
        let started = line.contains("epoch 0:");
        seen.push(line);
        if started {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(
        seen.last().is_some_and(|l| l.contains("epoch 0:")),
        "{seen:?}"
    );
    assert!(
        !f.art.join("train/state.json").exists(),
        "the previous run's state outlived a fresh start"
    );
    f.stage_fails(
        &["train", "--resume"],
        &["train/state.json", "nothing to resume"],
    );
}

#[test]
fn predict_refuses_a_config_whose_model_is_not_the_checkpoints() {
    let f = Fixture::new(true);
    f.edit_config("hidden = 16", "hidden = 24");
    f.stage_fails(
        &["predict"],
        &[
            "tiny.toml: model.hidden = 24 but checkpoint",
            "train/best.json has model.hidden = 16",
            "--model-from-checkpoint",
        ],
    );
    f.stage_fails(
        &["predict", "--last"],
        &["train/last.json has model.hidden = 16"],
    );
    let o = f.run_with("predict", &["--model-from-checkpoint"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(f.art.join("predict/metrics.json").exists());
}

/// A trained fixture with a good predict run, and `rows` clean consecutive data lines of its
/// CSV (no missing cell), each split into cells, after the header's cells.
fn applied_fixture(rows: usize) -> (Fixture, Vec<Vec<String>>) {
    let f = Fixture::new(true);
    assert!(f.run("predict", None).status.success());
    let text = std::fs::read_to_string(&f.csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let start = (1..lines.len() - rows)
        .find(|&s| lines[s..s + rows].iter().all(|l| !l.contains("NA")))
        .expect("clean rows");
    let cells = std::iter::once(lines[0])
        .chain(lines[start..start + rows].iter().copied())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (f, cells)
}

fn write_rows(f: &Fixture, name: &str, rows: &[Vec<String>]) -> PathBuf {
    let path = f.dir.path().join(name);
    let text: Vec<String> = rows.iter().map(|r| r.join(",")).collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    path
}

#[test]
fn predict_input_missing_a_trained_column() {
    let (f, mut rows) = applied_fixture(40);
    for row in &mut rows {
        row.remove(7); // TEMP
    }
    let bad = write_rows(&f, "no_temp.csv", &rows);
    f.stage_fails(
        &["predict", "--input", bad.to_str().unwrap()],
        &["no_temp.csv", "missing column `TEMP`"],
    );
}

#[test]
fn predict_input_one_row_shorter_than_the_window() {
    // tiny_config's window: 12 input rows.
    let (f, rows) = applied_fixture(11);
    let bad = write_rows(&f, "short.csv", &rows);
    f.stage_fails(
        &["predict", "--input", bad.to_str().unwrap()],
        &["short.csv", "11 rows of history", "needs 12"],
    );
}

#[test]
fn predict_input_missing_value_inside_the_last_window() {
    let (f, mut rows) = applied_fixture(40);
    // Five missing hours: longer than the gaps prepare fills (3), so they stay missing.
    for row in &mut rows[33..38] {
        row[7] = "NA".into(); // TEMP
    }
    let bad = write_rows(&f, "gap.csv", &rows);
    f.stage_fails(
        &["predict", "--input", bad.to_str().unwrap()],
        &[
            "gap.csv: row 33 (",
            "column `TEMP`: missing after gap filling",
            "last window (rows 29..40)",
        ],
    );
}

#[test]
fn predict_input_refuses_a_checkpoint_of_other_data() {
    let (f, rows) = applied_fixture(40);
    let good = write_rows(&f, "recent.csv", &rows);
    // A checkpoint trained on other prepared data: it records another manifest hash.
    let meta = f.art.join("train/best.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    let sha = text
        .split("\"manifest_sha256\": \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    std::fs::write(&meta, text.replace(&sha, &"0".repeat(64))).unwrap();
    f.stage_fails(
        &["predict", "--input", good.to_str().unwrap()],
        &["train/best.json", "recent.csv", "manifest hash differs"],
    );
}

/// `--ranks` in a build without MPI says how to rebuild; a process that a launcher started as
/// one of several ranks refuses to train alone into the shared directory.
#[test]
fn ranks_without_the_mpi_feature() {
    if cfg!(feature = "mpi") {
        eprintln!("skipped: this build has MPI (tests/distributed.rs covers --ranks)");
        return;
    }
    let f = Fixture::new(false);
    f.stage_fails(&["train", "--ranks", "2"], &["--ranks 2", "--features mpi"]);
    let before = snapshot(&f.art);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--config", f.config.to_str().unwrap()])
        .args(["--artifacts", f.art.to_str().unwrap()])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .current_dir(f.dir.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "trained as one of 2 ranks without MPI");
    assert!(
        err.contains("one of 2 MPI ranks") && err.contains("--features mpi"),
        "{err}"
    );
    assert_eq!(before, snapshot(&f.art));
}
