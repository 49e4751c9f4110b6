//! A fused 2-D convolution layer (PyTorch / burn `Conv2d` semantics, NCHW, stride 1, zero
//! padding) with an optional ReLU, and its hand-written backward.
//!
//! Forward, per image: im2col into cols [C·KH·KW, Ho·Wo], then z_b = W[Cout, C·KH·KW] · cols,
//! which is already [Cout, Ho·Wo] (NCHW); bias and ReLU run in one f32 pass before the one
//! rounding to T.
//!
//! Backward, per image: dz = dy ⊙ (y > 0) (with ReLU), db += Σ dz, dwᵀ += cols · dzᵀ (cols
//! recomputed; the transposed product packs faster, and the sum is transposed once at the end),
//! and when asked dx_b = col2im(Wᵀ · dz).
//!
//! Images run in parallel on rayon, each worker with its own scratch (no allocation per image)
//! and, in the backward, its own partial dw / db, summed at the end. The f32 per-image products
//! run single-threaded (the `gemm` crate with `Parallelism::None`); bf16 ones go through
//! `matmul_bf16`, which may split a product over rayon's threads, nested in the image loop (as
//! fast as keeping each product under its threshold, measured on the CNN2D shapes).
//!
//! im2col and col2im go through a zero-bordered copy of each plane (the border written once per
//! worker), so every row segment of cols is one or two fixed-size block copies with no bounds
//! logic.
//!
//! With T = bf16 the matmul inputs (x, w, cols, dz) are bf16, accumulated in f32; bias, ReLU,
//! the sums and col2im run in f32 (dz = dy ⊙ (y > 0) is exact in bf16).

use std::any::TypeId;

use half::bf16;
use rayon::prelude::*;

use crate::gemm::{Mat, MatMut, matmul_f32_serial};
use crate::scalar::Scalar;

/// Sizes of a stride-1, zero-padded 2-D convolution. x [batch, channels, height, width],
/// weight [out_channels, channels, kernel[0], kernel[1]], bias [out_channels],
/// y [batch, out_channels, out_height, out_width].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub out_channels: usize,
    /// [KH, KW].
    pub kernel: [usize; 2],
    /// [ph, pw], zeros added on each side.
    pub padding: [usize; 2],
}

impl ConvShape {
    /// Ho = H + 2·ph − KH + 1.
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding[0] + 1)
            .checked_sub(self.kernel[0])
            .expect("conv2d: kernel taller than the padded input")
    }

    /// Wo = W + 2·pw − KW + 1.
    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding[1] + 1)
            .checked_sub(self.kernel[1])
            .expect("conv2d: kernel wider than the padded input")
    }

    /// B·C·H·W.
    pub fn x_len(&self) -> usize {
        self.batch * self.image_len()
    }

    /// Cout·C·KH·KW.
    pub fn w_len(&self) -> usize {
        self.out_channels * self.patch_len()
    }

    /// B·Cout·Ho·Wo.
    pub fn y_len(&self) -> usize {
        self.batch * self.out_channels * self.pixels()
    }

    /// Multiply-adds of the forward (the backward does this once for dw and once for dx).
    pub fn macs(&self) -> usize {
        self.y_len() * self.patch_len()
    }

    /// C·KH·KW: the rows of cols, the columns of W.
    fn patch_len(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// C·H·W.
    fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Ho·Wo.
    fn pixels(&self) -> usize {
        self.out_height() * self.out_width()
    }

    fn check(&self, x: usize, w: usize, b: usize) {
        assert!(
            self.kernel[0] > 0 && self.kernel[1] > 0,
            "conv2d: empty kernel"
        );
        assert_eq!(x, self.x_len(), "conv2d: x must be [B, C, H, W]");
        assert_eq!(w, self.w_len(), "conv2d: weight must be [Cout, C, KH, KW]");
        assert_eq!(b, self.out_channels, "conv2d: bias must be [Cout]");
    }
}

