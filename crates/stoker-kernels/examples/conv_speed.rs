//! Times the fused conv2d layer on the CNN2D model's shapes: [512, ·, 24, 11], 3×3, padding 1,
//! conv 1→32 (no dx: its input is data) then 32→64 (with dx), ReLU, and the 2×2 max pooling
//! after them, f32 and bf16.
//!
//! `cargo run -p stoker-kernels --release --example conv_speed [-- f32|bf16]` (one dtype only
//! when named).

use stoker_kernels::bf16;
use stoker_kernels::conv::{ConvShape, conv2d_backward, conv2d_forward};
use stoker_kernels::pool::{max_pool2x2_backward, max_pool2x2_forward};
use stoker_kernels::scalar::Scalar;
use stoker_kernels::testing::{Timing, pseudo_random, time};

fn bench<T: Scalar>(name: &str, s: ConvShape, need_dx: bool, reps: usize) -> (f64, f64) {
    let x = T::narrow(pseudo_random(s.x_len(), 1, 0.5));
    let w = T::narrow(
        pseudo_random(s.w_len(), 2, 0.5)
            .iter()
            .map(|v| v * 0.3)
            .collect(),
    );
    let b = T::narrow(pseudo_random(s.out_channels, 3, 0.5));
    let dy = T::narrow(pseudo_random(s.y_len(), 4, 0.5));
    let y = conv2d_forward(&x, &w, &b, s, true);
    let fwd = time(reps, || {
        std::hint::black_box(conv2d_forward(&x, &w, &b, s, true));
    });
    let bwd = time(reps, || {
        std::hint::black_box(conv2d_backward(&x, &w, &y, &dy, s, true, need_dx));
    });
    let gflop = 2.0 * s.macs() as f64 * 1e-9;
    let bwd_gflop = if need_dx { 2.0 } else { 1.0 } * gflop;
    report(name, fwd, bwd, [gflop, bwd_gflop]);
    (fwd.best, bwd.best)
}

fn report(name: &str, fwd: Timing, bwd: Timing, gflop: [f64; 2]) {
    for (pass, t, gflop) in [("fwd", fwd, gflop[0]), ("bwd", bwd, gflop[1])] {
        let rate = if gflop > 0.0 {
            format!("({:6.1} GFLOP/s)", gflop / t.best * 1e3)
        } else {
            " ".repeat(17)
        };
        println!(
            "{name:<22} {pass}  median {:7.2} ms  best {:7.2} ms {rate}  cpu {:7.2} ms",
            t.median, t.best, t.cpu
        );
    }
}

/// The 2×2 max pooling after conv 32->64: [512, 64, 24, 11] → [512, 64, 12, 5].
fn bench_pool<T: Scalar>(name: &str, s: ConvShape, reps: usize) -> (f64, f64) {
    let (planes, h, w) = (s.batch * s.out_channels, s.out_height(), s.out_width());
    let x = T::narrow(pseudo_random(s.y_len(), 5, 0.5));
    let (y, arg) = max_pool2x2_forward(&x, planes, h, w);
    let fwd = time(reps, || {
        std::hint::black_box(max_pool2x2_forward(&x, planes, h, w));
    });
    let bwd = time(reps, || {
        std::hint::black_box(max_pool2x2_backward(&y, &arg, planes, h, w));
    });
    report(name, fwd, bwd, [0.0; 2]);
    (fwd.best, bwd.best)
}

fn main() {
    let batch = 512;
    let reps = 15;
    let conv1 = ConvShape {
        batch,
        channels: 1,
        height: 24,
        width: 11,
        out_channels: 32,
        kernel: [3, 3],
        padding: [1, 1],
    };
    let conv2 = ConvShape {
        channels: 32,
        out_channels: 64,
        ..conv1
    };
    println!("rayon threads: {}", rayon::current_num_threads());
    let only = std::env::args().nth(1);
    let mut total = [0.0; 2];
    for (i, dtype) in ["f32", "bf16"].into_iter().enumerate() {
        if only.as_deref().is_some_and(|o| o != dtype) {
            continue;
        }
        let (f1, b1, f2, b2, fp, bp) = if i == 0 {
            let (f1, b1) = bench::<f32>("f32  conv 1->32", conv1, false, reps);
            let (f2, b2) = bench::<f32>("f32  conv 32->64 (dx)", conv2, true, reps);
            let (fp, bp) = bench_pool::<f32>("f32  pool 2x2", conv2, reps);
            (f1, b1, f2, b2, fp, bp)
        } else {
            let (f1, b1) = bench::<bf16>("bf16 conv 1->32", conv1, false, reps);
            let (f2, b2) = bench::<bf16>("bf16 conv 32->64 (dx)", conv2, true, reps);
            let (fp, bp) = bench_pool::<bf16>("bf16 pool 2x2", conv2, reps);
            (f1, b1, f2, b2, fp, bp)
        };
        total[i] = f1 + b1 + f2 + b2 + fp + bp;
        println!(
            "{dtype}: both convs and the pooling fwd+bwd (best) {:.2} ms per batch of {batch} = {:.0} samples/s (these layers only)\n",
            total[i],
            batch as f64 / total[i] * 1e3
        );
    }
}
