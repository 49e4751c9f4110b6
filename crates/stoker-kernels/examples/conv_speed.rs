//! Times the fused conv2d layer on the CNN2D model's shapes: [512, ·, 24, 11], 3×3, padding 1,
//! conv 1→32 (no dx: its input is data) then 32→64 (with dx), ReLU, f32 and bf16.
//!
//! `cargo run -p stoker-kernels --release --example conv_speed`

use std::time::Instant;

use stoker_kernels::bf16;
use stoker_kernels::conv::{ConvShape, conv2d_backward, conv2d_forward};
use stoker_kernels::scalar::Scalar;
use stoker_kernels::testing::pseudo_random;

/// CPU time of all this process's threads so far, in ns (Linux; 0 elsewhere). Unlike wall time
/// it does not count the time other processes take the cores, so it stays meaningful on a busy
/// machine (rayon's idle spinning does count).
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Timings of `reps` runs after one warm-up, in ms: (median wall, best wall, mean CPU time).
fn time(reps: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    f();
    let cpu = cpu_ns();
    let mut ms: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cpu = (cpu_ns() - cpu) as f64 * 1e-6 / reps as f64;
    ms.sort_by(f64::total_cmp);
    (ms[reps / 2], ms[0], cpu)
}

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
    for (pass, (median, best, cpu), gflop) in [("fwd", fwd, gflop), ("bwd", bwd, bwd_gflop)] {
        println!(
            "{name:<22} {pass}  median {median:7.2} ms  best {best:7.2} ms ({:6.1} GFLOP/s)  cpu {cpu:7.2} ms",
            gflop / best * 1e3,
        );
    }
    (fwd.1, bwd.1)
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
    let mut total = [0.0; 2];
    for (i, dtype) in ["f32", "bf16"].into_iter().enumerate() {
        let (f1, b1, f2, b2) = if i == 0 {
            let (f1, b1) = bench::<f32>("f32  conv 1->32", conv1, false, reps);
            let (f2, b2) = bench::<f32>("f32  conv 32->64 (dx)", conv2, true, reps);
            (f1, b1, f2, b2)
        } else {
            let (f1, b1) = bench::<bf16>("bf16 conv 1->32", conv1, false, reps);
            let (f2, b2) = bench::<bf16>("bf16 conv 32->64 (dx)", conv2, true, reps);
            (f1, b1, f2, b2)
        };
        total[i] = f1 + b1 + f2 + b2;
        println!(
            "{dtype}: both convs fwd+bwd (best) {:.2} ms per batch of {batch} = {:.0} samples/s (convs only)\n",
            total[i],
            batch as f64 / total[i] * 1e3
        );
    }
}
