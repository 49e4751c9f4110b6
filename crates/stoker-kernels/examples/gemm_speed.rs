//! GFLOP/s of `matmul_bf16` and `matmul_f32` on the shapes stoker's models run.
//!
//! `cargo run -p stoker-kernels --release --example gemm_speed [filter]`

use std::hint::black_box;
use std::time::{Duration, Instant};

use stoker_kernels::bf16;
use stoker_kernels::gemm::{Mat, MatMut, matmul_bf16, matmul_f32, native_bf16_available};
use stoker_kernels::roof;
use stoker_kernels::testing::pseudo_random;

/// How an operand is stored: row-major, or the transpose of a row-major matrix.
#[derive(Clone, Copy)]
enum Lay {
    N,
    T,
}

struct Shape {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    a: Lay,
    b: Lay,
    /// Independent products per timed run (a batched product).
    batch: usize,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "1024x256 . 256x384",
        m: 1024,
        k: 256,
        n: 384,
        a: Lay::N,
        b: Lay::N,
        batch: 1,
    },
    Shape {
        name: "3 x 1024x256 . 256x384",
        m: 1024,
        k: 256,
        n: 384,
        a: Lay::N,
        b: Lay::N,
        batch: 3,
    },
    Shape {
        name: "aT.dZ 256x1024 . 1024x384",
        m: 256,
        k: 1024,
        n: 384,
        a: Lay::T,
        b: Lay::N,
        batch: 1,
    },
    Shape {
        name: "dZ.bT 1024x384 . 384x256",
        m: 1024,
        k: 384,
        n: 256,
        a: Lay::N,
        b: Lay::T,
        batch: 1,
    },
    // The LSTM backward's recurrent product, dgates·whᵀ: through a transposed view and
    // through a row-major copy of the transpose (what the kernel reads).
    Shape {
        name: "dG.whT 256x512 . 512x128",
        m: 256,
        k: 512,
        n: 128,
        a: Lay::N,
        b: Lay::T,
        batch: 1,
    },
    Shape {
        name: "dG.wh_t 256x512 . 512x128",
        m: 256,
        k: 512,
        n: 128,
        a: Lay::N,
        b: Lay::N,
        batch: 1,
    },
    Shape {
        name: "8192x256 . 256x384",
        m: 8192,
        k: 256,
        n: 384,
        a: Lay::N,
        b: Lay::N,
        batch: 1,
    },
    Shape {
        name: "256x256 . 256x512",
        m: 256,
        k: 256,
        n: 512,
        a: Lay::N,
        b: Lay::N,
        batch: 1,
    },
    Shape {
        name: "256x135 . 135x512",
        m: 256,
        k: 135,
        n: 512,
        a: Lay::N,
        b: Lay::N,
        batch: 1,
    },
    Shape {
        name: "24576x128 . 128x512",
        m: 24576,
        k: 128,
        n: 512,
        a: Lay::N,
        b: Lay::N,
        batch: 1,
    },
    Shape {
        name: "135168x288 . 288x64",
        m: 135168,
        k: 288,
        n: 64,
        a: Lay::N,
        b: Lay::N,
        batch: 1,
    },
    Shape {
        name: "512x3840 . 3840x128",
        m: 512,
        k: 3840,
        n: 128,
        a: Lay::N,
        b: Lay::N,
        batch: 1,
    },
    Shape {
        name: "1024x384 . 384x1",
        m: 1024,
        k: 384,
        n: 1,
        a: Lay::N,
        b: Lay::N,
        batch: 1,
    },
    Shape {
        name: "7x5 . 5x3",
        m: 7,
        k: 5,
        n: 3,
        a: Lay::N,
        b: Lay::N,
        batch: 1,
    },
];

/// A rows x cols view over `d`, stored as given.
fn view<T>(d: &[T], rows: usize, cols: usize, lay: Lay) -> Mat<'_, T> {
    match lay {
        Lay::N => Mat::row_major(d, rows, cols),
        Lay::T => Mat::row_major(d, cols, rows).t(),
    }
}

