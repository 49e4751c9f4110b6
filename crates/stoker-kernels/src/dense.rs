//! A grouped dense layer with its activation fused: y_g = act(x_g·w_g + b_g) for each group g
//! (the bands of the ANC model), and its backward. The matmuls accumulate in f32 whatever the
//! element type; bias, activation and its derivative run in f32 in one vectorised pass, on
//! blocks of rows in parallel while each block's product is still in cache.

use half::bf16;
use rayon::prelude::*;

mod head;
pub use head::{DenseHeadGrads, dense_head_backward, dense_head_forward};

use crate::activation::{multiversion, tanh};
use crate::gemm::{Mat, MatMut, transposed};
use crate::recycled::Buf;
use crate::scalar::{Scalar, round_bf16};
use crate::size::expect_len;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Tanh,
    Relu,
}

impl Activation {
    /// A plain code, for passing through tensor-library op signatures.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Tanh,
            2 => Self::Relu,
            _ => Self::Identity,
        }
    }
}

/// Sizes of a grouped dense layer: `groups` × ([rows, inputs] · [inputs, outputs]).
#[derive(Debug, Clone, Copy)]
pub struct DenseShape {
    pub groups: usize,
    pub rows: usize,
    pub inputs: usize,
    pub outputs: usize,
}

impl DenseShape {
    /// Panics unless x, w and b have this shape's lengths (sizes computed without overflow).
    fn check(&self, x: usize, w: usize, b: usize) {
        let [g, n, k, m] = [self.groups, self.rows, self.inputs, self.outputs];
        expect_len("dense: x must be [groups, rows, inputs]", x, &[g, n, k]);
        expect_len("dense: w must be [groups, inputs, outputs]", w, &[g, k, m]);
        expect_len("dense: b must be [groups, outputs]", b, &[g, m]);
    }

    fn x(&self, g: usize) -> std::ops::Range<usize> {
        let len = self.rows * self.inputs;
        g * len..(g + 1) * len
    }
    fn w(&self, g: usize) -> std::ops::Range<usize> {
        let len = self.inputs * self.outputs;
        g * len..(g + 1) * len
    }
    fn y(&self, g: usize) -> std::ops::Range<usize> {
        let len = self.rows * self.outputs;
        g * len..(g + 1) * len
    }
    fn b(&self, g: usize) -> std::ops::Range<usize> {
        g * self.outputs..(g + 1) * self.outputs
    }
}

/// Rows per task: a block's f32 product (≤ 112 × 384 floats here) stays in L2 between the
/// matmul and its epilogue, and the ANC model's 3 × 1 279 rows make ~36 tasks to balance over
/// the threads. A multiple of the bf16 kernel's 14-row tile.
const BLOCK_ROWS: usize = 112;

/// `out` ([groups, rows, width]) cut into blocks of at most `BLOCK_ROWS` rows, none across a
/// group: (group, first row, block).
fn row_blocks<U>(out: &mut [U], width: usize, s: DenseShape) -> Vec<(usize, usize, &mut [U])> {
    if out.is_empty() || width == 0 {
        return Vec::new();
    }
    out.chunks_mut(s.rows * width)
        .enumerate()
        .flat_map(|(g, group)| {
            group
                .chunks_mut(BLOCK_ROWS * width)
                .enumerate()
                .map(move |(i, block)| (g, i * BLOCK_ROWS, block))
        })
        .collect()
}