/// y = act(conv(x, w) + b), act = ReLU when `relu`, else identity. x [B, C, H, W],
/// w [Cout, C, KH, KW], b [Cout] → y [B, Cout, Ho, Wo].
pub fn conv2d_forward<T: Scalar>(x: &[T], w: &[T], b: &[T], s: ConvShape, relu: bool) -> Vec<T> {
    s.check(x.len(), w.len(), b.len());
    let (k, n, cout, img) = (s.patch_len(), s.pixels(), s.out_channels, s.image_len());
    let zero = zero::<T>();
    let mut y = zeros::<T>(s.y_len());
    if y.is_empty() {
        return y;
    }
    let bias = T::widen(b);
    let wm = Mat::row_major(w, cout, k);
    y.par_chunks_mut(cout * n).enumerate().for_each_init(
        || {
            let z = vec![0f32; if same::<T, f32>() { 0 } else { cout * n }];
            (Im2col::new(&s, zero), z)
        },
        |(im2col, z), (i, yb)| {
            let cols = Mat::row_major(im2col.run(&x[i * img..][..img]), k, n);
            if let Some(y32) = cast_mut::<T, f32>(yb) {
                matmul(MatMut::row_major(y32, cout, n), wm, cols, false);
                simd::bias_act(y32, &bias, relu);
            } else {
                matmul(MatMut::row_major(z, cout, n), wm, cols, false);
                simd::bias_act(z, &bias, relu);
                T::narrow_into(z, yb);
            }
        },
    );
    y
}

/// Gradients of a conv2d layer.
#[derive(Debug, Clone)]
pub struct ConvGrads<T> {
    /// [B, C, H, W]; None unless asked for (a first layer's input is data).
    pub dx: Option<Vec<T>>,
    /// [Cout, C, KH, KW].
    pub dw: Vec<T>,
    /// [Cout].
    pub db: Vec<T>,
}

/// One backward worker's scratch and partial sums.
struct Work<T> {
    cols: Im2col<T>,
    /// dz [Cout, Ho·Wo] (with ReLU; without it dz is dy).
    dz: Vec<T>,
    /// Wᵀ·dz [C·KH·KW, Ho·Wo] (only with dx).
    dcols: Vec<f32>,
    /// The zero-bordered planes col2im sums into (only with dx).
    dplanes: Vec<f32>,
    /// dx_b in f32 before rounding (only with dx, unused for f32).
    dx32: Vec<f32>,
    /// Σ cols·dzᵀ, [C·KH·KW, Cout].
    dwt: Vec<f32>,
    db: Vec<f32>,
}

/// Images per partial sum of the weight gradient: enough work per task, few partials.
const GROUP: usize = 16;

