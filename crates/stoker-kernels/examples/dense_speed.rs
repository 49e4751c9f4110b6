//! Times the grouped dense layer on the ANC model's reference shapes: 3 bands, 1 279 rows (a
//! chunk of 1 024 error samples plus the secondary path's 255 of history), 256 taps → 384
//! hidden (tanh, no dx: its input is data) → 1 (identity, with dx), f32 and bf16.
//!
//! `cargo run -p stoker-kernels --release --example dense_speed`

use stoker_kernels::bf16;
use stoker_kernels::dense::{Activation, DenseShape, dense_backward, dense_forward};
use stoker_kernels::scalar::Scalar;
use stoker_kernels::testing::{pseudo_random, time};

/// Best forward + backward time in ms.
fn bench<T: Scalar>(name: &str, s: DenseShape, act: Activation, need_dx: bool) -> f64 {
    let reps = 40;
    let x = T::narrow(pseudo_random(s.groups * s.rows * s.inputs, 1, 0.5));
    let w = T::narrow(pseudo_random(s.groups * s.inputs * s.outputs, 2, 0.1));
    let b = T::narrow(pseudo_random(s.groups * s.outputs, 3, 0.1));
    let dy = T::narrow(pseudo_random(s.groups * s.rows * s.outputs, 4, 0.5));
    let y = dense_forward(&x, &w, &b, s, act);
    let fwd = time(reps, || {
        std::hint::black_box(dense_forward(&x, &w, &b, s, act));
    });
    let bwd = time(reps, || {
        std::hint::black_box(dense_backward(&x, &w, &y, &dy, s, act, need_dx));
    });
    let gflop = 2e-9 * (s.groups * s.rows * s.inputs * s.outputs) as f64;
    let bwd_gflop = gflop * if need_dx { 2.0 } else { 1.0 };
    for (pass, t, gflop) in [("fwd", fwd, gflop), ("bwd", bwd, bwd_gflop)] {
        println!(
            "{name:<18} {pass}  median {:6.3} ms  best {:6.3} ms ({:6.1} GFLOP/s)  cpu {:6.3} ms",
            t.median,
            t.best,
            gflop / t.best * 1e3,
            t.cpu,
        );
    }
    fwd.best + bwd.best
}

fn main() {
    let hidden = DenseShape {
        groups: 3,
        rows: 1279,
        inputs: 256,
        outputs: 384,
    };
    let head = DenseShape {
        inputs: 384,
        outputs: 1,
        ..hidden
    };
    println!("rayon threads: {}", rayon::current_num_threads());
    let f32_total = bench::<f32>("f32  256->384", hidden, Activation::Tanh, false)
        + bench::<f32>("f32  384->1 (dx)", head, Activation::Identity, true);
    println!("f32: both layers fwd+bwd (best) {f32_total:.3} ms\n");
    let bf16_total = bench::<bf16>("bf16 256->384", hidden, Activation::Tanh, false)
        + bench::<bf16>("bf16 384->1 (dx)", head, Activation::Identity, true);
    println!("bf16: both layers fwd+bwd (best) {bf16_total:.3} ms");
}
