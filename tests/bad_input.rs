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