/// The backward of `conv2d_forward`, from its output `y` (the ReLU mask reads it) and the output
/// gradient `dy`. dx only when `need_dx`.
pub fn conv2d_backward<T: Scalar>(
    x: &[T],
    w: &[T],
    y: &[T],
    dy: &[T],
    s: ConvShape,
    relu: bool,
    need_dx: bool,
) -> ConvGrads<T> {
    s.check(x.len(), w.len(), s.out_channels);
    assert_eq!(y.len(), s.y_len(), "conv2d: y must be [B, Cout, Ho, Wo]");
    assert_eq!(dy.len(), s.y_len(), "conv2d: dy must be [B, Cout, Ho, Wo]");
    let (k, n, cout, img) = (s.patch_len(), s.pixels(), s.out_channels, s.image_len());
    let zero = zero::<T>();
    let f32_in = same::<T, f32>();
    let geom = Geom::new(&s);
    let init = || Work {
        cols: Im2col::new(&s, zero),
        dz: vec![zero; if relu { cout * n } else { 0 }],
        dcols: vec![0f32; if need_dx { k * n } else { 0 }],
        dplanes: vec![0f32; if need_dx { geom.planes_len() } else { 0 }],
        dx32: vec![0f32; if need_dx && !f32_in { img } else { 0 }],
        dwt: vec![0f32; k * cout],
        db: vec![0f32; cout],
    };
    let wt = Mat::row_major(w, cout, k).t();
    let step = |wk: &mut Work<T>, i: usize, dxb: Option<&mut [T]>| {
        let range = i * cout * n..(i + 1) * cout * n;
        let dz = if relu {
            relu_grad(&dy[range.clone()], &y[range], &mut wk.dz);
            &wk.dz[..]
        } else {
            &dy[range]
        };
        add_row_sums(&mut wk.db, dz);
        let dzm = Mat::row_major(dz, cout, n);
        let cols = Mat::row_major(wk.cols.run(&x[i * img..][..img]), k, n);
        matmul(MatMut::row_major(&mut wk.dwt, k, cout), cols, dzm.t(), true);
        if let Some(dxb) = dxb {
            matmul(MatMut::row_major(&mut wk.dcols, k, n), wt, dzm, false);
            match cast_mut::<T, f32>(dxb) {
                Some(dx32) => simd::col2im(&wk.dcols, &mut wk.dplanes, dx32, geom),
                None => {
                    simd::col2im(&wk.dcols, &mut wk.dplanes, &mut wk.dx32, geom);
                    T::narrow_into(&wk.dx32, dxb);
                }
            }
        }
    };
    // The weight and bias gradients are summed per fixed group of images, then over the groups
    // in order: the same bits whichever threads ran which group (a resumed run must match).
    let group = |wk: &mut Work<T>, g: usize, mut dx: Option<&mut [T]>| {
        wk.dwt.fill(0.0);
        wk.db.fill(0.0);
        for i in g * GROUP..((g + 1) * GROUP).min(s.batch) {
            let dxb = dx
                .as_deref_mut()
                .map(|d| &mut d[(i - g * GROUP) * img..][..img]);
            step(wk, i, dxb);
        }
        (wk.dwt.clone(), wk.db.clone())
    };
    let mut dx = zeros::<T>(if need_dx { s.x_len() } else { 0 });
    let partials: Vec<(Vec<f32>, Vec<f32>)> = if need_dx && img > 0 {
        dx.par_chunks_mut(GROUP * img)
            .enumerate()
            .map_init(init, |wk, (g, dxg)| group(wk, g, Some(dxg)))
            .collect()
    } else {
        (0..s.batch.div_ceil(GROUP))
            .into_par_iter()
            .map_init(init, |wk, g| group(wk, g, None))
            .collect()
    };
    let sums = partials
        .into_iter()
        .reduce(|(mut dwt, mut db), (dwt2, db2)| {
            simd::add_into(&mut dwt, &dwt2);
            simd::add_into(&mut db, &db2);
            (dwt, db)
        });
    let (dwt, db) = sums.unwrap_or_else(|| (vec![0f32; k * cout], vec![0f32; cout]));
    let mut dw = vec![0f32; cout * k];
    for (j, row) in dwt.chunks_exact(cout.max(1)).enumerate() {
        for (co, &v) in row.iter().enumerate() {
            dw[co * k + j] = v;
        }
    }
    ConvGrads {
        dx: need_dx.then_some(dx),
        dw: T::narrow(dw),
        db: T::narrow(db),
    }
}

/// dz = dy ⊙ (y > 0): the ReLU derivative through its output, in one pass. Exact in any T (dz is
/// either dy or zero), so it stays in T for the matmuls.
fn relu_grad<T: Scalar>(dy: &[T], y: &[T], dz: &mut [T]) {
    if let (Some(dy), Some(y), Some(dz)) = (
        cast::<T, f32>(dy),
        cast::<T, f32>(y),
        cast_mut::<T, f32>(dz),
    ) {
        simd::relu_grad_f32(dy, y, dz);
    } else if let (Some(dy), Some(y), Some(dz)) = (
        cast::<T, bf16>(dy),
        cast::<T, bf16>(y),
        cast_mut::<T, bf16>(dz),
    ) {
        simd::relu_grad_bf16(dy, y, dz);
    } else {
        let mut d = T::widen(dy);
        simd::relu_mask(&mut d, &T::widen(y));
        dz.copy_from_slice(&T::narrow(d));
    }
}