/// Each group's weight (or its transpose) as a right operand, packed once for all the group's
/// row blocks: each block's product would otherwise pack the whole weight again (36 times a
/// forward on the ANC reference, where that packing took ~4 % of bf16 inference). A weight of
/// one column stays a plain view: products with it run as dot products, with no packing.
enum GroupWeights<'a, T: Scalar> {
    Packed(Vec<T::Packed<'a>>),
    Views(Vec<Mat<'a, T>>),
}

impl<'a, T: Scalar> GroupWeights<'a, T> {
    /// Every group's w ([inputs, outputs]) from `w`, or with `transposed` its wᵀ ([outputs,
    /// inputs]), which `w` then holds.
    fn new(w: &'a [T], s: DenseShape, transposed: bool) -> Self {
        let (rows, cols) = if transposed {
            (s.outputs, s.inputs)
        } else {
            (s.inputs, s.outputs)
        };
        let views: Vec<Mat<'a, T>> = (0..s.groups)
            .map(|g| Mat::row_major(&w[s.w(g)], rows, cols))
            .collect();
        if cols > 1 && rows > 0 {
            Self::Packed(views.into_par_iter().map(T::pack).collect())
        } else {
            Self::Views(views)
        }
    }

    /// For dx = dz·wᵀ: every group's wᵀ from `transposed_groups` when dx is asked for; else no
    /// groups.
    fn transposed(w_t: &'a [T], s: DenseShape, need_dx: bool) -> Self {
        if need_dx {
            Self::new(w_t, s, true)
        } else {
            Self::Views(Vec::new())
        }
    }

    /// c = a·w_g, on the calling thread.
    fn product(&self, g: usize, c: MatMut<f32>, a: Mat<T>) {
        match self {
            Self::Packed(p) => T::matmul_packed_serial(c, a, &p[g], false),
            Self::Views(v) => T::matmul_serial(c, a, v[g], false),
        }
    }
}

/// act(z + bias) in place, bias added to every row. Always inlined, so that it compiles with
/// the target features of each multiversioned caller below.
#[inline(always)]
fn add_bias_then(z: &mut [f32], bias: &[f32], act: impl Fn(f32) -> f32) {
    for row in z.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = act(*v + b);
        }
    }
}

/// `add_bias_then`, the results also rounded into `out` in the same pass (the bf16 forward
/// keeps both: the head reads the f32 values, the tape the bf16 ones).
#[inline(always)]
fn add_bias_then_narrow(z: &mut [f32], bias: &[f32], out: &mut [bf16], act: impl Fn(f32) -> f32) {
    for (row, out_row) in z
        .chunks_exact_mut(bias.len())
        .zip(out.chunks_exact_mut(bias.len()))
    {
        for ((v, o), &b) in row.iter_mut().zip(out_row).zip(bias) {
            *v = act(*v + b);
            *o = round_bf16(*v);
        }
    }
}

multiversion! {
    fn add_bias_act_narrow(act: Activation, z: &mut [f32], bias: &[f32], out: &mut [bf16]) {
        match act {
            Activation::Tanh => add_bias_then_narrow(z, bias, out, tanh),
            Activation::Relu => add_bias_then_narrow(z, bias, out, |v| v.max(0.0)),
            Activation::Identity => add_bias_then_narrow(z, bias, out, |v| v),
        }
    }
}

multiversion! {
    fn add_bias_tanh(z: &mut [f32], bias: &[f32]) {
        add_bias_then(z, bias, tanh)
    }
}

multiversion! {
    fn add_bias_relu(z: &mut [f32], bias: &[f32]) {
        add_bias_then(z, bias, |v| v.max(0.0))
    }
}

multiversion! {
    fn add_bias(z: &mut [f32], bias: &[f32]) {
        add_bias_then(z, bias, |v| v)
    }
}

multiversion! {
    /// dz = dy where the ReLU passed (y > 0), else 0.
    fn relu_grad(dz: &mut [f32], y: &[f32]) {
        for (d, &y) in dz.iter_mut().zip(y) {
            *d = if y > 0.0 { *d } else { 0.0 };
        }
    }
}

multiversion! {
    /// dz = dy ⊙ (1 − y²), the tanh derivative through its output.
    fn tanh_grad(dz: &mut [f32], y: &[f32]) {
        for (d, &y) in dz.iter_mut().zip(y) {
            *d *= y.mul_add(-y, 1.0);
        }
    }
}

multiversion! {
    /// sums[j] += Σ_i z[i, j] over rows of `sums.len()`.
    fn add_column_sums(sums: &mut [f32], z: &[f32]) {
        for row in z.chunks_exact(sums.len()) {
            for (acc, &d) in sums.iter_mut().zip(row) {
                *acc += d;
            }
        }
    }
}

