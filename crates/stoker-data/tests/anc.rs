//! The ANC prepare end to end: synthetic data (always) and the real aircraft recording (when
//! `../shared/datasets` beside the workspace exists).

use std::path::{Path, PathBuf};

use stoker_artifact::{
    DatasetManifest, INPUT_OK, MetricScale, PreparedData, Split, TARGET_OK, TaskConfig,
};
use stoker_cli::TaskArgs;
use stoker_data::cli::{AncPathArgs, PrepareArgs, run_prepare};
use stoker_data::write_synthetic_anc;
use stoker_data::{PrepareRequest, prepare};

fn anc_config(
    dir: &Path,
    primary: Option<&Path>,
    secondary: Option<&Path>,
    extra: &str,
) -> PathBuf {
    let key = |name: &str, p: Option<&Path>| {
        p.map(|p| format!(", {name} = \"{}\"", p.display()))
            .unwrap_or_default()
    };
    let path = dir.join("anc.toml");
    std::fs::write(
        &path,
        format!(
            "[data]\noutput_len = 256\nsource = {{ kind = \"anc\"{}{}{extra} }}\n[model]\nkind = \"multiband-anc\"\n",
            key("primary_path", primary),
            key("secondary_path", secondary),
        ),
    )
    .unwrap();
    path
}

fn rms(values: impl Iterator<Item = f32>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + f64::from(v).powi(2), n + 1));
    (sum / n as f64).sqrt()
}

/// The store's column `col` over `rows`.
fn column(data: &PreparedData, col: usize, rows: std::ops::Range<usize>) -> Vec<f32> {
    rows.map(|r| data.store.value(r, col)).collect()
}

#[test]
fn synthetic_recording_prepares_and_normalises() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, primary, secondary) =
        write_synthetic_anc(&dir.path().join("syn"), 2.0, 16_000, 3).unwrap();
    let config = anc_config(dir.path(), Some(&primary), Some(&secondary), "");
    let out = dir.path().join("data");
    let manifest = prepare(&PrepareRequest {
        config: TaskConfig::load(&config).unwrap(),
        input: wav.clone(),
        out_dir: out.clone(),
    })
    .unwrap();
    assert_eq!(manifest.rows, 32_000);
    assert_eq!(manifest.source_kind, "anc");
    assert_eq!(
        (
            manifest.splits.train.clone(),
            manifest.splits.val.clone(),
            manifest.splits.test.clone()
        ),
        (0..19_200, 19_200..22_400, 22_400..32_000)
    );
    assert_eq!(manifest.targets, vec![1]);
    assert_eq!(manifest.metric_scale, MetricScale::Normalised);
    assert_eq!(manifest.target_unit, "normalised");
    assert_eq!(manifest.time_step_seconds, 0);
    let names: Vec<&str> = manifest.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["x", "d"]);
    let anc = manifest.anc.as_ref().unwrap();
    assert_eq!((anc.sample_rate, anc.source_rate), (16_000, 16_000));
    assert_eq!((anc.primary_taps, anc.secondary_path.len()), (128, 32));
    assert_eq!(manifest.features[0].std, anc.reference_rms);
    assert_eq!(manifest.features[1].std, anc.disturbance_rms);
    assert!(manifest.features.iter().all(|f| f.mean == 0.0));
    let sources: Vec<&str> = manifest.sources.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        sources,
        [
            wav.display().to_string(),
            primary.display().to_string(),
            secondary.display().to_string()
        ]
    );
    assert!(
        manifest
            .sources
            .iter()
            .all(|s| s.sha256.len() == 64 && s.bytes > 0)
    );
    // The window is the config's ANC window on this secondary path.
    let config = TaskConfig::load(&config).unwrap();
    assert_eq!(manifest.window, config.window_for(&manifest));
    assert_eq!(manifest.window.output_len, 256);
    assert_eq!(manifest.window.stride, 256);

    let data = PreparedData::open(&out).unwrap();
    assert_eq!(DatasetManifest::load(&out).unwrap(), manifest);
    for (split, n) in &manifest.quality.windows {
        assert!(*n > 0, "{split}: no windows");
    }
    let counted: Vec<usize> = [Split::Train, Split::Val, Split::Test]
        .map(|s| data.windows(s, manifest.window).len())
        .to_vec();
    assert_eq!(
        counted,
        manifest
            .quality
            .windows
            .iter()
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
    );
    assert!(
        data.store
            .flags()
            .iter()
            .all(|&f| f == INPUT_OK | TARGET_OK)
    );
    assert_eq!(data.store.timestamps()[..3], [0, 1, 2]);
    assert_eq!(*data.store.timestamps().last().unwrap(), 31_999);
    let train = manifest.splits.train.clone();
    for col in 0..2 {
        let r = rms(column(&data, col, train.clone()).into_iter());
        assert!((r - 1.0).abs() < 1e-4, "column {col}: train RMS {r}");
    }
    // d = primary * x, checked on the stored (normalised) values at one sample.
    let taps = stoker_data::read_impulse_response(&primary, 16_000).unwrap();
    let n = 20_000;
    let x = |i: usize| f64::from(data.store.value(i, 0)) * anc.reference_rms;
    let d: f64 = (0..taps.len()).map(|k| taps[k] * x(n - k)).sum();
    let stored = f64::from(data.store.value(n, 1)) * anc.disturbance_rms;
    assert!((d - stored).abs() < 1e-5, "{d} vs {stored}");
}

