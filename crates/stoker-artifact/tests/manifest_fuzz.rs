//! Damaged and crafted `manifest.json` files: `PreparedData::open` returns a one-line error
//! naming a file, or opens data that every split's windows read from without a panic.

mod support;

use std::fs;
use std::path::Path;

use serde_json::Value;
use stoker_artifact::manifest::{QualityReport, ShardRef, SourceFile};
use stoker_artifact::{
    AncSignals, DatasetManifest, Feature, FeatureKind, INPUT_OK, MetricScale, ModelSpec,
    MultibandAncSpec, PreparedData, Split, Splits, TARGET_OK, TaskConfig, WindowSpec,
    WindowStoreWriter,
};
use support::{Rng, mutate_json, outcome};

const ROWS: usize = 60;

/// A valid prepared directory: a 3-column store of `ROWS` rows and its manifest, a forecast
/// one or (with `anc`) an ANC one.
fn prepared(dir: &Path, anc: bool) -> Value {
    let mut w = WindowStoreWriter::create(&dir.join("windows.bin"), 3).unwrap();
    for i in 0..ROWS {
        let v = i as f32 * 0.1;
        let flags = if i % 7 == 6 {
            INPUT_OK
        } else {
            INPUT_OK | TARGET_OK
        };
        w.push_row(&[v, v.sin(), 1.0 - v], i as i64 * 3600, flags)
            .unwrap();
    }
    w.finish().unwrap();
    let feature = |name: &str, kind| Feature {
        name: name.into(),
        kind,
        mean: 1.5,
        std: 0.25,
    };
    let manifest = DatasetManifest {
        format_version: stoker_artifact::manifest::MANIFEST_VERSION,
        source_kind: if anc { "anc" } else { "pm25" }.into(),
        sources: vec![SourceFile {
            path: "raw.csv".into(),
            sha256: "00".repeat(32),
            bytes: 1234,
        }],
        features: vec![
            feature("pm2.5", FeatureKind::Numeric),
            feature(
                "cbwd_NE",
                FeatureKind::OneHot {
                    column: "cbwd".into(),
                    category: "NE".into(),
                },
            ),
            feature("hour_sin", FeatureKind::Calendar),
        ],
        targets: vec![0],
        target_unit: "µg/m³".into(),
        metric_scale: MetricScale::Raw,
        window: WindowSpec {
            input_len: 4,
            horizon: 1,
            output_len: 2,
            stride: 1,
        },
        splits: Splits {
            train: 0..30,
            val: 30..45,
            test: 45..ROWS,
        },
        rows: ROWS,
        time_step_seconds: 3600,
        store_file: "windows.bin".into(),
        shards: vec![ShardRef {
            file: "shard-00000.parquet".into(),
            rows: ROWS,
        }],
        quality: QualityReport {
            missing_cells: vec![("pm2.5".into(), 3)],
            interpolated_cells: 2,
            unobserved_targets: 1,
            windows: vec![("train".into(), 20), ("val".into(), 10)],
        },
        max_gap: Some(3),
        anc: anc.then(|| AncSignals {
            sample_rate: 16_000,
            source_rate: 48_000,
            secondary_path: vec![0.0, 0.5, 0.25],
            primary_taps: 16,
            saturation: 0.5,
            reference_rms: 0.3,
            disturbance_rms: 0.2,
        }),
    };
    manifest.save(dir).unwrap();
    serde_json::to_value(&manifest).unwrap()
}

/// What train and predict do with opened data: windows of every split for a forecast window
/// and, on ANC data, for the window an ANC config derives; inputs, targets and their features.
fn read_everything(data: &PreparedData) {
    let forecast = WindowSpec {
        input_len: 3,
        horizon: 1,
        output_len: 2,
        stride: 1,
    };
    let mut specs = vec![forecast];
    if data.manifest.anc.is_some() {
        let mut config = TaskConfig::parse(
            "[data]\noutput_len = 4\nsource = { kind = \"anc\" }\n[model]\nkind = \"multiband-anc\"\n",
            Path::new("anc.toml"),
        )
        .unwrap();
        config.model = ModelSpec::MultibandAnc(MultibandAncSpec {
            band_edges: vec![1000.0],
            filter_taps: 3,
            taps: 2,
            hidden: 2,
            ..MultibandAncSpec::default()
        });
        specs.push(config.window_for(&data.manifest));
    }
    for spec in specs {
        for split in [Split::Train, Split::Val, Split::Test] {
            let starts = data.windows(split, spec);
            let (mut inputs, mut targets) = (Vec::new(), Vec::new());
            data.store.gather_inputs(&starts, spec, &mut inputs);
            data.store
                .gather_targets(&starts, spec, &data.manifest.targets, &mut targets);
            assert_eq!(
                inputs.len(),
                starts.len() * spec.input_len * data.store.cols()
            );
        }
    }
    for f in data.manifest.target_features() {
        f.denormalize(0.5);
    }
    data.manifest.family();
}

/// Opens `bytes` as the manifest in `dir`: Ok(true) when the data opened and read whole,
/// Ok(false) when refused with a one-line error naming a file in `dir`.
fn open_case(dir: &Path, bytes: &[u8]) -> Result<bool, String> {
    let path = dir.join("manifest.json");
    let _ = fs::remove_file(&path);
    fs::write(&path, bytes).unwrap();
    outcome(|| match PreparedData::open(dir) {
        Ok(data) => {
            read_everything(&data);
            Ok(true)
        }
        Err(e) => {
            let msg = e.to_string();
            if msg.contains(&*dir.to_string_lossy()) && !msg.contains('\n') {
                Ok(false)
            } else {
                Err(format!("error does not name the file on one line: {msg}"))
            }
        }
    })
}

fn fuzz(anc: bool, cases: u64) {
    let dir = tempfile::tempdir().unwrap();
    let valid = prepared(dir.path(), anc);
    let bytes = serde_json::to_vec_pretty(&valid).unwrap();
    assert_eq!(open_case(dir.path(), &bytes), Ok(true));
    let (mut opened, mut refused) = (0, 0);
    for case in 1..=cases {
        let mut rng = Rng::for_case(case);
        let bytes = mutate_json(&valid, &mut rng);
        match open_case(dir.path(), &bytes) {
            Ok(true) => opened += 1,
            Ok(false) => refused += 1,
            Err(why) => panic!(
                "case {case}: {why}\nmanifest: {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    // Both outcomes are exercised (a changed mean or quality count still opens).
    assert!(
        opened > 0 && refused > 0,
        "{opened} opened, {refused} refused"
    );
}

#[test]
fn mutated_forecast_manifests_never_panic() {
    fuzz(false, 10_000);
}

#[test]
fn mutated_anc_manifests_never_panic() {
    fuzz(true, 10_000);
}

#[test]
fn splits_beyond_the_data_are_an_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = prepared(dir.path(), true);
    manifest["splits"]["test"]["start"] = serde_json::json!(u64::MAX);
    let msg = open_case(dir.path(), &serde_json::to_vec(&manifest).unwrap());
    assert_eq!(msg, Ok(false));
    let err = PreparedData::open(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains("manifest.json") && err.contains("`splits.test`"),
        "{err}"
    );
}