/// y = act(x·w + b) per group. x [G, N, K], w [G, K, M], b [G, M] → y [G, N, M].
///
/// Blocks of rows run in parallel, each one matmul and its bias + activation while the block
/// is in cache, rounded once into y.
pub fn dense_forward<T: Scalar>(
    x: &[T],
    w: &[T],
    b: &[T],
    s: DenseShape,
    act: Activation,
) -> Vec<T> {
    s.check(x.len(), w.len(), b.len());
    let mut y = T::zeros(s.groups * s.rows * s.outputs);
    let bias = T::widen(b);
    let w = GroupWeights::new(w, s, false);
    row_blocks(&mut y, s.outputs, s)
        .into_par_iter()
        .for_each_init(Vec::<f32>::new, |z, (g, r0, yb)| {
            block_forward(z, x, &w, &bias, s, act, (g, r0), yb);
        });
    y
}

/// One block of `dense_forward`: act(x·w + b) for the rows of group `g` from `r0` into `yb`,
/// computed in f32 — in `yb` itself when T is f32, else in `z`, then rounded into `yb`.
#[allow(clippy::too_many_arguments)]
fn block_forward<T: Scalar>(
    z: &mut Vec<f32>,
    x: &[T],
    w: &GroupWeights<T>,
    bias: &[f32],
    s: DenseShape,
    act: Activation,
    (g, r0): (usize, usize),
    yb: &mut [T],
) {
    let (k, m) = (s.inputs, s.outputs);
    let rows = yb.len() / m;
    let xb = Mat::row_major(&x[s.x(g)][r0 * k..][..rows * k], rows, k);
    let bias = &bias[s.b(g)];
    let epilogue = |z: &mut [f32]| match act {
        Activation::Tanh => add_bias_tanh(z, bias),
        Activation::Relu => add_bias_relu(z, bias),
        Activation::Identity => add_bias(z, bias),
    };
    match T::as_f32_mut(yb) {
        Some(y32) => {
            w.product(g, MatMut::row_major(y32, rows, m), xb);
            epilogue(y32);
        }
        None => {
            z.resize(yb.len(), 0.0);
            w.product(g, MatMut::row_major(z, rows, m), xb);
            let y16 = T::as_bf16_mut(yb).expect("the kernels' element types are f32 and bf16");
            add_bias_act_narrow(act, z, bias, y16);
        }
    }
}

/// Gradients of a grouped dense layer.
pub struct DenseGrads<T> {
    /// None unless asked for (the ANC model's inputs are data, not parameters).
    pub dx: Option<Vec<T>>,
    pub dw: Vec<T>,
    pub db: Vec<T>,
}

/// One backward task's f32 scratch: a block of dz, and of y for the activation's derivative.
#[derive(Default)]
struct BlockScratch {
    dz: Vec<f32>,
    y: Vec<f32>,
    dx: Vec<f32>,
}

/// What every block of the backward reads.
struct BackwardInputs<'a, 'w, T: Scalar> {
    y: &'a [T],
    dy: &'a [T],
    /// wᵀ of every group ([groups, outputs, inputs]); no groups without dx.
    w_t: &'a GroupWeights<'w, T>,
    s: DenseShape,
    act: Activation,
}

/// dz = dy ⊙ act′(y) in place.
fn activation_grad(act: Activation, dz: &mut [f32], y: &[f32]) {
    match act {
        Activation::Tanh => tanh_grad(dz, y),
        Activation::Relu => relu_grad(dz, y),
        Activation::Identity => {}
    }
}

