//! Damaged and crafted checkpoint metadata (`best.json`): `checkpoint::load` returns a one-line
//! error naming a file of the checkpoint, or a model that runs a forward pass without a panic.

#[path = "../../stoker-artifact/tests/support/mod.rs"]
mod support;

use std::fs;
use std::path::Path;

use burn::prelude::*;
use serde_json::Value;
use stoker_artifact::run::CHECKPOINT_VERSION;
use stoker_artifact::{
    AncSignals, CheckpointMeta, Cnn2dSpec, LstmAttentionSpec, ModelSpec, MultibandAncSpec,
    WindowSpec,
};
use stoker_zoo::{InputShape, Model, Network, checkpoint};
use support::{Rng, mutate_json, outcome};

/// A small model of each architecture with the shape it was built for.
fn models() -> Vec<(ModelSpec, InputShape)> {
    let forecast = |input_len, output_len| InputShape {
        window: WindowSpec {
            input_len,
            horizon: 1,
            output_len,
            stride: 1,
        },
        features: 3,
        targets: vec![0],
        anc: None,
    };
    let anc = MultibandAncSpec {
        band_edges: vec![1000.0],
        filter_taps: 5,
        taps: 4,
        hidden: 3,
        layers: 1,
        linear_taps: 6,
        least_squares_init: false,
    };
    let plant = AncSignals {
        sample_rate: 16_000,
        source_rate: 16_000,
        secondary_path: vec![0.0, 0.5, 0.25],
        primary_taps: 8,
        saturation: 0.5,
        reference_rms: 0.3,
        disturbance_rms: 0.2,
    };
    let chunk = 4;
    let anc_shape = InputShape {
        window: WindowSpec {
            input_len: anc.receptive_field() - 1 + plant.secondary_path.len() - 1 + chunk,
            horizon: 1 - chunk as isize,
            output_len: chunk,
            stride: chunk,
        },
        features: 2,
        targets: vec![1],
        anc: Some(plant),
    };
    vec![
        (
            ModelSpec::Cnn2d(Cnn2dSpec {
                channels: vec![2],
                hidden: 4,
                dropout: 0.1,
                residual: true,
            }),
            forecast(8, 1),
        ),
        (
            ModelSpec::LstmAttention(LstmAttentionSpec {
                hidden: 4,
                layers: 1,
                attention: 3,
                instance_norm: true,
                linear_skip: true,
                recurrent_len: 4,
                dropout: 0.1,
                ridge_init: false,
                position_bias: true,
                segment: 0,
            }),
            forecast(6, 2),
        ),
        (ModelSpec::MultibandAnc(anc), anc_shape),
    ]
}

/// Saves a checkpoint `best` of `spec` in `dir`; returns its metadata as JSON.
fn saved(dir: &Path, spec: &ModelSpec, shape: &InputShape, device: &Device) -> Value {
    let model = Model::new(spec, shape, device).unwrap();
    let meta = CheckpointMeta {
        format_version: CHECKPOINT_VERSION,
        model: spec.clone(),
        input_features: shape.features,
        window: shape.window,
        targets: shape.targets.clone(),
        anc: shape.anc.clone(),
        manifest_sha256: "ab".repeat(32),
        epoch: 3,
        step: 120,
        val_loss: 0.25,
        precision: "f32".into(),
        weights: "best.bpk".into(),
    };
    checkpoint::save(dir, "best", &model, &meta).unwrap();
    serde_json::to_value(&meta).unwrap()
}

/// A forward pass over zeros of the shape predict would feed the loaded model: the metadata's
/// window for a forecaster, the network's receptive field and a few outputs for ANC.
fn forward(model: &Model, meta: &CheckpointMeta, device: &Device) {
    let (len, features) = match &model.net {
        Network::MultibandAnc(net) => (net.receptive_field() + 3, 1),
        _ => (meta.window.input_len, meta.input_features),
    };
    // Shapes that fit the weights yet would take long to run are not what this test is about.
    if len.saturating_mul(features) <= 100_000 {
        let y = model.forward(Tensor::zeros([2, len, features], device));
        assert_eq!(y.dims()[0], 2);
    }
}

/// Loads the checkpoint in `dir` after writing `bytes` as its metadata: Ok(true) when it loaded
/// and ran, Ok(false) when refused with a one-line error naming a file in `dir`.
fn load_case(dir: &Path, bytes: &[u8], device: &Device) -> Result<bool, String> {
    let path = dir.join("best.json");
    let _ = fs::remove_file(&path);
    fs::write(&path, bytes).unwrap();
    outcome(|| match checkpoint::load(dir, "best", device) {
        Ok((model, meta)) => {
            forward(&model, &meta, device);
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

#[test]
fn mutated_checkpoint_metadata_never_panics() {
    let device = Device::flex();
    for (spec, shape) in models() {
        let dir = tempfile::tempdir().unwrap();
        let valid = saved(dir.path(), &spec, &shape, &device);
        let bytes = serde_json::to_vec_pretty(&valid).unwrap();
        assert_eq!(load_case(dir.path(), &bytes, &device), Ok(true));
        let (mut opened, mut refused) = (0, 0);
        for case in 1..=3000 {
            let mut rng = Rng::for_case(case);
            let bytes = mutate_json(&valid, &mut rng);
            match load_case(dir.path(), &bytes, &device) {
                Ok(true) => opened += 1,
                Ok(false) => refused += 1,
                Err(why) => panic!(
                    "{} case {case}: {why}\nmetadata: {}",
                    spec.kind(),
                    String::from_utf8_lossy(&bytes)
                ),
            }
        }
        assert!(
            opened > 0 && refused > 0,
            "{}: {opened} opened, {refused} refused",
            spec.kind()
        );
    }
}
