//! A grouped dense layer and the one-output layer after it, fused:
//! out_g = act(x_g·w_g + b_g)·v_g + c_g. The ANC band networks end this way; as two layers the
//! head's forward re-reads the hidden activations, its backward writes dh = dout·vᵀ for the
//! whole batch, and the hidden layer's backward reads it back (each pass over [G, N, M]
//! values, plus their casts in bf16). Fused, each block of rows does all of it while the block
//! is in cache.

use rayon::prelude::*;

use super::{
    Activation, BlockScratch, DenseShape, GroupWeights, block_dx, block_forward, blocks,
    optional_blocks, row_blocks, sum_by_group, transposed_groups, weight_gradients,
};
use half::bf16;

use crate::activation::multiversion;
use crate::recycled::Buf;
use crate::scalar::{Scalar, round_bf16};
use crate::size::expect_len;

multiversion! {
    /// out[i] = Σ_j h[i, j]·v[j] + c over rows of `v.len()`.
    fn row_dots(out: &mut [f32], h: &[f32], v: &[f32], c: f32) {
        const LANES: usize = 16;
        for (o, row) in out.iter_mut().zip(h.chunks_exact(v.len())) {
            // Lane-wise partial sums vectorise; one running sum would not (its order is fixed).
            let mut lanes = [0f32; LANES];
            let (body, tail) = row.split_at(row.len() / LANES * LANES);
            for (hs, vs) in body.chunks_exact(LANES).zip(v.chunks_exact(LANES)) {
                for l in 0..LANES {
                    lanes[l] = hs[l].mul_add(vs[l], lanes[l]);
                }
            }
            let tail: f32 = tail.iter().zip(&v[body.len()..]).map(|(a, b)| a * b).sum();
            *o = lanes.iter().sum::<f32>() + tail + c;
        }
    }
}

/// One block of rows' operands of the head's backward: its activations h and output gradient
/// dout, the head weight v; it writes dz and adds into the block's db and dv partials. (`pub`
/// only because the multiversioned functions that take it are; the module does not export it.)
pub struct HeadBlock<'a, T> {
    h: &'a [T],
    dout: &'a [f32],
    v: &'a [f32],
    dz: &'a mut [T],
    db: &'a mut [f32],
    dv: &'a mut [f32],
}

/// One block's backward through the head and the activation, in one pass over its rows: per
/// element dz = dout[i]·v[j] ⊙ act′(h), stored through `narrow`, with db += dz and dv +=
/// h·dout[i] summed per column in row order. `h` is read once, widened on the fly (as separate
/// passes — widen h, dv, dh = dout·vᵀ, act′, db, round dz — it was read or written six times).
/// Always inlined, so each multiversioned caller compiles it for its features.
#[inline(always)]
fn head_grad_rows<T: Copy>(
    b: HeadBlock<T>,
    widen: impl Fn(T) -> f32,
    narrow: impl Fn(f32) -> T,
    grad: impl Fn(f32, f32) -> f32,
) {
    let m = b.v.len();
    let rows = b.h.chunks_exact(m).zip(b.dz.chunks_exact_mut(m));
    for ((hrow, zrow), &d) in rows.zip(b.dout) {
        let columns = zrow
            .iter_mut()
            .zip(hrow)
            .zip(b.v)
            .zip(b.db.iter_mut())
            .zip(b.dv.iter_mut());
        for ((((z, &hj), &vj), db), dv) in columns {
            let y = widen(hj);
            let g = grad(d * vj, y);
            *db += g;
            *dv = y.mul_add(d, *dv);
            *z = narrow(g);
        }
    }
}

impl<'a, T> HeadBlock<'a, T> {
    fn new(
        h: &'a [T],
        dout: &'a [f32],
        v: &'a [f32],
        dz: &'a mut [T],
        db: &'a mut [f32],
        dv: &'a mut [f32],
    ) -> Self {
        Self {
            h,
            dout,
            v,
            dz,
            db,
            dv,
        }
    }
}

/// `head_grad_rows` with the activation's derivative (through its output y) chosen once.
#[inline(always)]
fn head_grad_rows_by_act<T: Copy>(
    act: Activation,
    b: HeadBlock<T>,
    widen: impl Fn(T) -> f32,
    narrow: impl Fn(f32) -> T,
) {
    match act {
        Activation::Tanh => head_grad_rows(b, widen, narrow, |d, y| d * y.mul_add(-y, 1.0)),
        Activation::Relu => head_grad_rows(b, widen, narrow, |d, y| if y > 0.0 { d } else { 0.0 }),
        Activation::Identity => head_grad_rows(b, widen, narrow, |d, _| d),
    }
}

multiversion! {
    fn head_grads_f32(act: Activation, b: HeadBlock<'_, f32>) {
        head_grad_rows_by_act(act, b, |y| y, |g| g)
    }
}

multiversion! {
    fn head_grads_bf16(act: Activation, b: HeadBlock<'_, bf16>) {
        let widen = |y: bf16| f32::from_bits((y.to_bits() as u32) << 16);
        head_grad_rows_by_act(act, b, widen, round_bf16)
    }
}

