//! Every public product and kernel refuses operands whose lengths do not fit the shape it is
//! given, with a panic naming the operand (as slice indexing does): never a write or read
//! outside a slice, whatever the sizes, including sizes whose products overflow.

use std::panic::{AssertUnwindSafe, catch_unwind};

use stoker_kernels::adam::{AdamStep, adam_step};
use stoker_kernels::bf16;
use stoker_kernels::conv::{ConvShape, conv2d_backward, conv2d_forward};
use stoker_kernels::dense::{Activation, DenseShape, dense_backward, dense_forward};
use stoker_kernels::gemm::{Mat, MatMut, matmul_bf16, matmul_f32, matmul_f32_serial};
use stoker_kernels::lstm::{LstmWeights, MatmulType, lstm_forward};
use stoker_kernels::pool::{max_pool2x2_backward, max_pool2x2_forward};

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn assert_panics_with(needle: &str, f: impl FnOnce()) {
    let msg = panic_message(f);
    assert!(msg.contains(needle), "panic {msg:?} lacks {needle:?}");
}

#[test]
fn views_are_checked_when_built() {
    let data = [0f32; 12];
    assert_panics_with("exceeds its 12 elements", || {
        Mat::row_major(&data, 4, 4);
    });
    assert_panics_with("exceeds its 12 elements", || {
        Mat::strided(&data, 3, 3, 5, 1);
    });
    // Sizes whose product wraps to something small in release arithmetic.
    assert_panics_with("exceeds its 12 elements", || {
        Mat::row_major(&data, 1 << 62, 4);
    });
    assert_panics_with("exceeds its 12 elements", || {
        Mat::strided(&data, 2, 2, usize::MAX / 2, 1);
    });
    assert_panics_with("exceed isize::MAX", || {
        Mat::strided(&data, 1, 1, usize::MAX, 1);
    });
    let mut out = [0f32; 6];
    assert_panics_with("exceeds its 6 elements", || {
        MatMut::row_major(&mut out, 3, 3);
    });
    assert_panics_with("exceeds its 6 elements", || {
        MatMut::row_major(&mut out, 1 << 63, 2);
    });
    // Sub-views stay inside their view.
    let m = Mat::strided(&data, 3, 4, 4, 1);
    assert_eq!(m.block(1, 2, 1, 3).at(1, 2), data[2 * 4 + 3]);
    assert_panics_with("outside 3 x 4", || {
        m.block(2, 2, 0, 1);
    });
    assert_panics_with("outside 3 x 4", || {
        m.block(0, 1, usize::MAX, 2);
    });
    assert_panics_with("outside 3 x 4", || {
        m.at(3, 0);
    });
}

#[test]
fn products_check_their_shapes() {
    let (a, b) = ([1f32; 6], [1f32; 6]);
    let mut c = [0f32; 9];
    assert_panics_with("output shape", || {
        matmul_f32(
            MatMut::row_major(&mut c, 3, 3),
            Mat::row_major(&a, 2, 3),
            Mat::row_major(&b, 3, 2),
            false,
        )
    });
    assert_panics_with("inner dimensions", || {
        matmul_f32_serial(
            MatMut::row_major(&mut c, 2, 2),
            Mat::row_major(&a, 2, 3),
            Mat::row_major(&b, 2, 3),
            false,
        )
    });
    let (ah, bh) = ([bf16::ONE; 6], [bf16::ONE; 6]);
    assert_panics_with("output shape", || {
        matmul_bf16(
            MatMut::row_major(&mut c, 1, 2),
            Mat::row_major(&ah, 2, 3),
            Mat::row_major(&bh, 3, 2),
            false,
        )
    });
    // A longer output slice is fine (its tail is untouched), as are transposed operands.
    let mut c = [7f32; 5];
    matmul_f32(
        MatMut::row_major(&mut c, 2, 2),
        Mat::row_major(&a, 3, 2).t(),
        Mat::row_major(&b, 3, 2),
        false,
    );
    assert_eq!(c, [3.0, 3.0, 3.0, 3.0, 7.0]);
}

#[test]
fn layers_check_operand_lengths() {
    let s = DenseShape {
        groups: 2,
        rows: 3,
        inputs: 4,
        outputs: 5,
    };
    let (x, w, b) = (vec![0f32; 24], vec![0f32; 40], vec![0f32; 10]);
    assert_panics_with("dense: w must be", || {
        dense_forward(&x, &w[1..], &b, s, Activation::Tanh);
    });
    let y = dense_forward(&x, &w, &b, s, Activation::Tanh);
    assert_panics_with("dy must be", || {
        dense_backward(&x, &w, &y, &y[1..], s, Activation::Tanh, true);
    });
    let huge = DenseShape {
        groups: 1 << 40,
        rows: 1 << 40,
        ..s
    };
    assert_panics_with("overflows usize", || {
        dense_forward(&x, &w, &b, huge, Activation::Identity);
    });

    assert_panics_with("x must be [planes, height, width]", || {
        max_pool2x2_forward(&x, 2, 3, 5);
    });
    let (y, arg) = max_pool2x2_forward(&x, 2, 3, 4);
    assert_panics_with("arg must be", || {
        max_pool2x2_backward(&y, &arg[1..], 2, 3, 4);
    });

    let cs = ConvShape {
        batch: 1,
        channels: 2,
        height: 3,
        width: 4,
        out_channels: 1,
        kernel: [3, 3],
        padding: [1, 1],
    };
    let cw = vec![0f32; 18];
    assert_panics_with("conv2d: x must be", || {
        conv2d_forward(&x[1..], &cw, &[0.0], cs, true);
    });
    let cy = conv2d_forward(&x, &cw, &[0.0], cs, true);
    assert_panics_with("conv2d: dy must be", || {
        conv2d_backward(&x, &cw, &cy, &cy[1..], cs, true, true);
    });
    // Sizes that wrap to the slices' lengths in release arithmetic.
    let wrapping = ConvShape {
        batch: 1 << 62,
        channels: 4,
        height: 1,
        width: 1,
        kernel: [1, 1],
        padding: [0, 0],
        out_channels: 1,
    };
    assert_panics_with("overflows usize", || {
        conv2d_forward(&[0f32; 0], &[0.0; 4], &[0.0], wrapping, false);
    });
    assert_panics_with("overflows usize", || {
        conv2d_forward(
            &[0f32; 0],
            &[0.0; 0],
            &[0.0],
            ConvShape {
                padding: [usize::MAX / 2, 0],
                ..cs
            },
            false,
        );
    });

    let lw = LstmWeights {
        wx: &[0.0; 8],
        bias: &[0.0; 8],
        wh: &[0.0; 16],
        d_in: 1,
        hidden: 2,
    };
    assert_panics_with("lstm_forward: x must be", || {
        lstm_forward(&[0.0; 5], 2, 3, &lw, MatmulType::F32, false);
    });
    assert_panics_with("lstm: wh must be", || {
        let short = LstmWeights {
            wh: &[0.0; 15],
            ..lw
        };
        lstm_forward(&[0.0; 6], 2, 3, &short, MatmulType::Bf16, false);
    });

    let mut p = vec![0f32; 4];
    let (mut m1, mut m2) = (vec![0f32; 4], vec![0f32; 3]);
    let h = AdamStep {
        lr: 1e-3,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.0,
        time: 1,
    };
    assert_panics_with("differ in length", || {
        adam_step(&mut p, &[0.0; 4], &mut m1, &mut m2, h);
    });
}