#[test]
fn path_flags_override_the_config_and_missing_paths_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, primary, secondary) =
        write_synthetic_anc(&dir.path().join("syn"), 1.0, 16_000, 4).unwrap();
    let config = anc_config(
        dir.path(),
        Some(&dir.path().join("nope.csv")),
        None,
        ", train_fraction = 0.6, val_fraction = 0.2",
    );
    let args = |p: Option<&Path>, s: Option<&Path>| PrepareArgs {
        task: TaskArgs::new(&config, Some(dir.path().join("art"))),
        input: Some(wav.clone()),
        anc: AncPathArgs {
            primary_path: p.map(Path::to_path_buf),
            secondary_path: s.map(Path::to_path_buf),
        },
    };
    let msg = format!(
        "{:#}",
        run_prepare(&args(None, Some(&secondary))).unwrap_err()
    );
    assert!(msg.contains("nope.csv: no such file"), "{msg}");
    let msg = format!(
        "{:#}",
        run_prepare(&args(Some(&primary), None)).unwrap_err()
    );
    assert!(
        msg.contains(
            "anc.toml: no secondary path: pass --secondary-path or set `data.source.secondary_path`"
        ),
        "{msg}"
    );
    assert!(
        !dir.path().join("art").exists(),
        "nothing may be written on error"
    );
    let manifest = run_prepare(&args(Some(&primary), Some(&secondary))).unwrap();
    assert_eq!(manifest.splits.train, 0..6400);
    assert_eq!(manifest.splits.val, 6400..9600);
    assert_eq!(manifest.sources[1].path, primary.display().to_string());
}

#[test]
fn real_aircraft_recording() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/anc");
    if !shared.exists() {
        eprintln!(
            "skipped: {} is absent (real-data tests need ../shared beside the workspace)",
            shared.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = anc_config(
        dir.path(),
        Some(&shared.join("primary_path.csv")),
        Some(&shared.join("secondary_path.csv")),
        "",
    );
    let out = dir.path().join("data");
    let manifest = prepare(&PrepareRequest {
        config: TaskConfig::load(&config).unwrap(),
        input: shared.join("aircraft.wav"),
        out_dir: out.clone(),
    })
    .unwrap();
    assert_eq!(manifest.rows, 160_000);
    assert_eq!(manifest.splits.train, 0..96_000);
    assert_eq!(manifest.splits.val, 96_000..112_000);
    assert_eq!(manifest.splits.test, 112_000..160_000);
    let anc = manifest.anc.as_ref().unwrap();
    assert_eq!((anc.sample_rate, anc.source_rate), (16_000, 48_000));
    assert_eq!((anc.primary_taps, anc.secondary_path.len()), (512, 256));
    let data = PreparedData::open(&out).unwrap();
    let train_x = rms(column(&data, 0, manifest.splits.train.clone()).into_iter());
    assert!((train_x - 1.0).abs() < 1e-4, "train RMS of x: {train_x}");
    let train_d = rms(column(&data, 1, manifest.splits.train.clone()).into_iter());
    assert!((train_d - 1.0).abs() < 1e-4, "train RMS of d: {train_d}");
    assert!(manifest.quality.windows.iter().all(|(_, n)| *n > 0));
    eprintln!(
        "aircraft.wav: x RMS {:.4}, d RMS {:.4}, windows {:?}",
        anc.reference_rms, anc.disturbance_rms, manifest.quality.windows
    );
}