/// The fused forward. x [G, N, K], w [G, K, M], b [G, M], v [G, M], c [G] →
/// (h = act(x·w + b) [G, N, M], which the backward reads, and out [G, N]).
pub fn dense_head_forward<T: Scalar>(
    x: &[T],
    w: &[T],
    b: &[T],
    v: &[T],
    c: &[T],
    s: DenseShape,
    act: Activation,
) -> (Vec<T>, Vec<T>) {
    s.check(x.len(), w.len(), b.len());
    check_head(v.len(), c.len(), s);
    let m = s.outputs;
    let mut h = T::zeros(s.groups * s.rows * m);
    let mut out = vec![0f32; s.groups * s.rows];
    let (bias, v, c) = (T::widen(b), T::widen(v), T::widen(c));
    let w = GroupWeights::new(w, s, false);
    let out_blocks = row_blocks(&mut out, 1, s);
    row_blocks(&mut h, m, s)
        .into_par_iter()
        .zip(out_blocks)
        .for_each_init(Vec::<f32>::new, |z, ((g, r0, hb), (_, _, ob))| {
            block_forward(z, x, &w, &bias, s, act, (g, r0), hb);
            // The head reads the unrounded f32 activations.
            let h32 = T::as_f32(hb).unwrap_or(z);
            row_dots(ob, h32, &v[g * m..(g + 1) * m], c[g]);
        });
    (h, T::narrow(out))
}

/// Gradients of the fused layer and head.
pub struct DenseHeadGrads<T> {
    /// None unless asked for.
    pub dx: Option<Vec<T>>,
    pub dw: Vec<T>,
    pub db: Vec<T>,
    pub dv: Vec<T>,
    pub dc: Vec<T>,
}

/// One block's partials: the bias, head-weight and head-bias gradients.
struct HeadPartials {
    db: Vec<f32>,
    dv: Vec<f32>,
    dc: f32,
}

/// The backward of `dense_head_forward`, from its activations `h` and the output gradient
/// `dout` [G, N]. Blocks of rows run in parallel: dh = dout·vᵀ, the head's gradients from h,
/// dz = dh ⊙ act′ (rounded once to T), and dx = dz·wᵀ when asked, all while the block is in
/// cache; then dw = xᵀ·dz. Partials are summed in block order.
#[allow(clippy::too_many_arguments)]
pub fn dense_head_backward<T: Scalar>(
    x: &[T],
    w: &[T],
    v: &[T],
    h: &[T],
    dout: &[T],
    s: DenseShape,
    act: Activation,
    need_dx: bool,
) -> DenseHeadGrads<T> {
    s.check(x.len(), w.len(), s.groups * s.outputs);
    check_head(v.len(), s.groups, s);
    let (g, n, k, m) = (s.groups, s.rows, s.inputs, s.outputs);
    expect_len(
        "dense_head_backward: h must be [groups, rows, outputs]",
        h.len(),
        &[g, n, m],
    );
    expect_len(
        "dense_head_backward: dout must be [groups, rows]",
        dout.len(),
        &[g, n],
    );
    // Every block writes its rows of dz; dw reads it, and then it goes back to the pool.
    let mut dz = Buf::<T>::take(g * n * m);
    let mut dx = T::zeros(if need_dx { g * n * k } else { 0 });
    let blocks = blocks(s);
    let dz_blocks = row_blocks(&mut dz, m, s);
    let dx_blocks = optional_blocks(&mut dx, k, s, blocks.len());
    let transposed = transposed_groups(w, s, need_dx);
    let w_t = GroupWeights::transposed(&transposed, s, need_dx);
    let v = T::widen(v);
    let partials: Vec<HeadPartials> = blocks
        .into_par_iter()
        .zip(dz_blocks)
        .zip(dx_blocks)
        .map_init(
            BlockScratch::default,
            |sc, (((g, r0, rows), (_, _, dzb)), dxb)| {
                let d = T::widen(&dout[g * n + r0..g * n + r0 + rows]);
                let vg = &v[g * m..(g + 1) * m];
                let hb = &h[(g * n + r0) * m..(g * n + r0 + rows) * m];
                let mut p = HeadPartials {
                    db: vec![0.0; m],
                    dv: vec![0.0; m],
                    dc: d.iter().sum(),
                };
                if let (Some(h), Some(dz)) = (T::as_f32(hb), T::as_f32_mut(dzb)) {
                    head_grads_f32(act, HeadBlock::new(h, &d, vg, dz, &mut p.db, &mut p.dv));
                } else if let (Some(h), Some(dz)) = (T::as_bf16(hb), T::as_bf16_mut(dzb)) {
                    head_grads_bf16(act, HeadBlock::new(h, &d, vg, dz, &mut p.db, &mut p.dv));
                } else {
                    unreachable!("the kernels' element types are f32 and bf16");
                }
                if let Some(dxb) = dxb {
                    block_dx(&mut sc.dx, dzb, (&w_t, g), s, dxb);
                }
                p
            },
        )
        .collect();
    let db = sum_by_group(partials.iter().map(|p| p.db.as_slice()), m, s);
    let dv = sum_by_group(partials.iter().map(|p| p.dv.as_slice()), m, s);
    let dc = sum_by_group(partials.iter().map(|p| std::slice::from_ref(&p.dc)), 1, s);
    DenseHeadGrads {
        dx: need_dx.then_some(dx),
        dw: T::narrow(weight_gradients(x, &dz, s)),
        db: T::narrow(db),
        dv: T::narrow(dv),
        dc: T::narrow(dc),
    }
}

