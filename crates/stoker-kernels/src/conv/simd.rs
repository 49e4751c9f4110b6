//! The vectorised elementwise passes.

use half::bf16;

use super::{Geom, planes_to_cols};
use crate::activation::multiversion;
use crate::scalar::round_bf16;

multiversion! {
    fn planes_to_cols_f32(planes: &[f32], cols: &mut [f32], ld: usize, g: Geom) {
        planes_to_cols(planes, cols, ld, g);
    }
}

multiversion! {
    fn planes_to_cols_bf16(planes: &[bf16], cols: &mut [bf16], ld: usize, g: Geom) {
        planes_to_cols(planes, cols, ld, g);
    }
}

multiversion! {
    /// The adjoint of im2col: dx [C, H, W] gets the sum of one image's columns of dcols
    /// [C·KH·KW, ·] (row stride `ld`) over the positions each input feeds, gathered in the
    /// bordered `planes` (scratch).
    fn col2im(dcols: &[f32], ld: usize, planes: &mut [f32], dx: &mut [f32], g: Geom) {
        let (h, w) = (g.height, g.width);
        if h * w == 0 {
            return;
        }
        let [ho, wo] = g.out;
        let wp = g.plane[1];
        let planes = &mut planes[..g.channels * g.plane_len()];
        planes.fill(0.0);
        for (row, origin) in g.patch_origins().enumerate() {
            let from = &dcols[row * ld..];
            for oh in 0..ho {
                let to = &mut planes[origin + oh * wp..][..wo];
                for (t, &v) in to.iter_mut().zip(&from[oh * wo..][..wo]) {
                    *t += v;
                }
            }
        }
        for (plane, dst) in planes.chunks_exact(g.plane_len()).zip(dx.chunks_exact_mut(h * w)) {
            for (r, row) in dst.chunks_exact_mut(w).enumerate() {
                row.copy_from_slice(&plane[g.interior(r)..][..w]);
            }
        }
    }
}

/// y [G, Cout, N] = act(z + b) of z [Cout, G·N] (Cout = bias.len()), each value through
/// `out`.
#[inline(always)]
fn bias_act<T>(z: &[f32], bias: &[f32], relu: bool, n: usize, y: &mut [T], out: impl Fn(f32) -> T) {
    let cout = bias.len();
    if cout * n == 0 {
        return;
    }
    let gn = z.len() / cout;
    for (j, yj) in y.chunks_exact_mut(cout * n).enumerate() {
        for ((yr, zr), &b) in yj.chunks_exact_mut(n).zip(z.chunks_exact(gn)).zip(bias) {
            let zr = &zr[j * n..][..n];
            if relu {
                for (o, &v) in yr.iter_mut().zip(zr) {
                    *o = out((v + b).max(0.0));
                }
            } else {
                for (o, &v) in yr.iter_mut().zip(zr) {
                    *o = out(v + b);
                }
            }
        }
    }
}

multiversion! {
    fn bias_act_f32(z: &[f32], bias: &[f32], relu: bool, n: usize, y: &mut [f32]) {
        bias_act(z, bias, relu, n, y, |v| v);
    }
}

multiversion! {
    fn bias_act_bf16(z: &[f32], bias: &[f32], relu: bool, n: usize, y: &mut [bf16]) {
        bias_act(z, bias, relu, n, y, round_bf16);
    }
}

/// dz [Cout, G·N] of dy [G, Cout, N]: `masked(dy, y)` when `relu`, else dy.
#[inline(always)]
fn gather_dz<T: Copy>(
    dy: &[T],
    y: &[T],
    dz: &mut [T],
    cout: usize,
    n: usize,
    relu: bool,
    masked: impl Fn(T, T) -> T,
) {
    if cout * n == 0 {
        return;
    }
    let gn = dz.len() / cout;
    for (j, (dyj, yj)) in dy
        .chunks_exact(cout * n)
        .zip(y.chunks_exact(cout * n))
        .enumerate()
    {
        for ((d, g), y) in dz
            .chunks_exact_mut(gn)
            .zip(dyj.chunks_exact(n))
            .zip(yj.chunks_exact(n))
        {
            let d = &mut d[j * n..][..n];
            if relu {
                for ((d, &g), &y) in d.iter_mut().zip(g).zip(y) {
                    *d = masked(g, y);
                }
            } else {
                d.copy_from_slice(g);
            }
        }
    }
}

multiversion! {
    fn gather_dz_f32(dy: &[f32], y: &[f32], dz: &mut [f32], cout: usize, n: usize, relu: bool) {
        gather_dz(dy, y, dz, cout, n, relu, |g, y| if y > 0.0 { g } else { 0.0 });
    }
}

multiversion! {
    fn gather_dz_bf16(
        dy: &[bf16], y: &[bf16], dz: &mut [bf16], cout: usize, n: usize, relu: bool
    ) {
        gather_dz(dy, y, dz, cout, n, relu, |g, y| {
            if bf16_bits_to_f32(y) > 0.0 { g } else { bf16::ZERO }
        });
    }
}

/// sums[i] += Σ_j z[i, j] for z [sums.len(), N], in f32 over 16 lanes.
#[inline(always)]
fn row_sums<T: Copy>(sums: &mut [f32], z: &[T], widen: impl Fn(T) -> f32) {
    let n = z.len() / sums.len().max(1);
    if n == 0 {
        return;
    }
    const LANES: usize = 16;
    for (acc, row) in sums.iter_mut().zip(z.chunks_exact(n)) {
        let mut lanes = [0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in chunks.by_ref() {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += widen(v);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|&v| widen(v)).sum();
        *acc += lanes.iter().sum::<f32>() + tail;
    }
}

#[inline(always)]
fn bf16_bits_to_f32(v: bf16) -> f32 {
    f32::from_bits((v.to_bits() as u32) << 16)
}

multiversion! {
    fn add_row_sums_f32(sums: &mut [f32], z: &[f32]) {
        row_sums(sums, z, |v| v);
    }
}

multiversion! {
    fn add_row_sums_bf16(sums: &mut [f32], z: &[bf16]) {
        row_sums(sums, z, bf16_bits_to_f32);
    }
}

multiversion! {
    fn add_into(dst: &mut [f32], src: &[f32]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d += v;
        }
    }
}
