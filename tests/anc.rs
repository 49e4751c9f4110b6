//! ANC end to end on synthetic data (a noise WAV and two impulse responses written by
//! `cargo xtask synth --anc`): prepare → train → predict, and the predictor's files.

mod common;

use common::*;
use stoker_artifact::AncMetrics;

fn anc_config(
    dir: &std::path::Path,
    paths: &(String, String, String),
    extra_model: &str,
) -> String {
    let path = dir.join("anc.toml");
    std::fs::write(
        &path,
        format!(
            r#"
seed = 3
[data]
input = "{}"
output_len = 256
source = {{ kind = "anc", primary_path = "{}", secondary_path = "{}" }}
[model]
kind = "multiband-anc"
filter_taps = 33
taps = 32
hidden = 16
{extra_model}
[train]
epochs = 2
batch_size = 4
lr = 1e-3
[predict]
batch_size = 2048
fxnlms_taps = 128
"#,
            paths.0, paths.1, paths.2
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn synth(dir: &std::path::Path) -> (String, String, String) {
    let out = dir.join("anc-data");
    let o = xtask(&["synth", "--anc", out.to_str().unwrap()], dir);
    assert!(o.status.success(), "synth --anc: {}", stderr(&o));
    let find = |ext: &str, needle: &str| {
        std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.extension().is_some_and(|e| e == ext)
                    && p.file_name().unwrap().to_string_lossy().contains(needle)
            })
            .unwrap_or_else(|| panic!("no *{needle}*.{ext} in {}", out.display()))
            .to_str()
            .unwrap()
            .to_string()
    };
    (
        find("wav", ""),
        find("csv", "primary"),
        find("csv", "secondary"),
    )
}

#[test]
fn least_squares_start_reaches_the_offline_fir_and_predict_writes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let paths = synth(dir.path());
    // The linear FIR starts at the least-squares controller; best-on-validation keeps at least
    // that, so the network's NR must land near the offline FIR's — unless x, d, S or y are
    // misaligned somewhere between prepare, the loss and predict.
    let config = anc_config(
        dir.path(),
        &paths,
        "linear_taps = 128\nleast_squares_init = true",
    );
    let art = dir.path().join("art");
    run_stages(
        dir.path(),
        &config,
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
            &config,
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
