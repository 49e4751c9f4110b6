use half::bf16;

use super::*;
use crate::testing::pseudo_random;

/// Direct convolution in f64: the pre-activations z [B, Cout, Ho, Wo].
fn naive_z(x: &[f64], w: &[f64], b: &[f64], s: &ConvShape) -> Vec<f64> {
    let (ho, wo) = (s.out_height(), s.out_width());
    let [kh_n, kw_n] = s.kernel;
    let [ph, pw] = s.padding;
    let (h, wd) = (s.height as isize, s.width as isize);
    let mut z = vec![0.0; s.y_len()];
    for bi in 0..s.batch {
        for co in 0..s.out_channels {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut acc = b[co];
                    for c in 0..s.channels {
                        for kh in 0..kh_n {
                            for kw in 0..kw_n {
                                let ih = (oh + kh) as isize - ph as isize;
                                let iw = (ow + kw) as isize - pw as isize;
                                if ih < 0 || iw < 0 || ih >= h || iw >= wd {
                                    continue;
                                }
                                let xi = ((bi * s.channels + c) as isize * h + ih) * wd + iw;
                                let wi = ((co * s.channels + c) * kh_n + kh) * kw_n + kw;
                                acc += x[xi as usize] * w[wi];
                            }
                        }
                    }
                    z[((bi * s.out_channels + co) * ho + oh) * wo + ow] = acc;
                }
            }
        }
    }
    z
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| v as f64).collect()
}

const SAME_3X3: ConvShape = ConvShape {
    batch: 2,
    channels: 3,
    height: 5,
    width: 4,
    out_channels: 4,
    kernel: [3, 3],
    padding: [1, 1],
};
const VALID_2X3: ConvShape = ConvShape {
    kernel: [2, 3],
    padding: [0, 0],
    ..SAME_3X3
};
/// Padding beyond "same": the output is larger than the input, some rows all padding.
const WIDE_PAD: ConvShape = ConvShape {
    kernel: [3, 2],
    padding: [2, 1],
    ..SAME_3X3
};
/// Padding beyond KH − 1: the adjoint crops dz, and whole output rows see only padding.
const OVER_PAD: ConvShape = ConvShape {
    kernel: [2, 2],
    padding: [2, 3],
    ..SAME_3X3
};
/// Rows 2 wide against a 7-wide kernel: 16 outputs span 8 plane rows, 32 span 16, more than
/// the AVX-512 gather's two vectors, so im2col takes the portable path.
const WIDE_KERNEL: ConvShape = ConvShape {
    height: 9,
    width: 2,
    kernel: [2, 7],
    padding: [1, 3],
    ..SAME_3X3
};
const SHAPES: [ConvShape; 5] = [SAME_3X3, VALID_2X3, WIDE_PAD, OVER_PAD, WIDE_KERNEL];

#[test]
fn conv_forward_matches_direct_convolution() {
    for (i, s) in SHAPES.into_iter().enumerate() {
        let seed = 10 * i as u32;
        let x = pseudo_random(s.x_len(), seed + 1, 0.5);
        let w = pseudo_random(s.w_len(), seed + 2, 0.5);
        let b = pseudo_random(s.out_channels, seed + 3, 0.5);
        let z = naive_z(&f64s(&x), &f64s(&w), &f64s(&b), &s);
        assert_eq!(s.y_len(), z.len());
        for relu in [false, true] {
            let y = conv2d_forward(&x, &w, &b, s, relu);
            assert_eq!(y.len(), z.len());
            for (j, (&got, &z)) in y.iter().zip(&z).enumerate() {
                let want = if relu { z.max(0.0) } else { z };
                assert!(
                    (got as f64 - want).abs() < 1e-5,
                    "{s:?} relu={relu} y[{j}] = {got}, want {want}"
                );
            }
        }
    }
}

