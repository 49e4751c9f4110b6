//! The PyTorch export of every zoo model round-trips: random weights → safetensors → a fresh
//! model of the same spec gives the same outputs; and a damaged file is an error naming the
//! file and the tensor, never a panic.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::Distribution;
use stoker_artifact::export::{read_safetensors, write_safetensors};
use stoker_artifact::{
    AncSignals, Cnn2dSpec, LstmAttentionSpec, ModelSpec, MultibandAncSpec, NamedTensor, WindowSpec,
};
use stoker_zoo::{InputShape, Model};

fn window(input_len: usize, output_len: usize) -> WindowSpec {
    WindowSpec {
        input_len,
        horizon: 1,
        output_len,
        stride: 1,
    }
}

fn plant() -> AncSignals {
    AncSignals {
        sample_rate: 16_000,
        source_rate: 16_000,
        secondary_path: vec![0.0, 0.5, 0.25, -0.1],
        primary_taps: 8,
        saturation: 0.0,
        reference_rms: 1.0,
        disturbance_rms: 1.0,
    }
}

/// Every model the zoo builds, in the variants whose tensors differ.
fn cases() -> Vec<(&'static str, ModelSpec, InputShape)> {
    let forecast = |w, features, targets: Vec<usize>| InputShape {
        window: w,
        features,
        targets,
        anc: None,
    };
    let lstm = |instance_norm, linear_skip, recurrent_len| LstmAttentionSpec {
        hidden: 8,
        layers: 2,
        attention: 4,
        instance_norm,
        linear_skip,
        recurrent_len,
        // The per-lag score bias comes with the other options.
        position_bias: instance_norm,
        ..Default::default()
    };
    let anc_shape = InputShape {
        window: window(64, 1),
        features: 2,
        targets: vec![1],
        anc: Some(plant()),
    };
    let anc = |layers, linear_taps| {
        ModelSpec::MultibandAnc(MultibandAncSpec {
            filter_taps: 9,
            taps: 16,
            hidden: 8,
            layers,
            linear_taps,
            ..Default::default()
        })
    };
    vec![
        (
            "cnn2d",
            ModelSpec::Cnn2d(Cnn2dSpec {
                channels: vec![4, 8],
                hidden: 16,
                ..Default::default()
            }),
            forecast(window(24, 1), 11, vec![0]),
        ),
        (
            "cnn2d residual, 3 channels, 2 targets × 3 steps",
            ModelSpec::Cnn2d(Cnn2dSpec {
                channels: vec![2, 3, 4],
                hidden: 6,
                residual: true,
                ..Default::default()
            }),
            forecast(window(12, 3), 5, vec![0, 2]),
        ),
        (
            "lstm-attention",
            ModelSpec::LstmAttention(lstm(false, false, 0)),
            forecast(window(16, 4), 3, vec![0, 1, 2]),
        ),
        (
            "lstm-attention, instance norm, skip, recurrent 10, position bias",
            ModelSpec::LstmAttention(lstm(true, true, 10)),
            forecast(window(16, 4), 3, vec![0, 2]),
        ),
        (
            "lstm-attention over segments of 4, skip, position bias",
            ModelSpec::LstmAttention(LstmAttentionSpec {
                segment: 4,
                ..lstm(true, true, 14)
            }),
            forecast(window(16, 4), 3, vec![0, 2]),
        ),
        ("multiband-anc", anc(1, 0), anc_shape.clone()),
        ("multiband-anc, 2 layers, linear FIR", anc(2, 40), anc_shape),
    ]
}

