//! Samples/s of the fused LSTM layer on the reference shape: 2 layers, T=96, B=256, D=7 then
//! H=128, forward alone and forward + backward, f32 and bf16 matmuls (median of 5 after a
//! warm-up). A sample is one sequence of the batch.
//!
//! `cargo run -p stoker-kernels --release --example lstm_speed [f32|bf16]`

use std::hint::black_box;
use std::time::Instant;

use stoker_kernels::lstm::{LstmWeights, MatmulType, lstm_backward, lstm_forward};
use stoker_kernels::testing::pseudo_random;

const STEPS: usize = 96;
const BATCH: usize = 256;
const D_IN: usize = 7;
const HIDDEN: usize = 128;

struct Layer {
    wx: Vec<f32>,
    bias: Vec<f32>,
    wh: Vec<f32>,
    d_in: usize,
}

impl Layer {
    fn new(d_in: usize, seed: u32) -> Self {
        let k = 1.0 / (HIDDEN as f32).sqrt();
        Self {
            wx: pseudo_random(d_in * 4 * HIDDEN, seed, k),
            bias: pseudo_random(4 * HIDDEN, seed + 1, k),
            wh: pseudo_random(HIDDEN * 4 * HIDDEN, seed + 2, k),
            d_in,
        }
    }

    fn weights(&self) -> LstmWeights<'_> {
        LstmWeights {
            wx: &self.wx,
            bias: &self.bias,
            wh: &self.wh,
            d_in: self.d_in,
            hidden: HIDDEN,
        }
    }
}

fn median_seconds(mut run: impl FnMut()) -> f64 {
    run();
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

fn main() {
    let layers = [Layer::new(D_IN, 1), Layer::new(HIDDEN, 2)];
    let x = pseudo_random(STEPS * BATCH * D_IN, 3, 1.0);
    let dh_top = pseudo_random(STEPS * BATCH * HIDDEN, 4, 1e-3);
    println!("2-layer LSTM, T={STEPS} B={BATCH} D={D_IN} H={HIDDEN}");
    let only = std::env::args().nth(1);
    for (name, ty) in [("f32", MatmulType::F32), ("bf16", MatmulType::Bf16)] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let forward = || {
            let (h1, _) = lstm_forward(&x, STEPS, BATCH, &layers[0].weights(), ty, false);
            let (h2, _) = lstm_forward(&h1, STEPS, BATCH, &layers[1].weights(), ty, false);
            black_box(h2);
        };
        let train = || {
            let w = [layers[0].weights(), layers[1].weights()];
            let (h1, t1) = lstm_forward(&x, STEPS, BATCH, &w[0], ty, true);
            let (h2, t2) = lstm_forward(&h1, STEPS, BATCH, &w[1], ty, true);
            black_box(&h2);
            let g2 = lstm_backward(&h1, &dh_top, &t2.unwrap(), &w[1], ty);
            let g1 = lstm_backward(&x, &g2.dx, &t1.unwrap(), &w[0], ty);
            black_box((g1, g2));
        };
        let f = median_seconds(forward);
        let fb = median_seconds(train);
        println!(
            "{name:>5}: forward {:7.1} ms = {:6.0} samples/s | forward+backward {:7.1} ms = {:6.0} samples/s",
            f * 1e3,
            BATCH as f64 / f,
            fb * 1e3,
            BATCH as f64 / fb,
        );
    }
}
