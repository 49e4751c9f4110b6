//! The ETT path on a small ETT-format file with other column names (and another column count):
//! nothing in an ETT config depends on the columns of the file.

mod common;

use common::*;
use stoker_artifact::{DatasetManifest, ForecastMetrics};

#[test]
fn ett_format_with_other_columns_runs_the_whole_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let csv = ett_csv(dir.path(), 700);
    let config = small_ett_config(dir.path(), 2);
    let art = dir.path().join("art");
    let (config, art_s, csv_s) = (
        config.to_str().unwrap(),
        art.to_str().unwrap(),
        csv.to_str().unwrap(),
    );
    run_stages(dir.path(), config, art_s, &["prepare"], &["--input", csv_s]);
    run_stages(dir.path(), config, art_s, &["train", "predict"], &[]);
    let manifest = DatasetManifest::load(&art.join("data")).unwrap();
    assert_eq!(manifest.targets, vec![0, 1, 2, 3, 4]);
    assert_eq!(manifest.features[4].name, "oil");
    // Test windows: targets inside rows 550..700, stride 1.
    assert_eq!(manifest.quality.windows[2].1, 150 - 12 + 1);
    let metrics = ForecastMetrics::load(&art.join("predict/metrics.json")).unwrap();
    assert_eq!(metrics.unit, "normalised");
    assert!(metrics.mse.is_finite() && metrics.repeat_mse > 0.0);
    assert_eq!(metrics.repeat_mse, metrics.persistence_mse);
    // A smooth periodic series: even a small trained model beats repeating the last value.
    assert!(metrics.mse < metrics.repeat_mse, "{metrics:?}");
    // The skip alone is scored on the same windows: a real forecast, and not the whole model's
    // (its recurrent head starts random here, no ridge start).
    let linear = metrics
        .linear_only_mse
        .expect("a model with a linear skip reports it alone");
    assert!(linear.is_finite() && linear != metrics.mse, "{metrics:?}");
    assert_eq!(metrics.linear_only_rmse, Some(linear.sqrt()));
    let profile: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(art.join("predict/attention_profile.json")).unwrap(),
    )
    .unwrap();
    let weights: Vec<f64> = profile["mean_weight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(weights.len(), 24);
    assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    for file in [
        "attention.parquet",
        "attention_profile.png",
        "predictions.parquet",
    ] {
        assert!(art.join("predict").join(file).exists(), "{file}");
    }
}
