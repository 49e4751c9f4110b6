//! Attention that informs: on a series whose next value is its value one period (24 steps) ago
//! plus noise, the trained LSTM-attention model (with `position_bias`) learns the forecast and
//! its mean attention peaks at that lag. (Content-only scores, `position_bias = false`, learn
//! nothing here in the same steps: the loss stays near the series' variance.)

use burn::prelude::*;
use stoker_artifact::{LossKind, LstmAttentionSpec, ModelSpec, WindowSpec};
use stoker_runtime::Autocast;
use stoker_train::{HostBatch, batch_gradients, optimizer};
use stoker_zoo::{InputShape, Model};

const PERIOD: usize = 24;
/// Under two periods: one lag alone carries the period (with 48 steps, lag 47 — two periods
/// before the target — would be a second, weaker answer).
const INPUT_LEN: usize = 36;

/// x_t = ρ·x_{t−24} + √(1−ρ²)·ε_t: each day repeats the one before it, with fresh noise, so
/// the best forecast of the next step is (ρ times) the value one period before it.
fn series(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut normal = move || {
        // Sum of 4 uniforms: close enough to a normal for a test signal.
        (0..4)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .sum::<f32>()
            * 1.732
    };
    let rho: f32 = 0.95;
    let mut x: Vec<f32> = (0..PERIOD).map(|_| normal()).collect();
    for t in PERIOD..len {
        let v = rho * x[t - PERIOD] + (1.0 - rho * rho).sqrt() * normal();
        x.push(v);
    }
    x
}

fn batch(x: &[f32], starts: &[usize]) -> HostBatch {
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    for &s in starts {
        inputs.extend_from_slice(&x[s..s + INPUT_LEN]);
        targets.push(x[s + INPUT_LEN]);
    }
    HostBatch {
        inputs,
        targets,
        len: starts.len(),
    }
}

#[test]
fn attention_peaks_at_the_lag_the_future_depends_on() {
    let device = Device::flex().autodiff();
    device.seed(11);
    let window = WindowSpec {
        input_len: INPUT_LEN,
        horizon: 1,
        output_len: 1,
        stride: 1,
    };
    let shape = InputShape {
        window,
        features: 1,
        targets: vec![0],
        anc: None,
    };
    let spec = ModelSpec::LstmAttention(LstmAttentionSpec {
        hidden: 32,
        layers: 1,
        attention: 16,
        position_bias: true,
        ..Default::default()
    });
    let mut model = Model::new(&spec, &shape, &device).unwrap();
    let mut optim = optimizer(&stoker_artifact::TrainConfig::default());
    let x = series(40_000, 0x9E37_79B9_7F4A_7C15);
    let windows = x.len() - INPUT_LEN - 1;
    let (batch_size, steps) = (64, 800);
    let mut first_loss = None;
    let mut last_loss = 0.0;
    for step in 0..steps {
        let starts: Vec<usize> = (0..batch_size)
            .map(|i| (step * 7919 + i * 104_729) % (windows - 4096))
            .collect();
        let (grads, loss) = batch_gradients(
            &model,
            &batch(&x, &starts),
            window,
            1,
            1,
            LossKind::Mse,
            &Autocast::F32,
            1.0,
            &device,
        );
        last_loss = loss.into_scalar::<f32>();
        first_loss.get_or_insert(last_loss);
        model = optim.step(3e-3, model, grads);
    }
    // Held-out windows: the last 4 096 of the series.
    let held_out: Vec<usize> = (windows - 4096..windows).step_by(8).collect();
    let b = batch(&x, &held_out);
    let inputs = Tensor::<3>::from_data(
        burn::tensor::TensorData::new(b.inputs, [b.len, INPUT_LEN, 1]),
        &device.clone().inner(),
    );
    let (_, attention) = model.valid().forward_explained(inputs);
    let weights = attention
        .expect("the model has attention")
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    let mut mean = vec![0f64; INPUT_LEN];
    for row in weights.chunks(INPUT_LEN) {
        for (m, w) in mean.iter_mut().zip(row) {
            *m += f64::from(*w) / b.len as f64;
        }
    }
    // Entry k lies INPUT_LEN − 1 − k steps before the last input; the target is one step
    // after it, so the value one period before the target sits at lag PERIOD − 1.
    let expected = INPUT_LEN - PERIOD;
    let peak = (0..INPUT_LEN)
        .max_by(|&a, &b| mean[a].total_cmp(&mean[b]))
        .unwrap();
    let uniform = 1.0 / INPUT_LEN as f64;
    // The best forecast, ρ·x(t−24), leaves 1 − ρ² ≈ 0.10 of the unit variance.
    assert!(
        last_loss < 0.3,
        "the model did not learn the forecast: loss {first_loss:?} → {last_loss}"
    );
    assert_eq!(
        peak,
        expected,
        "attention peaks at lag {} instead of {} (loss {:?} → {last_loss}); profile {mean:?}",
        INPUT_LEN - 1 - peak,
        PERIOD - 1,
        first_loss
    );
    assert!(
        mean[peak] > 4.0 * uniform,
        "peak weight {} is not well above uniform {uniform}",
        mean[peak]
    );
}