/// sums[i] += Σ_j dz[i, j], in f32.
fn add_row_sums<T: Scalar>(sums: &mut [f32], dz: &[T]) {
    if let Some(dz) = cast::<T, f32>(dz) {
        simd::add_row_sums_f32(sums, dz);
    } else if let Some(dz) = cast::<T, bf16>(dz) {
        simd::add_row_sums_bf16(sums, dz);
    } else {
        simd::add_row_sums_f32(sums, &T::widen(dz));
    }
}

/// The geometry im2col and col2im share: planes [C, Hp, Wp] (the input with its zero border,
/// Hp = H + 2·ph, Wp = W + 2·pw) against cols [C·KH·KW, Ho·Wo], row (c, kh, kw) column
/// (oh, ow) being plane c at (oh + kh, ow + kw).
#[derive(Debug, Clone, Copy)]
struct Geom {
    channels: usize,
    height: usize,
    width: usize,
    pad: [usize; 2],
    kernel: [usize; 2],
    /// [Hp, Wp].
    plane: [usize; 2],
    /// [Ho, Wo].
    out: [usize; 2],
}

impl Geom {
    fn new(s: &ConvShape) -> Self {
        Self {
            channels: s.channels,
            height: s.height,
            width: s.width,
            pad: s.padding,
            kernel: s.kernel,
            plane: [s.height + 2 * s.padding[0], s.width + 2 * s.padding[1]],
            out: [s.out_height(), s.out_width()],
        }
    }

    fn plane_len(&self) -> usize {
        self.plane[0] * self.plane[1]
    }

    /// The bordered planes, plus slack for the block copies' overrun.
    fn planes_len(&self) -> usize {
        self.channels * self.plane_len() + BLOCK_BYTES
    }

    fn cols_len(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1] * self.out[0] * self.out[1]
    }

    /// Where image row r starts in the bordered planes (channel 0).
    fn interior(&self, r: usize) -> usize {
        (r + self.pad[0]) * self.plane[1] + self.pad[1]
    }
}

/// Bytes each im2col block copy moves: a fixed size, so it compiles to one vector move. Rows
/// shorter than a block are copied whole and the excess overwritten by the next row (32 bytes:
/// unaligned 64-byte stores, which straddle cache lines, measured slower).
const BLOCK_BYTES: usize = 32;

/// A worker's im2col scratch: the bordered planes and the cols buffer.
struct Im2col<T> {
    geom: Geom,
    /// The border stays zero; only the interior is rewritten.
    planes: Vec<T>,
    /// cols [C·KH·KW, Ho·Wo] + slack for the last block's overrun.
    cols: Vec<T>,
}

impl<T: Copy + 'static> Im2col<T> {
    fn new(s: &ConvShape, zero: T) -> Self {
        let geom = Geom::new(s);
        Self {
            geom,
            planes: vec![zero; geom.planes_len()],
            cols: vec![zero; geom.cols_len() + BLOCK_BYTES],
        }
    }

    /// cols [C·KH·KW, Ho·Wo] of one image [C, H, W].
    fn run(&mut self, image: &[T]) -> &[T] {
        let g = self.geom;
        let (h, w) = (g.height, g.width);
        if h * w > 0 {
            for (plane, src) in self
                .planes
                .chunks_exact_mut(g.plane_len())
                .zip(image.chunks_exact(h * w))
            {
                for (r, from) in src.chunks_exact(w).enumerate() {
                    plane[g.interior(r)..][..w].copy_from_slice(from);
                }
            }
        }
        if let (Some(p), Some(c)) = (
            cast::<T, f32>(&self.planes),
            cast_mut::<T, f32>(&mut self.cols),
        ) {
            simd::planes_to_cols_f32(p, c, g);
        } else if let (Some(p), Some(c)) = (
            cast::<T, bf16>(&self.planes),
            cast_mut::<T, bf16>(&mut self.cols),
        ) {
            simd::planes_to_cols_bf16(p, c, g);
        } else {
            planes_to_cols(&self.planes, &mut self.cols, g);
        }
        &self.cols[..g.cols_len()]
    }
}