#[test]
fn conv_forward_matches_direct_convolution_on_a_large_batch() {
    // Enough images that rayon splits the batch over workers; not a multiple of FWD_GROUP,
    // so the last group is partial.
    let s = ConvShape {
        batch: 67,
        channels: 5,
        height: 9,
        width: 7,
        out_channels: 6,
        kernel: [3, 3],
        padding: [1, 1],
    };
    let x = pseudo_random(s.x_len(), 91, 0.5);
    let w = pseudo_random(s.w_len(), 92, 0.5);
    let b = pseudo_random(s.out_channels, 93, 0.5);
    let z = naive_z(&f64s(&x), &f64s(&w), &f64s(&b), &s);
    let y = conv2d_forward(&x, &w, &b, s, true);
    for (&got, &z) in y.iter().zip(&z) {
        assert!((got as f64 - z.max(0.0)).abs() < 1e-5);
    }
}

/// L = Σ r ⊙ act(z) in f64, and the ReLU pattern (z > 0) it went through.
fn loss(x: &[f32], w: &[f32], b: &[f32], r: &[f32], s: &ConvShape, relu: bool) -> (f64, Vec<bool>) {
    let z = naive_z(&f64s(x), &f64s(w), &f64s(b), s);
    let total = z
        .iter()
        .zip(r)
        .map(|(&z, &r)| r as f64 * if relu { z.max(0.0) } else { z })
        .sum();
    (total, z.iter().map(|&z| z > 0.0).collect())
}

#[test]
fn conv_backward_matches_finite_differences() {
    for (i, s) in SHAPES.into_iter().enumerate() {
        let seed = 100 + 10 * i as u32;
        let x = pseudo_random(s.x_len(), seed + 1, 0.5);
        let w = pseudo_random(s.w_len(), seed + 2, 0.5);
        let b = pseudo_random(s.out_channels, seed + 3, 0.5);
        let r = pseudo_random(s.y_len(), seed + 4, 0.5);
        for relu in [false, true] {
            let y = conv2d_forward(&x, &w, &b, s, relu);
            let (base, pattern) = loss(&x, &w, &b, &r, &s, relu);
            let direct: f64 = y.iter().zip(&r).map(|(&y, &r)| y as f64 * r as f64).sum();
            assert!((direct - base).abs() < 1e-5);
            let grads = conv2d_backward(&x, &w, &y, &r, s, relu, true);
            let (mut checked, mut skipped) = (0, 0);
            let mut check = |which: usize, got: &[f32]| {
                assert_eq!(got.len(), [x.len(), w.len(), b.len()][which]);
                for (j, &got) in got.iter().enumerate() {
                    let eps = 1e-3;
                    let mut args = [x.clone(), w.clone(), b.clone()];
                    args[which][j] += eps;
                    let (up, up_pattern) = loss(&args[0], &args[1], &args[2], &r, &s, relu);
                    args[which][j] -= 2.0 * eps;
                    let (down, down_pattern) = loss(&args[0], &args[1], &args[2], &r, &s, relu);
                    if relu && (up_pattern != pattern || down_pattern != pattern) {
                        // The step crossed the ReLU's kink: the difference is not the slope.
                        skipped += 1;
                        continue;
                    }
                    checked += 1;
                    let want = (up - down) / (2.0 * eps as f64);
                    assert!(
                        (got as f64 - want).abs() < 1e-3,
                        "{s:?} relu={relu} arg {which} [{j}]: {got} vs {want}"
                    );
                }
            };
            check(0, grads.dx.as_deref().unwrap());
            check(1, &grads.dw);
            check(2, &grads.db);
            assert!(
                skipped * 3 <= checked,
                "{s:?}: skipped {skipped} of {}",
                checked + skipped
            );
            // Without dx: the same dw and db, no dx.
            let no_dx = conv2d_backward(&x, &w, &y, &r, s, relu, false);
            assert!(no_dx.dx.is_none());
            for (a, b) in no_dx
                .dw
                .iter()
                .zip(&grads.dw)
                .chain(no_dx.db.iter().zip(&grads.db))
            {
                assert!((a - b).abs() < 1e-6);
            }
        }
    }
}

