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
            } else {
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
        let mut args = vec![
            stage,
            "--config",
            self.config.to_str().unwrap(),
            "--artifacts",
            self.art.to_str().unwrap(),
        ];
        if let Some(input) = input {
            args.extend(["--input", input.to_str().unwrap()]);
        }
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
