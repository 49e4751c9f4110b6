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
    // The run summary names the linear start and its validation loss, the bar the band
    // networks' training is measured against.
    let summary: stoker_artifact::RunSummary =
        serde_json::from_str(&std::fs::read_to_string(art.join("train/summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        summary.linear_start.as_deref(),
        Some("the least-squares linear FIR")
    );
    let initial = summary
        .initial_val_loss
        .expect("the start's validation loss");
    assert!(summary.best_val_loss <= initial && initial.is_finite());
    // The network's own FIR alone started at the least-squares fit on the train part: it must
    // reach about the offline FIR of the same taps (a reversed or shifted FIR would not).
    let linear_only = m
        .linear_only_nr_db
        .expect("a network with a linear FIR reports it alone");
    assert!(
        (linear_only - m.wiener_nr_db).abs() < 1.5,
        "its linear FIR alone {linear_only:.2} dB vs offline FIR {:.2} dB",
        m.wiener_nr_db
    );
    for file in ["residual.wav", "anti_noise.wav"] {
        let wav = hound::WavReader::open(art.join("predict").join(file)).unwrap();
        assert_eq!(wav.spec().sample_rate, 16_000);
        assert_eq!(wav.len() as usize, m.predicted_samples, "{file}");
    }
    assert!(art.join("predict/spectrum.png").exists());
    let batched_residual = wav_samples(&art.join("predict/residual.wav"));

    // Another mode of predict on the same checkpoint: its metrics, the same NR as batched.
    // (The synthetic plant is controllable to ~114 dB, where f32 rounding alone moves the NR
    // by hundredths of a dB.)
    let predict_again = |flags: &[&str], mode: &str| {
        let mut args = vec![
            "predict",
            "--config",
            config,
            "--artifacts",
            art.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        let o = xtask(&args, dir.path());
        assert!(o.status.success(), "{}", stderr(&o));
        let again = AncMetrics::load(&art.join("predict/metrics.json")).unwrap();
        assert_eq!(again.mode, mode);
        assert!(
            (again.nr_db - m.nr_db).abs() < 0.05,
            "{mode}: {} dB vs batched {} dB",
            again.nr_db,
            m.nr_db
        );
        again
    };
    // One forward pass per sample computes the same control signal, only slower.
    predict_again(&["--per-sample"], "per-sample");
    // The streaming controller, fed odd-sized blocks, computes the same control signal.
    let streamed = predict_again(&["--stream", "--stream-block", "7"], "stream");
    let timing = streamed
        .stream
        .expect("a streaming run reports its deadlines");
    assert_eq!(timing.block, 7);
    assert_eq!(timing.blocks, m.predicted_samples.div_ceil(7));
    let residual = wav_samples(&art.join("predict/residual.wav"));
    assert_eq!(residual.len(), batched_residual.len());
    let scale = batched_residual.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (n, (a, b)) in residual.iter().zip(&batched_residual).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * scale.max(1.0),
            "residual({n}): {a} vs {b}"
        );
    }

    // `--input` with the training recording itself: the same signals through apply, so the
    // same controller output over the whole recording.
    let setup = dir.path().join("setup");
    let predict_input = |wav: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "predict",
            "--config",
            config,
            "--artifacts",
            art.to_str().unwrap(),
            "--input",
            wav.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        xtask(&args, dir.path())
    };
    let o = predict_input(&setup.join("noise.wav"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let own = AncMetrics::load(&art.join("predict/metrics.json")).unwrap();
    assert_eq!(
        (own.split.as_str(), own.samples),
        ("input", m.predicted_samples)
    );
    let residual = wav_samples(&art.join("predict/residual.wav"));
    for (n, (a, b)) in residual.iter().zip(&batched_residual).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * scale.max(1.0),
            "residual({n}) on the applied recording: {a} vs {b}"
        );
    }

    // Another recording at 8 kHz: resampled to the trained 16 kHz, or refused when told not to.
    let other = dir.path().join("other");
    let o = xtask(
        &[
            "synth",
            "--anc",
            other.to_str().unwrap(),
            "--seconds",
            "2",
            "--seed",
            "9",
            "--rate",
            "8000",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let other_wav = other.join("noise.wav");
    let before = std::fs::read(art.join("predict/metrics.json")).unwrap();
    let o = predict_input(&other_wav, &["--no-resample"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("other/noise.wav")
            && err.contains("8000 Hz")
            && err.trim().lines().count() == 1,
        "{err}"
    );
    assert_eq!(
        std::fs::read(art.join("predict/metrics.json")).unwrap(),
        before
    );
    let o = predict_input(&other_wav, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let new = AncMetrics::load(&art.join("predict/metrics.json")).unwrap();
    assert_eq!((new.split.as_str(), new.sample_rate), ("input", 16_000));
    assert!(
        (new.samples as i64 - 32_000).abs() <= 2,
        "{} samples",
        new.samples
    );
    assert!(new.nr_db.is_finite() && new.fxnlms_nr_db.is_finite() && new.wiener_nr_db.is_finite());
    let anti = hound::WavReader::open(art.join("predict/anti_noise.wav")).unwrap();
    assert_eq!(
        (anti.spec().sample_rate, anti.len() as usize),
        (16_000, new.samples)
    );
}

fn wav_samples(path: &std::path::Path) -> Vec<f32> {
    hound::WavReader::open(path)
        .unwrap()
        .samples::<f32>()
        .map(Result::unwrap)
        .collect()
}

/// The streaming controller against the batched one on the real aircraft recording, prepared
/// as the shipped config does, with the reference-shaped network (random weights: equality
/// does not depend on them), one sample at a time and in blocks of 64.
#[test]
fn streaming_equals_batched_on_the_real_aircraft_recording() {
    use burn::prelude::Device;
    use stoker_artifact::{ModelSpec, PreparedData, TaskConfig};
    use stoker_infer::{AncMode, AncOptions, StreamWeights, control_signal};
    use stoker_zoo::{InputShape, Model, Network};

    if shared_dataset("anc/aircraft.wav").is_none() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = root.join("configs/anc-multiband.toml");
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("art");
    let o = xtask(
        &[
            "prepare",
            "--config",
            config.to_str().unwrap(),
            "--artifacts",
            art.to_str().unwrap(),
        ],
        &root,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let data = PreparedData::open(&art.join("data")).unwrap();
    let spec = TaskConfig::load(&config).unwrap().model;
    assert!(matches!(spec, ModelSpec::MultibandAnc(_)));
    let shape = InputShape::of(&data.manifest, data.manifest.window);
    let model = Model::new(&spec, &shape, &Device::flex()).unwrap();
    let Network::MultibandAnc(net) = &model.net else {
        panic!("configs/anc-multiband.toml must build a multiband-anc model");
    };
    let x = data.store.column(0, 0..data.store.rows());
    let opts = |mode| AncOptions {
        batch_size: 8192,
        mode,
        baseline_taps: 512,
        fxnlms_step: 0.03,
    };
    let batched = control_signal(net, &x, opts(AncMode::Batched)).unwrap();
    for block in [1, 64] {
        let weights = StreamWeights::F32;
        let streamed = control_signal(net, &x, opts(AncMode::Stream { block, weights })).unwrap();
        assert_eq!(streamed.len(), batched.len());
        let worst = streamed
            .iter()
            .zip(&batched)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "aircraft, {} samples, blocks of {block}: max |stream − batched| = {worst:.2e}",
            x.len()
        );
        assert!(worst < 1e-5, "blocks of {block}: max difference {worst}");
    }
}