/// (Median, best) seconds per call of `f`, after warming up, over enough runs for ~0.3 s.
/// The best run shows the kernel's speed when the machine is shared with other work.
fn time(mut f: impl FnMut()) -> (f64, f64) {
    let start = Instant::now();
    let mut warm = 0;
    while warm < 3 || start.elapsed() < Duration::from_millis(50) {
        f();
        warm += 1;
    }
    let per = start.elapsed().as_secs_f64() / warm as f64;
    let runs = ((0.3 / per) as usize).clamp(5, 2000);
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[runs / 2], t[0])
}

/// `time` of c_i = a_i·b_i for every product of the shape's batch.
fn time_batch<T>(
    s: &Shape,
    a: &[Vec<T>],
    b: &[Vec<T>],
    c: &mut [Vec<f32>],
    matmul: fn(MatMut<f32>, Mat<T>, Mat<T>, bool),
) -> (f64, f64) {
    let (m, k, n) = (s.m, s.k, s.n);
    time(|| {
        for i in 0..s.batch {
            let (a, b) = (view(&a[i], m, k, s.a), view(&b[i], k, n, s.b));
            matmul(
                MatMut::row_major(&mut c[i], m, n),
                black_box(a),
                black_box(b),
                false,
            );
        }
        black_box(&c);
    })
}

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    println!(
        "native bf16 kernel: {}, rayon threads: {}",
        native_bf16_available(),
        rayon::current_num_threads()
    );
    // The roof in this run: the single-thread peaks × the threads the products use (an upper
    // bound: with `../shared/tools/peak.c` two threads measured 2–3 % (f32) and 7–8 % (bf16)
    // under twice one on the 2026-12-03 host).
    let threads = roof::product_threads() as f64;
    let (peak16, peak32) = (
        roof::bf16_dot_peak_gflops(20_000_000) * threads,
        roof::fma_peak_gflops(20_000_000) * threads,
    );
    println!(
        "peak measured now ({threads} thread(s)): bf16 dot {peak16:.1} GFLOP/s, f32 FMA {peak32:.1} GFLOP/s"
    );
    println!("GFLOP/s, median (best) of the timed runs, and the median's share of the peak");
    println!(
        "{:<28} {:>22} {:>22} {:>7}",
        "shape (M x K . K x N)", "bf16", "f32", "ratio"
    );
    let share = |g: f64, peak: f64| {
        if peak > 0.0 {
            format!("{:>3.0} %", 100.0 * g / peak)
        } else {
            "  -  ".into()
        }
    };
    for s in SHAPES.iter().filter(|s| s.name.contains(&filter)) {
        let (m, k, n) = (s.m, s.k, s.n);
        let af: Vec<Vec<f32>> = (0..s.batch)
            .map(|i| pseudo_random(m * k, 2 * i as u32 + 1, 1.0))
            .collect();
        let bf: Vec<Vec<f32>> = (0..s.batch)
            .map(|i| pseudo_random(k * n, 2 * i as u32 + 2, 1.0))
            .collect();
        let narrow = |f: &[Vec<f32>]| -> Vec<Vec<bf16>> {
            f.iter()
                .map(|v| v.iter().map(|&x| bf16::from_f32(x)).collect())
                .collect()
        };
        let (ah, bh) = (narrow(&af), narrow(&bf));
        let mut c = vec![vec![0f32; m * n]; s.batch];
        let flops = 2.0 * (m * n * k * s.batch) as f64;
        let t16 = time_batch(s, &ah, &bh, &mut c, matmul_bf16);
        let t32 = time_batch(s, &af, &bf, &mut c, matmul_f32);
        let g = |t: f64| flops / t / 1e9;
        println!(
            "{:<28} {:>7.1} ({:>6.1}) {} {:>7.1} ({:>6.1}) {} {:>6.2}x",
            s.name,
            g(t16.0),
            g(t16.1),
            share(g(t16.0), peak16),
            g(t32.0),
            g(t32.1),
            share(g(t32.0), peak32),
            t32.0 / t16.0
        );
    }
}