#[test]
fn conv_backward_relu_masks_exactly_where_the_output_is_zero() {
    // dy = 1 everywhere: with ReLU, db[co] counts the positive outputs of channel co, and dx
    // equals the no-ReLU dx of dy = (y > 0).
    let s = SAME_3X3;
    let x = pseudo_random(s.x_len(), 7, 0.5);
    let w = pseudo_random(s.w_len(), 8, 0.5);
    let b = pseudo_random(s.out_channels, 9, 0.5);
    let y = conv2d_forward(&x, &w, &b, s, true);
    assert!(y.contains(&0.0) && y.iter().any(|&v| v > 0.0));
    let ones = vec![1f32; y.len()];
    let g = conv2d_backward(&x, &w, &y, &ones, s, true, true);
    let mask: Vec<f32> = y.iter().map(|&v| (v > 0.0) as u8 as f32).collect();
    let plain = conv2d_backward(&x, &w, &y, &mask, s, false, true);
    let per = s.pixels();
    for co in 0..s.out_channels {
        let count = (0..s.batch)
            .map(|bi| {
                mask[(bi * s.out_channels + co) * per..][..per]
                    .iter()
                    .sum::<f32>()
            })
            .sum::<f32>();
        assert_eq!(g.db[co], count);
    }
    // dw sums over images in whatever split rayon picked: equal up to summation order.
    for (a, b) in g.dw.iter().zip(&plain.dw) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    assert_eq!(g.dx, plain.dx);
}

/// A batch large enough for the threads to split, its forward and an output gradient.
struct LargeBatch {
    s: ConvShape,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    y: Vec<f32>,
    dy: Vec<f32>,
}

fn large_batch(batch: usize, seed: u32) -> LargeBatch {
    let s = ConvShape {
        batch,
        channels: 4,
        height: 6,
        width: 5,
        out_channels: 3,
        kernel: [3, 3],
        padding: [1, 1],
    };
    let x = pseudo_random(s.x_len(), seed, 0.5);
    let w = pseudo_random(s.w_len(), seed + 1, 0.5);
    let b = pseudo_random(s.out_channels, seed + 2, 0.5);
    let y = conv2d_forward(&x, &w, &b, s, true);
    let dy = pseudo_random(y.len(), seed + 3, 0.5);
    LargeBatch { s, x, w, b, y, dy }
}

#[test]
fn conv_backward_is_bitwise_reproducible() {
    // Resumed training must match an uninterrupted run bit for bit, whatever the threads did.
    let LargeBatch { s, x, w, y, dy, .. } = large_batch(67, 51);
    let first = conv2d_backward(&x, &w, &y, &dy, s, true, true);
    for _ in 0..20 {
        let again = conv2d_backward(&x, &w, &y, &dy, s, true, true);
        assert_eq!(again.dw, first.dw);
        assert_eq!(again.db, first.db);
        assert_eq!(again.dx, first.dx);
    }
}