/// Deterministic values in [-1, 1) (a 64-bit LCG).
fn noise(seed: &mut u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The model with every exported tensor (buffers, zero-initialised parts and the LSTM's b_hh
/// included) set to noise, through the inverse mapping itself.
fn randomised(model: Model, seed: u64) -> Model {
    let mut seed = seed;
    let tensors = model
        .pytorch_tensors()
        .unwrap()
        .into_iter()
        .map(|t| {
            let data = noise(&mut seed, t.data.len());
            NamedTensor { data, ..t }
        })
        .collect();
    model.load_pytorch_tensors(tensors).unwrap()
}

fn outputs(model: &Model, x: &Tensor<3>) -> Vec<f32> {
    model
        .forward(x.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

fn input(shape: &InputShape, device: &Device) -> Tensor<3> {
    Tensor::random(
        [5, shape.window.input_len, shape.features],
        Distribution::Default,
        device,
    )
}

#[test]
fn every_model_round_trips_through_safetensors() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for (i, (name, spec, shape)) in cases().into_iter().enumerate() {
        let original = randomised(Model::new(&spec, &shape, &device).unwrap(), 7 + i as u64);
        let path = dir.path().join(format!("{i}.safetensors"));
        let written = original.save_pytorch_file(&path).unwrap();
        assert_eq!(read_safetensors(&path).unwrap(), written, "{name}");

        let fresh = Model::new(&spec, &shape, &device).unwrap();
        let x = input(&shape, &device);
        let (want, before) = (outputs(&original, &x), outputs(&fresh, &x));
        assert_ne!(
            want, before,
            "{name}: a fresh model must differ before loading"
        );
        let loaded = fresh.load_pytorch_file(&path).unwrap();
        let got = outputs(&loaded, &x);
        assert_eq!(got.len(), want.len(), "{name}");
        let worst = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= 1e-6, "{name}: outputs differ by {worst}");

        // Export again: the same tensors, the same bytes.
        let again = dir.path().join(format!("{i}.again.safetensors"));
        loaded.save_pytorch_file(&again).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap(),
            "{name}: re-export differs"
        );
    }
}

#[test]
fn tensor_names_and_layouts_are_the_pytorch_peers() {
    let device = Device::flex();
    let shapes = |i: usize| {
        let (_, spec, shape) = cases().swap_remove(i);
        Model::new(&spec, &shape, &device)
            .unwrap()
            .pytorch_tensors()
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.shape))
            .collect::<Vec<_>>()
    };
    let owned = |v: &[(&str, &[usize])]| -> Vec<(String, Vec<usize>)> {
        v.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect()
    };
    // nn.Sequential(conv, relu, conv, relu, pool, flatten, linear, relu, linear); [out, in].
    assert_eq!(
        shapes(0),
        owned(&[
            ("net.0.bias", &[4]),
            ("net.0.weight", &[4, 1, 3, 3]),
            ("net.2.bias", &[8]),
            ("net.2.weight", &[8, 4, 3, 3]),
            ("net.6.bias", &[16]),
            ("net.6.weight", &[16, 8 * 12 * 5]),
            ("net.8.bias", &[1]),
            ("net.8.weight", &[1, 16]),
        ])
    );
    assert_eq!(
        shapes(3),
        owned(&[
            ("head.bias", &[8]),
            ("head.weight", &[8, 16]),
            ("lstm.bias_hh_l0", &[32]),
            ("lstm.bias_hh_l1", &[32]),
            ("lstm.bias_ih_l0", &[32]),
            ("lstm.bias_ih_l1", &[32]),
            ("lstm.weight_hh_l0", &[32, 8]),
            ("lstm.weight_hh_l1", &[32, 8]),
            ("lstm.weight_ih_l0", &[32, 3]),
            ("lstm.weight_ih_l1", &[32, 8]),
            ("position_bias", &[1, 10]),
            ("score_v.weight", &[1, 4]),
            ("score_w.bias", &[4]),
            ("score_w.weight", &[4, 8]),
            ("skip.bias", &[4]),
            ("skip.weight", &[4, 16]),
        ])
    );
    // Segments of 4 over the last 12 of 14 steps, against the per-step case: a segment
    // embedding, the LSTM reading 8-wide embeddings, the head forecasting one variable's 4
    // steps, the score bias per segment.
    let changed = owned(&[
        ("embed.bias", &[8]),
        ("embed.weight", &[8, 4]),
        ("head.bias", &[4]),
        ("head.weight", &[4, 16]),
        ("lstm.weight_ih_l0", &[32, 8]),
        ("position_bias", &[1, 3]),
    ]);
    let mut segmented: Vec<_> = shapes(3)
        .into_iter()
        .filter(|(name, _)| changed.iter().all(|(c, _)| c != name))
        .chain(changed.clone())
        .collect();
    segmented.sort();
    assert_eq!(shapes(4), segmented);
    assert_eq!(
        shapes(6),
        owned(&[
            ("b1", &[3, 1, 8]),
            ("b2", &[3, 1, 8]),
            ("b3", &[3, 1, 1]),
            ("filters", &[3, 1, 9]),
            ("linear", &[40]),
            ("secondary", &[1, 1, 4]),
            ("w1", &[3, 16, 8]),
            ("w2", &[3, 8, 8]),
            ("w3", &[3, 8, 1]),
        ])
    );
}