/// Panics unless v is [groups, outputs] and c [groups].
fn check_head(v: usize, c: usize, s: DenseShape) {
    expect_len(
        "dense_head: v must be [groups, outputs]",
        v,
        &[s.groups, s.outputs],
    );
    expect_len("dense_head: c must be [groups]", c, &[s.groups]);
}

#[cfg(test)]
mod tests {
    use super::super::{dense_backward, dense_forward};
    use super::*;
    use crate::testing::pseudo_random;
    use half::bf16;

    /// The two layers unfused: act(x·w + b), then a one-output dense layer.
    fn unfused(
        [x, w, b, v, c]: [&[f32]; 5],
        r: &[f32],
        s: DenseShape,
        act: Activation,
    ) -> [Vec<f32>; 6] {
        let h = dense_forward(x, w, b, s, act);
        let head = DenseShape {
            inputs: s.outputs,
            outputs: 1,
            ..s
        };
        let out = dense_forward(&h, v, c, head, Activation::Identity);
        let gh = dense_backward(&h, v, &out, r, head, Activation::Identity, true);
        let g = dense_backward(x, w, &h, gh.dx.as_ref().unwrap(), s, act, true);
        [out, g.dx.unwrap(), g.dw, g.db, gh.dw, gh.db]
    }

    #[test]
    fn fused_matches_the_two_layers_unfused() {
        // Several blocks of rows, the last one short; outputs past one vector with a tail.
        let s = DenseShape {
            groups: 3,
            rows: 2 * super::super::BLOCK_ROWS + 9,
            inputs: 11,
            outputs: 37,
        };
        let x = pseudo_random(s.groups * s.rows * s.inputs, 1, 1.0);
        let w = pseudo_random(s.groups * s.inputs * s.outputs, 2, 0.5);
        let b = pseudo_random(s.groups * s.outputs, 3, 0.5);
        let v = pseudo_random(s.groups * s.outputs, 4, 0.5);
        let c = pseudo_random(s.groups, 5, 0.5);
        let r = pseudo_random(s.groups * s.rows, 6, 1.0);
        for act in [Activation::Tanh, Activation::Relu, Activation::Identity] {
            let want = unfused([&x, &w, &b, &v, &c], &r, s, act);
            let (h, out) = dense_head_forward(&x, &w, &b, &v, &c, s, act);
            let g = dense_head_backward(&x, &w, &v, &h, &r, s, act, true);
            let got = [&out, g.dx.as_ref().unwrap(), &g.dw, &g.db, &g.dv, &g.dc];
            for (which, (got, want)) in got.iter().zip(&want).enumerate() {
                assert_eq!(got.len(), want.len(), "{act:?} output {which}");
                for (i, (&a, &e)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (a - e).abs() < 1e-4 * (1.0 + e.abs()),
                        "{act:?} output {which} [{i}]: {a} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn bf16_agrees_with_f32_and_skips_dx_unless_asked() {
        let s = DenseShape {
            groups: 2,
            rows: 130,
            inputs: 20,
            outputs: 24,
        };
        // x, w, b, v, c and dout, each per group.
        let ops: Vec<Vec<f32>> = [(s.rows * s.inputs, 0.5), (s.inputs * s.outputs, 0.3)]
            .iter()
            .chain(&[(s.outputs, 0.3), (s.outputs, 0.3), (1, 0.3), (s.rows, 1.0)])
            .enumerate()
            .map(|(i, &(len, scale))| pseudo_random(s.groups * len, 10 + i as u32, scale))
            .collect();
        let low = |v: &[f32]| v.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>();
        let (x, w, b, v, c, r) = (&ops[0], &ops[1], &ops[2], &ops[3], &ops[4], &ops[5]);
        let (h32, out32) = dense_head_forward(x, w, b, v, c, s, Activation::Tanh);
        let (x16, w16, v16) = (low(x), low(w), low(v));
        let (h16, out16) =
            dense_head_forward(&x16, &w16, &low(b), &v16, &low(c), s, Activation::Tanh);
        for (a, e) in out16.iter().zip(&out32) {
            assert!((a.to_f32() - e).abs() < 3e-2, "{a} vs {e}");
        }
        let g32 = dense_head_backward(x, w, v, &h32, r, s, Activation::Tanh, false);
        let g16 = dense_head_backward(&x16, &w16, &v16, &h16, &low(r), s, Activation::Tanh, false);
        assert!(g32.dx.is_none() && g16.dx.is_none());
        for (a, e) in g16.dw.iter().zip(&g32.dw).chain(g16.dv.iter().zip(&g32.dv)) {
            assert!(
                (a.to_f32() - e).abs() < 5e-2 * (1.0 + e.abs()),
                "{a} vs {e}"
            );
        }
    }
}
