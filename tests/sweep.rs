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