#[test]
fn lstm_biases_load_as_their_sum() {
    let device = Device::flex();
    let (_, spec, shape) = cases().swap_remove(2);
    let model = randomised(Model::new(&spec, &shape, &device).unwrap(), 3);
    let tensors = model.pytorch_tensors().unwrap();
    // Move half of each b_ih into b_hh: PyTorch's LSTM only ever sees b_ih + b_hh.
    let mut halves = tensors.clone();
    for t in halves.iter_mut().filter(|t| t.name.contains(".bias_")) {
        if t.name.contains("bias_ih") || t.name.contains("bias_hh") {
            let ih = tensors
                .iter()
                .find(|u| u.name == t.name.replace("bias_hh", "bias_ih"))
                .unwrap();
            t.data = ih.data.iter().map(|v| v / 2.0).collect();
        }
    }
    let loaded = Model::new(&spec, &shape, &device)
        .unwrap()
        .load_pytorch_tensors(halves)
        .unwrap();
    let x = input(&shape, &device);
    let (a, b) = (outputs(&model, &x), outputs(&loaded, &x));
    let worst = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(worst <= 1e-5, "{worst}");
}

/// Loads `tensors` (written to a file) into a fresh model of case `case`: the error's text.
fn load_error(dir: &Path, case: usize, tensors: &[NamedTensor]) -> String {
    let (_, spec, shape) = cases().swap_remove(case);
    let path = dir.join("bad.safetensors");
    write_safetensors(&path, tensors).unwrap();
    let model = Model::new(&spec, &shape, &Device::flex()).unwrap();
    model.load_pytorch_file(&path).unwrap_err().to_string()
}

#[test]
fn damaged_exports_are_errors_naming_file_and_tensor() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let (_, spec, shape) = cases().swap_remove(3);
    let good = Model::new(&spec, &shape, &device)
        .unwrap()
        .pytorch_tensors()
        .unwrap();
    let file = "bad.safetensors";

    let missing: Vec<_> = good
        .iter()
        .filter(|t| t.name != "skip.weight")
        .cloned()
        .collect();
    let e = load_error(dir.path(), 3, &missing);
    assert!(
        e.contains(file) && e.contains("`skip.weight` is missing"),
        "{e}"
    );

    let mut reshaped = good.clone();
    let t = reshaped
        .iter_mut()
        .find(|t| t.name == "lstm.weight_ih_l0")
        .unwrap();
    t.shape = vec![3, 32];
    let e = load_error(dir.path(), 3, &reshaped);
    assert!(
        e.contains(file) && e.contains("`lstm.weight_ih_l0` has shape [3, 32]"),
        "{e}"
    );

    let mut extra = good.clone();
    extra.push(NamedTensor::new("lstm.weight_ih_l2", vec![1], vec![0.0]));
    let e = load_error(dir.path(), 3, &extra);
    assert!(
        e.contains(file) && e.contains("`lstm.weight_ih_l2` is not a parameter"),
        "{e}"
    );

    // Another model's export: the first tensor the CNN looks for is absent.
    let e = load_error(dir.path(), 0, &good);
    assert!(e.contains(file) && e.contains("net.0.weight"), "{e}");

    // Bytes cut short, a corrupted header, an empty file: errors naming the file.
    let path = dir.path().join(file);
    write_safetensors(&path, &good).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut tampered = bytes.clone();
    tampered[8 + header_len / 2] = b'\x01';
    let mut wrong_dtype = bytes.clone();
    let at = String::from_utf8_lossy(&bytes[8..8 + header_len])
        .find("F32")
        .unwrap();
    wrong_dtype[8 + at..8 + at + 3].copy_from_slice(b"I32");
    for (what, damaged) in [
        ("truncated", bytes[..bytes.len() - 5].to_vec()),
        ("tampered header", tampered),
        ("not f32", wrong_dtype),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&path, &damaged).unwrap();
        let model = Model::new(&spec, &shape, &device).unwrap();
        let e = model.load_pytorch_file(&path).unwrap_err().to_string();
        assert!(e.contains(file), "{what}: {e}");
        if what == "not f32" {
            assert!(e.contains("dtype"), "{what}: {e}");
        }
    }
}
