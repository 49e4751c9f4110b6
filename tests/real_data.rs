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
    let (_, art) = tiny_task_through_predict(dir.path(), &csv, 2013, 2014);
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

/// The ETTh1 protocol: 8 640 / 2 880 / 2 880 rows, 2 785 test windows of 96 → 96, and
/// repeat-last-value MSE on them reproducing the literature's 1.295.
#[test]
fn etth1_protocol_on_the_real_file() {
    let Some(csv) = shared_dataset("ETTh1.csv") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ett.toml");
    std::fs::write(
        &config,
        "[data]\ninput_len = 96\noutput_len = 96\nsource = { kind = \"ett\" }\n\
         [model]\nkind = \"lstm-attention\"\nhidden = 4\nlayers = 1\nattention = 4\nlinear_skip = true\n\
         [train]\nepochs = 1\nbatch_size = 256\n",
    )
    .unwrap();
    let art = dir.path().join("art");
    let (config, art_s) = (config.to_str().unwrap(), art.to_str().unwrap());
    let input = ["--input", csv.to_str().unwrap()];
    run_stages(dir.path(), config, art_s, &["prepare"], &input);
    run_stages(dir.path(), config, art_s, &["train", "predict"], &[]);
    let manifest = DatasetManifest::load(&art.join("data")).unwrap();
    assert_eq!(manifest.rows, 17_420);
    assert_eq!(
        (
            manifest.splits.val.start,
            manifest.splits.test.start,
            manifest.splits.test.end
        ),
        (8_640, 11_520, 14_400)
    );
    let metrics = ForecastMetrics::load(&art.join("predict/metrics.json")).unwrap();
    assert_eq!(metrics.windows, 2_785);
    assert!(
        (metrics.repeat_mse - 1.295).abs() < 0.01,
        "repeat MSE {}",
        metrics.repeat_mse
    );
}

/// The ANC protocol on both real recordings: 16 kHz, d = primary * x, NR over the last 30 %.
/// The offline least-squares FIR of 512 taps must reproduce the reference figures (44.1 dB on
/// aircraft, 53.7 dB on traffic; our resampler differs slightly), and a network that starts at
/// the least-squares controller must not fall below FxNLMS after a short training.
#[test]
fn anc_protocol_on_the_real_recordings() {
    let (Some(aircraft), Some(traffic), Some(primary), Some(secondary)) = (
        shared_dataset("anc/aircraft.wav"),
        shared_dataset("anc/traffic.wav"),
        shared_dataset("anc/primary_path.csv"),
        shared_dataset("anc/secondary_path.csv"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (wav, reference_db, rows) in [(&aircraft, 44.1, 160_000), (&traffic, 53.7, 211_107)] {
        let config = anc_config(
            dir.path(),
            Some(wav),
            (&primary, &secondary),
            1024,
            "",
            "hidden = 32\nlinear_taps = 512\nleast_squares_init = true\n\
             [train]\nepochs = 1\nbatch_size = 4\nlr = 1e-4\n[predict]\nfxnlms_step = 0.03",
        );
        let art = dir.path().join(wav.file_stem().unwrap());
        run_stages(
            dir.path(),
            config.to_str().unwrap(),
            art.to_str().unwrap(),
            &["prepare", "train", "predict"],
            &[],
        );
        let manifest = DatasetManifest::load(&art.join("data")).unwrap();
        assert_eq!(manifest.rows, rows);
        assert_eq!(
            manifest.splits.test.start,
            (rows as f64 * 0.7).round() as usize
        );
        let m = stoker_artifact::AncMetrics::load(&art.join("predict/metrics.json")).unwrap();
        assert!(
            (m.wiener_nr_db - reference_db).abs() < 1.0,
            "{}: least-squares FIR {:.2} dB, reference {reference_db}",
            wav.display(),
            m.wiener_nr_db
        );
        assert!(
            m.nr_db >= m.fxnlms_nr_db,
            "{}: network {:.2} dB < FxNLMS {:.2} dB",
            wav.display(),
            m.nr_db,
            m.fxnlms_nr_db
        );
    }
}