#[test]
fn conv_backward_sums_over_a_large_batch() {
    // Per-group partial dw / db summed correctly: the gradient of a batch is the sum of
    // the gradients of its images. 53 images: the last GROUP and DX_GROUP are partial.
    let LargeBatch { s, x, w, b, y, dy } = large_batch(53, 31);
    let all = conv2d_backward(&x, &w, &y, &dy, s, true, true);
    let one = ConvShape { batch: 1, ..s };
    let (xi, yi) = (s.image_len(), s.out_channels * s.pixels());
    let mut dw = vec![0f64; w.len()];
    let mut db = vec![0f64; b.len()];
    for bi in 0..s.batch {
        let g = conv2d_backward(
            &x[bi * xi..][..xi],
            &w,
            &y[bi * yi..][..yi],
            &dy[bi * yi..][..yi],
            one,
            true,
            true,
        );
        let dx = g.dx.unwrap();
        assert_eq!(&all.dx.as_ref().unwrap()[bi * xi..][..xi], &dx[..]);
        dw.iter_mut().zip(&g.dw).for_each(|(a, &v)| *a += v as f64);
        db.iter_mut().zip(&g.db).for_each(|(a, &v)| *a += v as f64);
    }
    for (&got, &want) in all.dw.iter().zip(&dw).chain(all.db.iter().zip(&db)) {
        assert!(
            (got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
            "{got} vs {want}"
        );
    }
}

#[test]
fn conv_bf16_agrees_with_f32_to_bf16_precision() {
    let s = ConvShape {
        batch: 5,
        channels: 8,
        height: 7,
        width: 6,
        out_channels: 6,
        kernel: [3, 3],
        padding: [1, 1],
    };
    let low = |v: &[f32]| v.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>();
    let high = |v: &[bf16]| v.iter().map(|v| v.to_f32()).collect::<Vec<_>>();
    // Inputs already on the bf16 grid, so the two runs differ only by rounding inside.
    let x = high(&low(&pseudo_random(s.x_len(), 41, 0.5)));
    let w = high(&low(&pseudo_random(s.w_len(), 42, 0.5)));
    let b = high(&low(&pseudo_random(s.out_channels, 43, 0.5)));
    let dy = high(&low(&pseudo_random(s.y_len(), 44, 0.5)));
    for relu in [false, true] {
        let y32 = conv2d_forward(&x, &w, &b, s, relu);
        let y16 = conv2d_forward(&low(&x), &low(&w), &low(&b), s, relu);
        let scale = y32.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in y32.iter().zip(&y16) {
            assert!(
                (a - b.to_f32()).abs() <= 4e-3 * scale.max(a.abs()),
                "{a} vs {b}"
            );
        }
        // The same y for both (y32's ReLU pattern), so only the arithmetic differs.
        let g32 = conv2d_backward(&x, &w, &y32, &dy, s, relu, true);
        let g16 = conv2d_backward(&low(&x), &low(&w), &low(&y32), &low(&dy), s, relu, true);
        let pairs = [
            (g32.dx.unwrap(), high(&g16.dx.unwrap())),
            (g32.dw, high(&g16.dw)),
            (g32.db, high(&g16.db)),
        ];
        for (which, (a, b)) in pairs.iter().enumerate() {
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (j, (a, b)) in a.iter().zip(b).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-2 * scale,
                    "relu={relu} grad {which} [{j}]: {a} vs {b} (scale {scale})"
                );
            }
        }
    }
}

/// f32 bits of T values (bf16 widens exactly), for bit-for-bit comparisons.
fn bits<T: Scalar>(v: &[T]) -> Vec<u32> {
    T::widen(v).iter().map(|v| v.to_bits()).collect()
}

#[test]
fn conv_backward_is_bitwise_independent_of_the_thread_count() {
    // 37 images (two full groups and a partial one), and products big enough for
    // matmul_bf16 to split them over threads.
    let s = ConvShape {
        batch: 37,
        channels: 16,
        height: 12,
        width: 10,
        out_channels: 32,
        kernel: [3, 3],
        padding: [1, 1],
    };
    let x = pseudo_random(s.x_len(), 81, 0.5);
    let w = pseudo_random(s.w_len(), 82, 0.5);
    let b = pseudo_random(s.out_channels, 83, 0.5);
    let y = conv2d_forward(&x, &w, &b, s, true);
    let dy = pseudo_random(y.len(), 84, 0.5);
    fn check<T: Scalar>(x: &[T], w: &[T], y: &[T], dy: &[T], s: ConvShape) {
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let g = pool.install(|| conv2d_backward(x, w, y, dy, s, true, true));
            (bits(&g.dw), bits(&g.db), bits(&g.dx.unwrap()))
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "{threads} threads");
        }
    }
    check(&x, &w, &y, &dy, s);
    let low = |v: &[f32]| bf16::narrow(v.to_vec());
    check(&low(&x), &low(&w), &low(&y), &low(&dy), s);
}

