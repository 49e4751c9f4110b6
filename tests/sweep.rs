//! `cargo xtask sweep`: ranks a grid by validation loss, and its best config retrained with the
//! same seed reproduces the reported validation loss.

mod common;

use common::*;
use stoker_artifact::RunSummary;

#[test]
fn sweep_best_config_reproduces_its_validation_loss() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synthetic_csv(dir.path(), 3);
    let config = tiny_config(dir.path(), &csv, 2011, 2012);
    let art = dir.path().join("art");
    let (config_s, art_s) = (config.to_str().unwrap(), art.to_str().unwrap());
    let o = xtask(
        &[
            "sweep",
            "--config",
            config_s,
            "--artifacts",
            art_s,
            "--grid",
            "hidden=8,16",
            "--grid",
            "seq_len=12,24",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("hidden=8 seq_len=24") && out.contains("rank"),
        "{out}"
    );
    let sweep = art.join("sweep");
    assert!(sweep.join("sweep.parquet").exists());
    let best = std::fs::read(sweep.join("best.toml")).unwrap();
    let mut losses = Vec::new();
    let mut best_loss = None;
    for entry in std::fs::read_dir(&sweep).unwrap() {
        let run = entry.unwrap().path();
        if !run.is_dir() {
            continue;
        }
        let loss = RunSummary::load(&run.join("train/summary.json"))
            .unwrap()
            .best_val_loss;
        losses.push(loss);
        if std::fs::read(run.join("config.toml")).unwrap() == best {
            best_loss = Some(loss);
        }
    }
    assert_eq!(losses.len(), 4);
    let best_loss = best_loss.expect("best.toml is one of the runs");
    assert!(
        losses.iter().all(|&l| best_loss <= l),
        "best is the lowest: {losses:?}"
    );

    // Retrain the best config on its own: same seed, same data → same validation loss.
    let best_path = sweep.join("best.toml");
    let again = dir.path().join("again");
    run_stages(
        dir.path(),
        best_path.to_str().unwrap(),
        again.to_str().unwrap(),
        &["prepare", "train"],
        &[],
    );
    let retrained = RunSummary::load(&again.join("train/summary.json"))
        .unwrap()
        .best_val_loss;
    assert!(
        (retrained - best_loss).abs() <= 1e-6 * best_loss,
        "sweep {best_loss} vs retrained {retrained}"
    );
}

/// `run --seeds 3`: three trainings on one prepared data set, each scored on the test split;
/// the report's mean and spread are those of the seeds' own metrics files.
#[test]
fn seeds_report_the_spread_of_the_test_metric_over_their_runs() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synthetic_csv(dir.path(), 3);
    let config = tiny_config(dir.path(), &csv, 2011, 2012);
    let art = dir.path().join("art");
    let o = xtask(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--artifacts",
            art.to_str().unwrap(),
            "--seeds",
            "3",
            "--seed",
            "40",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("over 3 seed(s)"), "{}", stdout(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(art.join("seeds/seeds.json")).unwrap()).unwrap();
    assert_eq!(report["metric"], "RMSE");
    let mut rmse = Vec::new();
    for (i, seed) in report["seeds"].as_array().unwrap().iter().enumerate() {
        assert_eq!(seed["seed"], 40 + i as u64);
        let metrics = stoker_artifact::ForecastMetrics::load(
            &art.join(format!("seeds/seed-{}/predict/metrics.json", 40 + i)),
        )
        .unwrap();
        assert_eq!(seed["model"].as_f64(), Some(metrics.rmse));
        rmse.push(metrics.rmse);
    }
    assert_eq!(rmse.len(), 3);
    // Other seeds, other weights: the runs are not copies of one another.
    assert!(rmse[0] != rmse[1] || rmse[1] != rmse[2], "{rmse:?}");
    let mean = rmse.iter().sum::<f64>() / 3.0;
    let std = (rmse.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    let model = &report["model"];
    assert!((model["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!((model["std"].as_f64().unwrap() - std).abs() < 1e-12);
    // One prepared data set, no per-seed copy.
    assert!(art.join("data/manifest.json").exists());
    assert!(!art.join("seeds/seed-40/data").exists());
}
