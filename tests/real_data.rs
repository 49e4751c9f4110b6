//! Checks on the real datasets in ../shared; skipped with a message when they are absent.

mod common;

use common::*;
use stoker_artifact::{DatasetManifest, ForecastMetrics};

/// The PM2.5 protocol: 43 824 hourly rows, chronological split 2010–2012 / 2013 / 2014, and
/// persistence on the 2014 test windows close to the published 22.06 µg/m³.
#[test]
fn pm25_protocol_on_the_real_file() {
    let Some(csv) = shared_dataset("PRSA_data_2010.1.1-2014.12.31.csv") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), &csv, 2013, 2014);
    let art = dir.path().join("art");
    let (config, art_s) = (config.to_str().unwrap(), art.to_str().unwrap());
    for stage in ["prepare", "train", "predict"] {
        let o = xtask(
            &[stage, "--config", config, "--artifacts", art_s],
            dir.path(),
        );
        assert!(o.status.success(), "{stage}: {}", stderr(&o));
    }
    let manifest = DatasetManifest::load(&art.join("data")).unwrap();
    assert_eq!(manifest.rows, 43_824);
    assert_eq!(
        (manifest.splits.val.start, manifest.splits.test.start),
        (3 * 8760 + 24, 4 * 8760 + 24)
    );
    let missing_pm = manifest
        .quality
        .missing_cells
        .iter()
        .find(|(c, _)| c == "pm2.5")
        .unwrap()
        .1;
    assert_eq!(missing_pm, 2067);
    let metrics = ForecastMetrics::load(&art.join("predict/metrics.json")).unwrap();
    assert!(
        (metrics.persistence_rmse - 22.06).abs() < 0.1,
        "persistence {}",
        metrics.persistence_rmse
    );
}