/// The gather half of im2col, from the bordered planes. `cols` and `planes` have
/// `BLOCK_BYTES` elements of slack.
#[inline(always)]
fn planes_to_cols<T: Copy>(planes: &[T], cols: &mut [T], g: Geom) {
    let block = (BLOCK_BYTES / size_of::<T>()).max(1);
    let [ho, wo] = g.out;
    let wp = g.plane[1];
    let mut at = 0;
    for c in 0..g.channels {
        // The whole rest of the planes: the last block of a row may run past this plane.
        let plane = &planes[c * g.plane_len()..];
        for kh in 0..g.kernel[0] {
            for kw in 0..g.kernel[1] {
                for oh in 0..ho {
                    let from = &plane[(oh + kh) * wp + kw..];
                    for j in (0..wo).step_by(block) {
                        cols[at + j..][..block].copy_from_slice(&from[j..][..block]);
                    }
                    at += wo;
                }
            }
        }
    }
}

/// c = a·b (+ c when `accumulate`). f32 on this thread (the images are the parallel axis):
/// the `gemm` crate without threads. bf16 through `matmul_bf16`, which may split a product over
/// rayon's threads; nested in the image loop that measured no slower than splitting K to stay
/// under its threshold (which measured ~7% slower on the backward).
fn matmul<T: Scalar>(c: MatMut<f32>, a: Mat<T>, b: Mat<T>, accumulate: bool) {
    let (Some(ad), Some(bd)) = (cast::<T, f32>(a.data), cast::<T, f32>(b.data)) else {
        return T::matmul(c, a, b, accumulate);
    };
    let f32_view = |v: &Mat<T>, data| Mat {
        data,
        rows: v.rows,
        cols: v.cols,
        row_stride: v.row_stride,
        col_stride: v.col_stride,
    };
    matmul_f32_serial(c, f32_view(&a, ad), f32_view(&b, bd), accumulate);
}

fn zero<T: Scalar>() -> T {
    T::narrow(vec![0.0])[0]
}

/// `len` zeros of T. For f32 and bf16 from the allocator's zeroed memory (`calloc`: fresh pages
/// come zero from the OS), not a fill pass over a buffer about to be overwritten anyway.
fn zeros<T: Scalar>(len: usize) -> Vec<T> {
    if same::<T, f32>() {
        return recast(vec![0f32; len]);
    }
    if same::<T, bf16>() {
        let mut bits = std::mem::ManuallyDrop::new(vec![0u16; len]);
        let (ptr, len, cap) = (
            bits.as_mut_ptr().cast::<bf16>(),
            bits.len(),
            bits.capacity(),
        );
        // SAFETY: bf16 is a `repr(transparent)` u16: same size, alignment, and the zero bits
        // are bf16 zero; the allocation moves over whole.
        return recast(unsafe { Vec::from_raw_parts(ptr, len, cap) });
    }
    vec![zero::<T>(); len]
}

/// `v` as a Vec<U>; T must be U.
fn recast<T: 'static, U: 'static>(v: Vec<T>) -> Vec<U> {
    assert!(same::<T, U>(), "recast between different types");
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: T and U are the same type.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast(), v.len(), v.capacity()) }
}

fn same<T: 'static, U: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<U>()
}

/// `s` as a slice of U when T is U.
fn cast<T: 'static, U: 'static>(s: &[T]) -> Option<&[U]> {
    // SAFETY: T and U are the same type.
    same::<T, U>().then(|| unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len()) })
}

