//! ANC end to end on synthetic data (a noise WAV and two impulse responses written by
//! `cargo xtask synth --anc`): prepare → train → predict, and the predictor's files.

mod common;

use common::*;
use stoker_artifact::AncMetrics;

#[test]
fn least_squares_start_reaches_the_offline_fir_and_predict_writes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    // The linear FIR starts at the least-squares controller; best-on-validation keeps at least
    // that, so the network's NR must land near the offline FIR's — unless x, d, S or y are
    // misaligned somewhere between prepare, the loss and predict.
    let config = synthetic_anc_task(
        dir.path(),
        "filter_taps = 33\ntaps = 32\nhidden = 16\nlinear_taps = 128\nleast_squares_init = true\n\
         [train]\nepochs = 2\nbatch_size = 4\n[predict]\nfxnlms_taps = 128",
    );
    let config = config.to_str().unwrap();
    let art = dir.path().join("art");
    run_stages(
        dir.path(),
        config,
        art.to_str().unwrap(),
        &["prepare", "train", "predict"],
        &[],
    );
    let m = AncMetrics::load(&art.join("predict/metrics.json")).unwrap();
    assert!(
        m.wiener_nr_db > 10.0,
        "offline FIR NR {:.2} dB",
        m.wiener_nr_db
    );
    assert!(
        m.nr_db > m.wiener_nr_db - 1.5,
        "network {:.2} dB vs offline FIR {:.2} dB",
        m.nr_db,
        m.wiener_nr_db
    );
    assert_eq!(m.band_nr_db.len(), 3);
    for file in ["residual.wav", "anti_noise.wav"] {
        let wav = hound::WavReader::open(art.join("predict").join(file)).unwrap();
        assert_eq!(wav.spec().sample_rate, 16_000);
        assert_eq!(wav.len() as usize, m.predicted_samples, "{file}");
    }
    assert!(art.join("predict/spectrum.png").exists());

    // One forward pass per sample computes the same control signal, only slower.
    let o = xtask(
        &[
            "predict",
            "--config",
            config,
            "--artifacts",
            art.to_str().unwrap(),
            "--per-sample",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let per_sample = AncMetrics::load(&art.join("predict/metrics.json")).unwrap();
    assert_eq!(per_sample.mode, "per-sample");
    assert!(
        (per_sample.nr_db - m.nr_db).abs() < 0.05,
        "{} vs {}",
        per_sample.nr_db,
        m.nr_db
    );
}
