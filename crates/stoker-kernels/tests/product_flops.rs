//! The product FLOP counter: each product counts 2·m·n·k once, bf16 ones too (the portable
//! path widens to f32 and must not count twice). One test in its own binary, so no other
//! test's products run while it reads the counter.

use stoker_kernels::bf16;
use stoker_kernels::gemm::{Mat, MatMut, matmul_bf16, matmul_f32, product_flops};

#[test]
fn every_product_counts_its_flops_once() {
    let (m, k, n) = (7, 5, 3);
    let (a, b) = (vec![1.0f32; m * k], vec![0.5f32; k * n]);
    let mut c = vec![0.0f32; m * n];
    let before = product_flops();
    matmul_f32(
        MatMut::row_major(&mut c, m, n),
        Mat::row_major(&a, m, k),
        Mat::row_major(&b, k, n),
        false,
    );
    assert_eq!(product_flops() - before, 2 * 7 * 5 * 3);
    let (ah, bh): (Vec<bf16>, Vec<bf16>) = (
        a.iter().map(|&v| bf16::from_f32(v)).collect(),
        b.iter().map(|&v| bf16::from_f32(v)).collect(),
    );
    let before = product_flops();
    matmul_bf16(
        MatMut::row_major(&mut c, m, n),
        Mat::row_major(&ah, m, k),
        Mat::row_major(&bh, k, n),
        true,
    );
    assert_eq!(product_flops() - before, 2 * 7 * 5 * 3);
    assert!(c.iter().all(|&v| v == 5.0), "{c:?}");
    // An empty product sums nothing and counts nothing.
    let before = product_flops();
    matmul_f32(
        MatMut::row_major(&mut [], 0, n),
        Mat::row_major(&[], 0, k),
        Mat::row_major(&b, k, n),
        false,
    );
    assert_eq!(product_flops(), before);
}