/// One block: `rows` rows of group `g` from row `r0`. Writes dz = dy ⊙ act′ rounded to T into
/// `dz_block` (None: no activation, dz is dy), and dx = dz·wᵀ into `dx_block` when asked;
/// returns the block's bias-gradient partial. In f32 dz is computed in its block, with no
/// staging copies of dy, y and dz.
fn block_backward<T: Scalar>(
    sc: &mut BlockScratch,
    inp: &BackwardInputs<'_, '_, T>,
    (g, r0, rows): (usize, usize, usize),
    dz_block: Option<&mut [T]>,
    dx_block: Option<&mut [T]>,
) -> Vec<f32> {
    let (s, m) = (inp.s, inp.s.outputs);
    let range = s.y(g).start + r0 * m..s.y(g).start + (r0 + rows) * m;
    let (dy, y) = (&inp.dy[range.clone()], &inp.y[range]);
    let mut db = vec![0f32; m];
    // The matmuls read dz in T: this block's rounded copy, or dy itself.
    let dz: &[T] = match dz_block {
        Some(block) => {
            match (T::as_f32_mut(block), T::as_f32(dy), T::as_f32(y)) {
                (Some(dz32), Some(dy32), Some(y32)) => {
                    dz32.copy_from_slice(dy32);
                    activation_grad(inp.act, dz32, y32);
                    add_column_sums(&mut db, dz32);
                }
                _ => {
                    sc.dz.resize(rows * m, 0.0);
                    T::widen_into(dy, &mut sc.dz);
                    sc.y.resize(rows * m, 0.0);
                    T::widen_into(y, &mut sc.y);
                    activation_grad(inp.act, &mut sc.dz, &sc.y);
                    add_column_sums(&mut db, &sc.dz);
                    T::narrow_into(&sc.dz, block);
                }
            }
            block
        }
        None => {
            match T::as_f32(dy) {
                Some(dy32) => add_column_sums(&mut db, dy32),
                None => {
                    sc.dz.resize(rows * m, 0.0);
                    T::widen_into(dy, &mut sc.dz);
                    add_column_sums(&mut db, &sc.dz);
                }
            }
            dy
        }
    };
    if let Some(dxb) = dx_block {
        block_dx(&mut sc.dx, dz, (inp.w_t, g), s, dxb);
    }
    db
}

/// dx = dz·wᵀ for one block of rows of group `g`: `w_t` holds every group's wᵀ ([outputs,
/// inputs]); computed in `dxb` itself when T is f32, else in `scratch`, then rounded.
fn block_dx<T: Scalar>(
    scratch: &mut Vec<f32>,
    dz: &[T],
    (w_t, g): (&GroupWeights<T>, usize),
    s: DenseShape,
    dxb: &mut [T],
) {
    let (k, m) = (s.inputs, s.outputs);
    let rows = dz.len() / m;
    let dzm = Mat::row_major(dz, rows, m);
    match T::as_f32_mut(dxb) {
        Some(dx32) => w_t.product(g, MatMut::row_major(dx32, rows, k), dzm),
        None => {
            scratch.resize(rows * k, 0.0);
            w_t.product(g, MatMut::row_major(scratch, rows, k), dzm);
            T::narrow_into(scratch, dxb);
        }
    }
}

/// Rows of the weight gradient's sum a piece covers at least (its partial dw is an extra pass),
/// and at most that many pieces a group. The cut depends on the shape alone, not on the
/// thread count, so that dw is the same on every machine.
const PIECE_ROWS: usize = 512;
const MAX_PIECES: usize = 8;

/// dw = xᵀ·dz per group, cut into pieces that run as serial products in parallel: on the ANC
/// shape one threaded product per group was slower (`dense_speed`). The cut is along the
/// longer side: with more rows than inputs, along the sum over rows (each piece a partial dw,
/// added in piece order), so that no operand is packed twice; otherwise along dw's rows (x's
/// columns), each piece packing all of dz.
fn weight_gradients<T: Scalar>(x: &[T], dz: &[T], s: DenseShape) -> Vec<f32> {
    let pieces = (s.rows / PIECE_ROWS).min(MAX_PIECES);
    if s.rows >= s.inputs && pieces >= 2 {
        weight_gradients_by_rows(x, dz, s, pieces)
    } else {
        let wanted = (2 * rayon::current_num_threads()).div_ceil(s.groups);
        weight_gradients_by_inputs(x, dz, s, wanted)
    }
}

