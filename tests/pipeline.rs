//! prepare → train → predict through `cargo xtask`, on generated data with a tiny config.

mod common;

use common::*;
use stoker_artifact::{ArtifactLayout, DatasetManifest, ForecastMetrics, RunSummary};

#[test]
fn prepare_train_predict_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synthetic_csv(dir.path(), 3);
    let config = tiny_config(dir.path(), &csv, 2011, 2012);
    let art = dir.path().join("art");
    let (config, art_s) = (config.to_str().unwrap(), art.to_str().unwrap());

    let o = xtask(
        &["prepare", "--config", config, "--artifacts", art_s],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let layout = ArtifactLayout::new(&art);
    let manifest = DatasetManifest::load(&layout.data_dir()).unwrap();
    assert_eq!(
        manifest.rows,
        3 * 8760 + 24,
        "2010–2012 hourly, 2012 a leap year"
    );
    assert_eq!(manifest.features.len(), 11);
    assert!(
        manifest
            .shards
            .iter()
            .all(|s| layout.data_dir().join(&s.file).exists())
    );

    let o = xtask(
        &[
            "train",
            "--config",
            config,
            "--artifacts",
            art_s,
            "--epochs",
            "2",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = RunSummary::load(&layout.train_dir().join("summary.json")).unwrap();
    assert_eq!(summary.epochs, 2);
    assert!(summary.best_val_loss.is_finite() && summary.samples_per_s > 0.0);
    let log = std::fs::read_to_string(layout.train_dir().join("metrics.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2);
    for name in ["best.json", "best.bpk", "last.json", "last.bpk"] {
        assert!(layout.train_dir().join(name).exists(), "{name}");
    }

    let o = xtask(
        &["predict", "--config", config, "--artifacts", art_s],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let last_line = out.lines().last().unwrap();
    let metrics_path = layout.predict_dir().join("metrics.json");
    assert_eq!(last_line, metrics_path.to_str().unwrap());
    let metrics = ForecastMetrics::load(&metrics_path).unwrap();
    assert_eq!(metrics.windows, manifest.quality.windows[2].1);
    assert!(metrics.rmse.is_finite() && metrics.persistence_rmse > 0.0);
    // Even one epoch of the residual model must not be far worse than persistence.
    assert!(metrics.rmse < 1.5 * metrics.persistence_rmse, "{metrics:?}");
    assert!(layout.predict_dir().join("predictions.parquet").exists());
}

#[test]
fn predict_refuses_weights_trained_on_other_data() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synthetic_csv(dir.path(), 3);
    let config = tiny_config(dir.path(), &csv, 2011, 2012);
    let art = dir.path().join("art");
    let (config_s, art_s) = (config.to_str().unwrap(), art.to_str().unwrap());
    run_stages(dir.path(), config_s, art_s, &["prepare", "train"], &[]);
    // Re-prepare with another split: the manifest changes, the weights do not.
    let other = tiny_config(dir.path(), &csv, 2011, 2012);
    let text = std::fs::read_to_string(&other)
        .unwrap()
        .replace("input_len = 12", "input_len = 12\nshard_rows = 5000");
    std::fs::write(&other, text).unwrap();
    let o = xtask(
        &[
            "prepare",
            "--config",
            other.to_str().unwrap(),
            "--artifacts",
            art_s,
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = xtask(
        &["predict", "--config", config_s, "--artifacts", art_s],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("manifest hash differs"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_run_never_evaluated_still_reports_its_final_training_loss() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synthetic_csv(dir.path(), 3);
    let config = tiny_config(dir.path(), &csv, 2011, 2012);
    // One epoch, evaluated every second one: no evaluation after the initial one.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("epochs = 1", "epochs = 1\neval_interval = \"2 epochs\"");
    std::fs::write(&config, text).unwrap();
    let art = dir.path().join("art");
    let (config, art_s) = (config.to_str().unwrap(), art.to_str().unwrap());
    run_stages(dir.path(), config, art_s, &["prepare", "train"], &[]);
    let train = ArtifactLayout::new(&art).train_dir();
    assert_eq!(
        std::fs::read_to_string(train.join("metrics.jsonl")).unwrap_or_default(),
        "",
        "an evaluation ran"
    );
    let text = std::fs::read_to_string(train.join("summary.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(json["final_train_loss"].is_f64(), "{text}");
    let summary = RunSummary::load(&train.join("summary.json")).unwrap();
    assert!(summary.steps > 0);
    assert!(
        summary.final_train_loss.is_finite() && summary.final_train_loss > 0.0,
        "{summary:?}"
    );
}

/// The default job's point: on its synthetic series, whose PM2.5 answers the wind and rain
/// recorded 3 hours earlier, the model must beat the naive forecast clearly, not by a whisker.
#[test]
fn the_demo_model_clearly_beats_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo.toml");
    let o = xtask(&["demo", "--config", config.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("% below persistence"), "{}", stdout(&o));
    let metrics =
        ForecastMetrics::load(&dir.path().join("artifacts/demo/predict/metrics.json")).unwrap();
    assert!(
        metrics.rmse < 0.9 * metrics.persistence_rmse,
        "demo RMSE {:.2} vs persistence {:.2}",
        metrics.rmse,
        metrics.persistence_rmse
    );
}