/// `s` as a mutable slice of U when T is U.
fn cast_mut<T: 'static, U: 'static>(s: &mut [T]) -> Option<&mut [U]> {
    // SAFETY: T and U are the same type.
    same::<T, U>()
        .then(|| unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len()) })
}

/// The vectorised elementwise passes.
mod simd {
    use half::bf16;

    use super::{Geom, planes_to_cols};
    use crate::activation::multiversion;

    multiversion! {
        fn planes_to_cols_f32(planes: &[f32], cols: &mut [f32], g: Geom) {
            planes_to_cols(planes, cols, g);
        }
    }

    multiversion! {
        fn planes_to_cols_bf16(planes: &[bf16], cols: &mut [bf16], g: Geom) {
            planes_to_cols(planes, cols, g);
        }
    }

    multiversion! {
        /// The adjoint of im2col: dx [C, H, W] gets the sum of dcols [C·KH·KW, Ho·Wo] over
        /// the positions each input feeds, gathered in the bordered `planes` (scratch).
        fn col2im(dcols: &[f32], planes: &mut [f32], dx: &mut [f32], g: Geom) {
            let (h, w) = (g.height, g.width);
            if h * w == 0 {
                return;
            }
            let [ho, wo] = g.out;
            let wp = g.plane[1];
            let planes = &mut planes[..g.channels * g.plane_len()];
            planes.fill(0.0);
            let mut rows = dcols.chunks_exact(wo.max(1));
            for plane in planes.chunks_exact_mut(g.plane_len()) {
                for kh in 0..g.kernel[0] {
                    for kw in 0..g.kernel[1] {
                        for oh in 0..ho {
                            let to = &mut plane[(oh + kh) * wp + kw..][..wo];
                            let from = rows.next().expect("dcols has C·KH·KW·Ho rows of Wo");
                            for (t, &v) in to.iter_mut().zip(from) {
                                *t += v;
                            }
                        }
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

    multiversion! {
        /// z [Cout, N] += bias per row, then ReLU when `relu`.
        fn bias_act(z: &mut [f32], bias: &[f32], relu: bool) {
            let n = z.len() / bias.len().max(1);
            if n == 0 {
                return;
            }
            for (row, &b) in z.chunks_exact_mut(n).zip(bias) {
                if relu {
                    for v in row.iter_mut() {
                        *v = (*v + b).max(0.0);
                    }
                } else {
                    for v in row.iter_mut() {
                        *v += b;
                    }
                }
            }
        }
    }

    multiversion! {
        /// dz = 0 where y ≤ 0 (the ReLU derivative through its output).
        fn relu_mask(dz: &mut [f32], y: &[f32]) {
            for (d, &y) in dz.iter_mut().zip(y) {
                *d = if y > 0.0 { *d } else { 0.0 };
            }
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
    pub(super) fn bf16_bits_to_f32(v: bf16) -> f32 {
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
        fn relu_grad_f32(dy: &[f32], y: &[f32], dz: &mut [f32]) {
            for ((d, &g), &y) in dz.iter_mut().zip(dy).zip(y) {
                *d = if y > 0.0 { g } else { 0.0 };
            }
        }
    }

    multiversion! {
        fn relu_grad_bf16(dy: &[bf16], y: &[bf16], dz: &mut [bf16]) {
            for ((d, &g), &y) in dz.iter_mut().zip(dy).zip(y) {
                *d = if bf16_bits_to_f32(y) > 0.0 { g } else { bf16::ZERO };
            }
        }
    }

    multiversion! {
        fn add_into(dst: &mut [f32], src: &[f32]) {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
    const SHAPES: [ConvShape; 4] = [SAME_3X3, VALID_2X3, WIDE_PAD, OVER_PAD];

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
        // Enough images that rayon splits the batch over workers.
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
    fn loss(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        r: &[f32],
        s: &ConvShape,
        relu: bool,
    ) -> (f64, Vec<bool>) {
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
        // Per-worker partial dw / db summed correctly: the gradient of a batch is the sum of
        // the gradients of its images.
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
}
