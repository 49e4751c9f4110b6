//! The reference shapes the model rows run on, and the random batch they train on.

use stoker_artifact::{
    AncSignals, Cnn2dSpec, LstmAttentionSpec, ModelSpec, MultibandAncSpec, WindowSpec,
};
use stoker_train::HostBatch;
use stoker_zoo::InputShape;

pub(crate) struct Reference {
    pub key: &'static str,
    pub spec: ModelSpec,
    pub shape: InputShape,
    /// Windows per step.
    pub batch: usize,
    /// Samples a window counts for: 1 for a forecast window, its error-microphone samples for
    /// an ANC chunk.
    pub samples_per_window: usize,
}

/// The ANC reference: 3 bands × 256 taps, hidden 384, one chunk of 1024 error samples per
/// step, a 256-tap secondary path.
pub(crate) fn anc_reference() -> Reference {
    let spec = MultibandAncSpec::default();
    let secondary: Vec<f32> = (0..256)
        .map(|k| (-(k as f32) / 40.0).exp() * ((k as f32) * 0.3).sin())
        .collect();
    let chunk = 1024;
    let window = WindowSpec {
        input_len: spec.receptive_field() - 1 + secondary.len() - 1 + chunk,
        horizon: 1 - chunk as isize,
        output_len: chunk,
        stride: chunk,
    };
    Reference {
        key: "multiband_anc",
        spec: ModelSpec::MultibandAnc(spec),
        shape: InputShape {
            window,
            features: 2,
            targets: vec![1],
            anc: Some(AncSignals {
                sample_rate: 16_000,
                source_rate: 16_000,
                secondary_path: secondary,
                primary_taps: 512,
                saturation: 0.0,
                reference_rms: 1.0,
                disturbance_rms: 1.0,
            }),
        },
        batch: 1,
        samples_per_window: chunk,
    }
}

pub(crate) fn references() -> Vec<Reference> {
    let window = |input_len, output_len| WindowSpec {
        input_len,
        horizon: 1,
        output_len,
        stride: 1,
    };
    vec![
        Reference {
            key: "cnn2d",
            spec: ModelSpec::Cnn2d(Cnn2dSpec::default()),
            shape: InputShape {
                window: window(24, 1),
                features: 11,
                targets: vec![0],
                anc: None,
            },
            batch: 512,
            samples_per_window: 1,
        },
        Reference {
            key: "lstm_attention",
            spec: ModelSpec::LstmAttention(LstmAttentionSpec::default()),
            shape: InputShape {
                window: window(96, 96),
                features: 7,
                targets: (0..7).collect(),
                anc: None,
            },
            batch: 256,
            samples_per_window: 1,
        },
        anc_reference(),
    ]
}

/// A batch of `len` windows of `shape` filled by xorshift: speed does not depend on values.
pub(crate) fn random_batch(shape: &InputShape, len: usize) -> HostBatch {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    HostBatch {
        inputs: (0..len * shape.window.input_len * shape.features)
            .map(|_| next())
            .collect(),
        targets: (0..len * shape.outputs()).map(|_| next()).collect(),
        len,
    }
}