/// `weight_gradients` with the sum over rows cut into `pieces` per group.
fn weight_gradients_by_rows<T: Scalar>(
    x: &[T],
    dz: &[T],
    s: DenseShape,
    pieces: usize,
) -> Vec<f32> {
    let (k, m) = (s.inputs, s.outputs);
    let piece_rows = s.rows.div_ceil(pieces);
    // Each piece's product overwrites its partial (an empty piece zeroes it).
    let mut partials = Buf::<f32>::take(s.groups * pieces * k * m);
    partials
        .par_chunks_mut((k * m).max(1))
        .enumerate()
        .for_each(|(task, part)| {
            let (g, r0) = (task / pieces, (task % pieces) * piece_rows);
            let rows = piece_rows.min(s.rows.saturating_sub(r0));
            if rows == 0 {
                part.fill(0.0);
                return;
            }
            let xb = Mat::row_major(&x[s.x(g)][r0 * k..(r0 + rows) * k], rows, k);
            let dzb = Mat::row_major(&dz[s.y(g)][r0 * m..(r0 + rows) * m], rows, m);
            T::matmul_serial(MatMut::row_major(part, k, m), xb.t(), dzb, false);
        });
    let mut dw = Vec::with_capacity(s.groups * k * m);
    for group in partials.chunks_exact((pieces * k * m).max(1)) {
        let mut parts = group.chunks_exact((k * m).max(1));
        let start = dw.len();
        dw.extend_from_slice(parts.next().unwrap_or_default());
        for part in parts {
            for (acc, &v) in dw[start..].iter_mut().zip(part) {
                *acc += v;
            }
        }
    }
    dw
}

/// `weight_gradients` with dw's rows cut into `pieces` per group.
fn weight_gradients_by_inputs<T: Scalar>(
    x: &[T],
    dz: &[T],
    s: DenseShape,
    pieces: usize,
) -> Vec<f32> {
    let (k, m) = (s.inputs, s.outputs);
    let piece_rows = k.div_ceil(pieces).max(1);
    let mut dw = vec![0f32; s.groups * k * m];
    let tasks: Vec<(usize, usize, &mut [f32])> = dw
        .chunks_mut((k * m).max(1))
        .enumerate()
        .flat_map(|(g, dwg)| {
            dwg.chunks_mut(piece_rows * m.max(1))
                .enumerate()
                .map(move |(p, piece)| (g, p * piece_rows, piece))
        })
        .collect();
    tasks.into_par_iter().for_each(|(g, i0, piece)| {
        let xt = Mat::row_major(&x[s.x(g)], s.rows, k).t();
        let rows = piece.len() / m;
        T::matmul_serial(
            MatMut::row_major(piece, rows, m),
            xt.block(i0, rows, 0, xt.cols()),
            Mat::row_major(&dz[s.y(g)], s.rows, m),
            false,
        );
    });
    dw
}

/// Every block of rows: (group, first row, rows), in the order of `row_blocks`.
fn blocks(s: DenseShape) -> Vec<(usize, usize, usize)> {
    (0..s.groups)
        .flat_map(|g| (0..s.rows).step_by(BLOCK_ROWS).map(move |r0| (g, r0)))
        .map(|(g, r0)| (g, r0, BLOCK_ROWS.min(s.rows - r0)))
        .collect()
}

/// `out`'s row blocks, one per block of `blocks(s)`; all None when `out` is empty (not asked).
fn optional_blocks<U>(
    out: &mut [U],
    width: usize,
    s: DenseShape,
    count: usize,
) -> Vec<Option<&mut [U]>> {
    let mut blocks: Vec<Option<&mut [U]>> = row_blocks(out, width, s)
        .into_iter()
        .map(|(_, _, block)| Some(block))
        .collect();
    blocks.resize_with(count, || None);
    blocks
}