/// im2col of `s.batch` images into a group with room for one more, through the AVX-512
/// gather (when it plans the shape) and through the portable copies: the same columns.
/// Returns whether the gather ran.
fn im2col_paths_agree<T: Scalar>(s: &ConvShape) -> bool {
    let x = T::narrow(pseudo_random(s.x_len(), 71, 0.5));
    let mut fast = Im2col::<T>::new(s, s.batch + 1);
    let mut portable = Im2col::<T>::new(s, s.batch + 1);
    portable.gather = None;
    let gathered = fast.gather.is_some();
    let (a, b) = (fast.run(&x, s.batch), portable.run(&x, s.batch));
    assert_eq!((a.rows(), a.cols()), (b.rows(), b.cols()));
    for i in 0..a.rows() {
        let row = |m: &Mat<T>| bits(&(0..m.cols()).map(|j| m.at(i, j)).collect::<Vec<_>>());
        assert_eq!(row(&a), row(&b), "{s:?} row {i}");
    }
    gathered
}

#[test]
fn conv_avx512_im2col_and_col2im_match_the_portable_loops() {
    if !avx512::available() {
        eprintln!("skipped: this CPU lacks AVX-512, only the portable loops run");
        return;
    }
    // The test shapes, plus rows wider than one 16-lane stretch of col2im.
    let wide = ConvShape {
        batch: 3,
        channels: 3,
        height: 4,
        width: 37,
        out_channels: 2,
        kernel: [3, 5],
        padding: [1, 2],
    };
    let shapes = SHAPES.into_iter().map(|s| ConvShape { batch: 3, ..s });
    for s in shapes.chain([
        wide,
        ConvShape {
            padding: [0, 0],
            ..wide
        },
    ]) {
        let planned = s.kernel != WIDE_KERNEL.kernel;
        assert_eq!(im2col_paths_agree::<f32>(&s), planned, "{s:?}");
        assert_eq!(im2col_paths_agree::<bf16>(&s), planned, "{s:?}");
        // col2im of the second image of a dcols with row stride ld: the portable sums bit
        // for bit (the same order), and those rounded once for bf16.
        let g = Geom::new(&s);
        let (n, ld) = (g.pixels(), 3 * g.pixels() + 5);
        let dcols = pseudo_random(g.rows() * ld, 72, 0.5);
        let mut want = vec![0f32; s.image_len()];
        let mut planes = vec![0f32; g.planes_len()];
        simd::col2im(&dcols[n..], ld, &mut planes, &mut want, g);
        let plan = avx512::Scatter::new(&g).unwrap();
        let mut got = vec![f32::NAN; s.image_len()];
        assert!(plan.col2im(&dcols[n..], ld, &mut got, g));
        assert_eq!(bits(&got), bits(&want), "{s:?}");
        let mut got16 = vec![bf16::NAN; s.image_len()];
        assert!(plan.col2im(&dcols[n..], ld, &mut got16, g));
        assert_eq!(bits(&got16), bits(&bf16::narrow(want)), "{s:?}");
    }
}

#[test]
fn conv_avx512_col2im_rounds_to_bf16_like_round_bf16() {
    if !avx512::available() {
        eprintln!("skipped: this CPU lacks AVX-512");
        return;
    }
    // A 1x1 kernel: col2im adds each value of dcols to zero and rounds it.
    let s = ConvShape {
        batch: 1,
        channels: 2,
        height: 3,
        width: 20,
        out_channels: 1,
        kernel: [1, 1],
        padding: [0, 0],
    };
    let g = Geom::new(&s);
    let mut dcols = pseudo_random(s.image_len(), 73, 1e3);
    let special = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-40,
        -1e-40,
        // Ties: to even downwards, and upwards from an odd bf16.
        f32::from_bits(0x3f80_8000),
        f32::from_bits(0x3f81_8000),
        f32::from_bits(0x7f7f_ffff),
        f32::from_bits(0x7fc0_0001),
    ];
    dcols[..special.len()].copy_from_slice(&special);
    let plan = avx512::Scatter::new(&g).unwrap();
    let mut got = vec![bf16::ZERO; s.image_len()];
    assert!(plan.col2im(&dcols, g.pixels(), &mut got, g));
    for (v, got) in dcols.iter().zip(&got) {
        let want = crate::scalar::round_bf16(0.0 + *v);
        assert_eq!(got.to_bits(), want.to_bits(), "{v:e} ({:#x})", v.to_bits());
    }
}