/// wᵀ of every group, row-major ([groups, outputs, inputs]), when dx is asked for; else empty.
/// `GroupWeights::transposed` packs it, and the caller keeps it alive meanwhile.
fn transposed_groups<T: Scalar>(w: &[T], s: DenseShape, need_dx: bool) -> Vec<T> {
    let (k, m) = (s.inputs, s.outputs);
    if !need_dx {
        return Vec::new();
    }
    w.chunks_exact((k * m).max(1))
        .flat_map(|wg| transposed(wg, k, m))
        .collect()
}

/// Per-block partials of `width` values summed per group in block order, so the result does
/// not depend on which thread ran which block: [groups, width].
fn sum_by_group<'a>(
    partials: impl Iterator<Item = &'a [f32]>,
    width: usize,
    s: DenseShape,
) -> Vec<f32> {
    let mut sums = vec![0f32; s.groups * width];
    let blocks_per_group = s.rows.div_ceil(BLOCK_ROWS).max(1);
    for (i, partial) in partials.enumerate() {
        let g = i / blocks_per_group;
        for (acc, &v) in sums[g * width..(g + 1) * width].iter_mut().zip(partial) {
            *acc += v;
        }
    }
    sums
}

/// The backward of `dense_forward`, from its output `y` and the output gradient `dy`.
///
/// Blocks of rows run in parallel: dz = dy ⊙ act′ (rounded once to T for the matmuls), the
/// block's bias-gradient partial, and dx = dz·wᵀ while dz is in cache. Then dw = xᵀ·dz. The
/// bias partials are summed in block order, so the result does not depend on which thread
/// ran which block.
pub fn dense_backward<T: Scalar>(
    x: &[T],
    w: &[T],
    y: &[T],
    dy: &[T],
    s: DenseShape,
    act: Activation,
    need_dx: bool,
) -> DenseGrads<T> {
    s.check(x.len(), w.len(), s.groups * s.outputs);
    let y_dims = [s.groups, s.rows, s.outputs];
    expect_len(
        "dense_backward: y must be [groups, rows, outputs]",
        y.len(),
        &y_dims,
    );
    expect_len(
        "dense_backward: dy must be [groups, rows, outputs]",
        dy.len(),
        &y_dims,
    );
    let (k, m) = (s.inputs, s.outputs);
    // With no activation dz is dy itself.
    // Every block writes its rows of dz; dw reads it, and then it goes back to the pool.
    let mut dz_owned = Buf::<T>::take(if act == Activation::Identity {
        0
    } else {
        dy.len()
    });
    let mut dx = T::zeros(if need_dx { s.groups * s.rows * k } else { 0 });
    let blocks = blocks(s);
    let dz_blocks = optional_blocks(&mut dz_owned, m, s, blocks.len());
    let dx_blocks = optional_blocks(&mut dx, k, s, blocks.len());
    let transposed = transposed_groups(w, s, need_dx);
    let w_t = GroupWeights::transposed(&transposed, s, need_dx);
    let inputs = BackwardInputs {
        y,
        dy,
        w_t: &w_t,
        s,
        act,
    };
    let db_partials: Vec<Vec<f32>> = blocks
        .into_par_iter()
        .zip(dz_blocks)
        .zip(dx_blocks)
        .map_init(BlockScratch::default, |sc, ((block, dz), dx)| {
            block_backward(sc, &inputs, block, dz, dx)
        })
        .collect();
    let db = sum_by_group(db_partials.iter().map(Vec::as_slice), m, s);
    let dz: &[T] = if act == Activation::Identity {
        dy
    } else {
        &dz_owned
    };
    DenseGrads {
        dx: need_dx.then_some(dx),
        dw: T::narrow(weight_gradients(x, dz, s)),
        db: T::narrow(db),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo_random;
    use half::bf16;

    const SHAPE: DenseShape = DenseShape {
        groups: 3,
        rows: 7,
        inputs: 5,
        outputs: 4,
    };

    /// x, w and b of shape `s` from seeds `seed`, `seed + 1` and `seed + 2`.
    fn random_operands(s: DenseShape, seed: u32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        (
            pseudo_random(s.groups * s.rows * s.inputs, seed, 0.5),
            pseudo_random(s.groups * s.inputs * s.outputs, seed + 1, 0.5),
            pseudo_random(s.groups * s.outputs, seed + 2, 0.5),
        )
    }

    /// Loss L = Σ r ⊙ act(x·w + b), in f64, for finite differences.
    fn loss(x: &[f32], w: &[f32], b: &[f32], r: &[f32], act: Activation) -> f64 {
        let s = SHAPE;
        let mut total = 0.0;
        for g in 0..s.groups {
            for n in 0..s.rows {
                for m in 0..s.outputs {
                    let mut z = b[g * s.outputs + m] as f64;
                    for k in 0..s.inputs {
                        z += x[s.x(g).start + n * s.inputs + k] as f64
                            * w[s.w(g).start + k * s.outputs + m] as f64;
                    }
                    let y = match act {
                        Activation::Tanh => z.tanh(),
                        Activation::Relu => z.max(0.0),
                        Activation::Identity => z,
                    };
                    total += r[s.y(g).start + n * s.outputs + m] as f64 * y;
                }
            }
        }
        total
    }

    #[test]
    fn forward_and_backward_match_finite_differences() {
        let s = SHAPE;
        let (x, w, b) = random_operands(s, 1);
        let r = pseudo_random(s.groups * s.rows * s.outputs, 4, 0.5);
        // With these fixed inputs no ReLU pre-activation lies within the FD step of its kink.
        for act in [Activation::Tanh, Activation::Relu, Activation::Identity] {
            let y = dense_forward(&x, &w, &b, s, act);
            let direct: f64 = y.iter().zip(&r).map(|(&y, &r)| y as f64 * r as f64).sum();
            assert!((direct - loss(&x, &w, &b, &r, act)).abs() < 1e-5);
            let grads = dense_backward(&x, &w, &y, &r, s, act, true);
            let check = |which: usize, got: &[f32]| {
                for i in 0..got.len() {
                    let eps = 1e-3;
                    let mut args = [x.clone(), w.clone(), b.clone()];
                    args[which][i] += eps;
                    let up = loss(&args[0], &args[1], &args[2], &r, act);
                    args[which][i] -= 2.0 * eps;
                    let down = loss(&args[0], &args[1], &args[2], &r, act);
                    let want = (up - down) / (2.0 * eps as f64);
                    assert!(
                        (got[i] as f64 - want).abs() < 1e-3,
                        "{act:?} arg {which} [{i}]: {} vs {want}",
                        got[i]
                    );
                }
            };
            check(0, grads.dx.as_deref().unwrap());
            check(1, &grads.dw);
            check(2, &grads.db);
        }
    }

    /// y and (dx, dw, db) for the loss Σ r ⊙ y, in f64 straight from the definitions.
    fn reference(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        r: &[f32],
        s: DenseShape,
        act: Activation,
    ) -> [Vec<f64>; 4] {
        let (n, k, m) = (s.rows, s.inputs, s.outputs);
        let mut y = vec![0f64; s.groups * n * m];
        let mut dx = vec![0f64; s.groups * n * k];
        let mut dw = vec![0f64; s.groups * k * m];
        let mut db = vec![0f64; s.groups * m];
        for g in 0..s.groups {
            let (x, w) = (&x[s.x(g)], &w[s.w(g)]);
            for i in 0..n {
                for j in 0..m {
                    let z = b[g * m + j] as f64
                        + (0..k)
                            .map(|p| x[i * k + p] as f64 * w[p * m + j] as f64)
                            .sum::<f64>();
                    let (v, slope) = match act {
                        Activation::Tanh => (z.tanh(), 1.0 - z.tanh().powi(2)),
                        Activation::Relu => (z.max(0.0), if z > 0.0 { 1.0 } else { 0.0 }),
                        Activation::Identity => (z, 1.0),
                    };
                    y[s.y(g).start + i * m + j] = v;
                    let dz = r[s.y(g).start + i * m + j] as f64 * slope;
                    db[g * m + j] += dz;
                    for p in 0..k {
                        dw[s.w(g).start + p * m + j] += x[i * k + p] as f64 * dz;
                        dx[s.x(g).start + i * k + p] += dz * w[p * m + j] as f64;
                    }
                }
            }
        }
        [y, dx, dw, db]
    }

    /// Many row blocks per group, the last one partial; outputs wider than one register.
    #[test]
    fn row_blocks_and_weight_gradient_pieces_cover_every_row() {
        // Blocks of rows with a short last one; then enough rows that the weight gradient's
        // sum over rows is cut into pieces (3, the last one short).
        for rows in [2 * BLOCK_ROWS + 13, 3 * PIECE_ROWS + 13] {
            matches_reference(DenseShape {
                groups: 2,
                rows,
                inputs: 9,
                outputs: 37,
            });
        }
    }

    fn matches_reference(s: DenseShape) {
        let (x, w, b) = random_operands(s, 11);
        let r = pseudo_random(s.groups * s.rows * s.outputs, 14, 0.5);
        for act in [Activation::Tanh, Activation::Relu, Activation::Identity] {
            let want = reference(&x, &w, &b, &r, s, act);
            let y = dense_forward(&x, &w, &b, s, act);
            let grads = dense_backward(&x, &w, &y, &r, s, act, true);
            let got = [&y, grads.dx.as_ref().unwrap(), &grads.dw, &grads.db];
            for (which, (got, want)) in got.iter().zip(&want).enumerate() {
                assert_eq!(got.len(), want.len());
                for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (g as f64 - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "{act:?} output {which} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// In bf16 (each group's w and wᵀ packed once for all its row blocks), against the
    /// definitions on the rounded operands, to bf16's precision (y and dz are rounded).
    #[test]
    fn bf16_over_many_row_blocks_matches_reference() {
        let s = DenseShape {
            groups: 2,
            rows: 2 * BLOCK_ROWS + 13,
            inputs: 9,
            outputs: 37,
        };
        let (x, w, b) = random_operands(s, 21);
        let r = pseudo_random(s.groups * s.rows * s.outputs, 22, 0.5);
        let low = |v: &[f32]| v.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>();
        let wide = |v: &[bf16]| v.iter().map(|v| v.to_f32()).collect::<Vec<_>>();
        let (x16, w16, b16, r16) = (low(&x), low(&w), low(&b), low(&r));
        let want = reference(
            &wide(&x16),
            &wide(&w16),
            &wide(&b16),
            &wide(&r16),
            s,
            Activation::Tanh,
        );
        let y = dense_forward(&x16, &w16, &b16, s, Activation::Tanh);
        let grads = dense_backward(&x16, &w16, &y, &r16, s, Activation::Tanh, true);
        let got = [&y, grads.dx.as_ref().unwrap(), &grads.dw, &grads.db];
        for (which, (got, want)) in got.iter().zip(&want).enumerate() {
            assert_eq!(got.len(), want.len());
            for (i, (g, &w)) in got.iter().zip(want).enumerate() {
                let g = g.to_f32() as f64;
                assert!(
                    (g - w).abs() < 2e-2 * (1.0 + w.abs()),
                    "output {which} [{i}]: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn bf16_agrees_with_f32_to_bf16_precision() {
        let s = SHAPE;
        let (x, w, b) = random_operands(s, 5);
        let low = |v: &[f32]| v.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>();
        let y32 = dense_forward(&x, &w, &b, s, Activation::Tanh);
        let y16 = dense_forward(&low(&x), &low(&w), &low(&b), s, Activation::Tanh);
        for (a, b) in y32.iter().zip(&y16) {
            assert!((a - b.to_f32()).abs() < 2e-2, "{a} vs {b}");
        }
        let g32 = dense_backward(&x, &w, &y32, &y32, s, Activation::Tanh, false);
        let g16 = dense_backward(&low(&x), &low(&w), &y16, &y16, s, Activation::Tanh, false);
        assert!(g16.dx.is_none());
        for (a, b) in g32.dw.iter().zip(&g16.dw) {
            assert!((a - b.to_f32()).abs() < 3e-2, "{a} vs {b}");
        }
    }
}
