//! A fused 2-D convolution layer (PyTorch / burn `Conv2d` semantics, NCHW, stride 1, zero
//! padding) with an optional ReLU, and its hand-written backward.
//!
//! Both directions work on groups of consecutive images, one matmul per group and product:
//! im2col lays a group's images side by side in one cols [C·KH·KW, G·Ho·Wo].
//!
//! Forward, per `FWD_GROUP` images: z = W[Cout, C·KH·KW] · cols, [Cout, G·Ho·Wo]; one f32 pass
//! adds the bias, applies ReLU, rounds to T and scatters each image's [Cout, Ho·Wo] block into
//! y (NCHW).
//!
//! Backward, per `GROUP` images: dz [Cout, G·Ho·Wo] gathered from dy (⊙ (y > 0) with ReLU),
//! db = Σ dz, dwᵀ = cols · dzᵀ (cols recomputed; the transposed product packs faster, and the
//! sum is transposed once at the end), and when asked, per `DX_GROUP` images of the group,
//! dcols = Wᵀ · dz, then col2im per image.
//!
//! Groups run in parallel on rayon, each worker with its own scratch (no allocation per group).
//! The weight and bias gradients are partial sums per group, summed in group order: the same
//! bits whichever thread ran which group, and however many threads there are. The f32 products
//! run single-threaded (the `gemm` crate with `Parallelism::None`); bf16 ones go through
//! `matmul_bf16`, which may split a product over rayon's threads, nested in the group loop.
//!
//! im2col goes through a zero-bordered copy of each image's planes (the border written once per
//! worker). With AVX-512 each 64-byte vector of cols is two loads and a permute of a plane, and
//! col2im sums each 16-wide stretch of a dx row in a register from masked loads of dcols (see
//! `avx512`). Elsewhere each output row's segment of cols is one or two fixed-size block copies
//! with no bounds logic, and col2im adds dcols into bordered planes.
//!
//! With T = bf16 the matmul inputs (x, w, cols, dz) are bf16, accumulated in f32; bias, ReLU,
//! the sums and col2im run in f32 (dz = dy ⊙ (y > 0) is exact in bf16).

use rayon::prelude::*;

use crate::gemm::{Mat, MatMut, matmul_f32_serial};
use crate::scalar::Scalar;
use crate::size::{expect_len, product};

/// `len + 2·pad`; panics when it overflows.
fn padded(len: usize, pad: usize) -> usize {
    pad.checked_mul(2)
        .and_then(|p| p.checked_add(len))
        .expect("conv2d: padded size overflows usize")
}

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
        padded(self.height, self.padding[0])
            .checked_add(1)
            .and_then(|p| p.checked_sub(self.kernel[0]))
            .expect("conv2d: kernel taller than the padded input")
    }

    /// Wo = W + 2·pw − KW + 1.
    pub fn out_width(&self) -> usize {
        padded(self.width, self.padding[1])
            .checked_add(1)
            .and_then(|p| p.checked_sub(self.kernel[1]))
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

    /// Panics unless x, w and b have this shape's lengths and every buffer size the layer
    /// derives from the shape fits usize: the unchecked size arithmetic elsewhere (and the
    /// AVX-512 kernels' pointer offsets) stays below these.
    fn check(&self, x: usize, w: usize, b: usize) {
        assert!(
            self.kernel[0] > 0 && self.kernel[1] > 0,
            "conv2d: empty kernel"
        );
        let [kh, kw] = self.kernel;
        let (c, cout) = (self.channels, self.out_channels);
        let [ho, wo] = [self.out_height(), self.out_width()];
        let planes = [
            padded(self.height, self.padding[0]),
            padded(self.width, self.padding[1]),
        ];
        expect_len(
            "conv2d: x must be [B, C, H, W]",
            x,
            &[self.batch, c, self.height, self.width],
        );
        expect_len(
            "conv2d: weight must be [Cout, C, KH, KW]",
            w,
            &[cout, c, kh, kw],
        );
        assert_eq!(b, cout, "conv2d: bias must be [Cout]");
        product("conv2d: y", &[self.batch, cout, ho, wo]);
        let slack_sized = |what, n: usize| n.checked_add(SLACK).unwrap_or_else(|| panic!("{what}"));
        let plane_elems = product("conv2d: padded planes", &[c, planes[0], planes[1]]);
        slack_sized("conv2d: padded planes overflow usize", plane_elems);
        let pixels = product("conv2d: im2col columns", &[GROUP.max(FWD_GROUP), ho, wo]);
        let ld = slack_sized("conv2d: im2col columns overflow usize", pixels);
        product("conv2d: im2col", &[c, kh, kw, ld]);
        product(
            "conv2d: partial sums",
            &[self.batch.div_ceil(GROUP), cout, c * kh * kw + 1],
        );
    }
}

/// The fewest items a parallel piece takes: at most two pieces a thread. `for_each_init` builds
/// a worker's scratch (megabytes of zeroed buffers for a group's im2col) once a piece, and
/// unbounded, rayon splits a call into a piece per steal.
fn min_piece(items: usize) -> usize {
    items.div_ceil(2 * rayon::current_num_threads()).max(1)
}

/// Images per forward product: ~4% faster than one image a product (measured 2 to 16 alike),
/// and the group's cols and z stay in L2.
const FWD_GROUP: usize = 4;

/// Images per backward group: its dwᵀ is one product, and its partial dw / db one term of the
/// ordered sum (a fixed size, so the sum does not depend on the threads).
const GROUP: usize = 16;

/// Images per Wᵀ·dz product in the backward: its f32 output stays in L2 for col2im.
const DX_GROUP: usize = 2;

/// y = act(conv(x, w) + b), act = ReLU when `relu`, else identity. x [B, C, H, W],
/// w [Cout, C, KH, KW], b [Cout] → y [B, Cout, Ho, Wo].
pub fn conv2d_forward<T: Scalar>(x: &[T], w: &[T], b: &[T], s: ConvShape, relu: bool) -> Vec<T> {
    s.check(x.len(), w.len(), b.len());
    let (k, n, cout, img) = (s.patch_len(), s.pixels(), s.out_channels, s.image_len());
    let mut y = T::zeros(s.y_len());
    if y.is_empty() {
        return y;
    }
    let bias = T::widen(b);
    let wm = Mat::row_major(w, cout, k);
    let chunks = y.len().div_ceil(FWD_GROUP * cout * n);
    y.par_chunks_mut(FWD_GROUP * cout * n)
        .enumerate()
        .with_min_len(min_piece(chunks))
        .for_each_init(
            || (Im2col::new(&s, FWD_GROUP), vec![0f32; cout * FWD_GROUP * n]),
            |(im2col, z), (g, yg)| {
                let count = yg.len() / (cout * n);
                let cols = im2col.run(&x[g * FWD_GROUP * img..][..count * img], count);
                let z = &mut z[..cout * count * n];
                matmul(MatMut::row_major(z, cout, count * n), wm, cols, false);
                bias_act(z, &bias, relu, n, yg);
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

/// One backward worker's scratch.
struct Work<T> {
    cols: Im2col<T>,
    /// dz [Cout, GROUP·Ho·Wo].
    dz: Vec<T>,
    /// Wᵀ·dz [C·KH·KW, DX_GROUP·Ho·Wo] (only with dx).
    dcols: Vec<f32>,
    /// The zero-bordered planes the portable col2im sums into.
    dplanes: Vec<f32>,
    /// An image's dx in f32 before rounding (portable col2im, T not f32).
    dx32: Vec<f32>,
}

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
    let geom = Geom::new(&s);
    let scatter = avx512::Scatter::new(&geom);
    // The portable col2im's scratch (AVX-512 writes f32 and bf16 dx directly).
    let portable = need_dx && (scatter.is_none() || !f32_or_bf16::<T>());
    let dplanes = if portable { geom.planes_len() } else { 0 };
    let dx32 = if portable && T::as_f32(&[]).is_none() {
        img
    } else {
        0
    };
    let init = || Work {
        cols: Im2col::new(&s, GROUP),
        dz: T::zeros(cout * GROUP * n),
        dcols: vec![0f32; if need_dx { k * DX_GROUP * n } else { 0 }],
        dplanes: vec![0f32; dplanes],
        dx32: vec![0f32; dx32],
    };
    let wt = Mat::row_major(w, cout, k).t();
    // Group g's partial sums [dwᵀ [C·KH·KW, Cout], db [Cout]] in `part`, its dx in `dx`.
    let group = |wk: &mut Work<T>, g: usize, part: &mut [f32], dx: Option<&mut [T]>| {
        let first = g * GROUP;
        let count = GROUP.min(s.batch - first);
        let cn = count * n;
        let dz = &mut wk.dz[..cout * cn];
        let range = first * cout * n..(first + count) * cout * n;
        gather_dz(&dy[range.clone()], &y[range], dz, [cout, n], relu);
        let (dwt, db) = part.split_at_mut(k * cout);
        db.fill(0.0);
        add_row_sums(db, dz);
        let dz = Mat::row_major(&*dz, cout, cn);
        let cols = wk.cols.run(&x[first * img..][..count * img], count);
        matmul(MatMut::row_major(dwt, k, cout), cols, dz.t(), false);
        let Some(dx) = dx else { return };
        for j0 in (0..count).step_by(DX_GROUP) {
            let m = DX_GROUP.min(count - j0);
            let dzj = dz.block(0, cout, j0 * n, m * n);
            matmul(
                MatMut::row_major(&mut wk.dcols[..k * m * n], k, m * n),
                wt,
                dzj,
                false,
            );
            for j in 0..m {
                let dxb = &mut dx[(j0 + j) * img..][..img];
                let dcols = &wk.dcols[j * n..];
                if scatter
                    .as_ref()
                    .is_some_and(|plan| plan.col2im(dcols, m * n, dxb, geom))
                {
                    continue;
                }
                match T::as_f32_mut(dxb) {
                    Some(dx32) => simd::col2im(dcols, m * n, &mut wk.dplanes, dx32, geom),
                    None => {
                        simd::col2im(dcols, m * n, &mut wk.dplanes, &mut wk.dx32, geom);
                        T::narrow_into(&wk.dx32, dxb);
                    }
                }
            }
        }
    };
    let groups = s.batch.div_ceil(GROUP);
    let part_len = k * cout + cout;
    let mut partials = vec![0f32; groups * part_len];
    let mut dx = T::zeros(if need_dx { s.x_len() } else { 0 });
    if part_len > 0 {
        let parts = partials.par_chunks_mut(part_len).enumerate();
        let min = min_piece(groups);
        if need_dx && img > 0 {
            parts
                .zip(dx.par_chunks_mut(GROUP * img))
                .with_min_len(min)
                .for_each_init(init, |wk, ((g, part), dxg)| group(wk, g, part, Some(dxg)));
        } else {
            parts
                .with_min_len(min)
                .for_each_init(init, |wk, (g, part)| group(wk, g, part, None));
        }
    }
    // Summed in group order: the same bits whichever threads ran which group (a resumed run
    // must match an uninterrupted one).
    let mut sums = vec![0f32; part_len];
    for part in partials.chunks_exact(part_len.max(1)) {
        simd::add_into(&mut sums, part);
    }
    let (dwt, db) = sums.split_at(k * cout);
    let mut dw = vec![0f32; cout * k];
    for (j, row) in dwt.chunks_exact(cout.max(1)).enumerate() {
        for (co, &v) in row.iter().enumerate() {
            dw[co * k + j] = v;
        }
    }
    ConvGrads {
        dx: need_dx.then_some(dx),
        dw: T::narrow(dw),
        db: T::narrow(db.to_vec()),
    }
}

/// y [G, Cout, N] = act(z + b) of z [Cout, G·N] (the group's images side by side), rounded to
/// T: bias, ReLU and the scatter back to NCHW in one pass.
fn bias_act<T: Scalar>(z: &[f32], bias: &[f32], relu: bool, n: usize, y: &mut [T]) {
    if let Some(y) = T::as_f32_mut(y) {
        simd::bias_act_f32(z, bias, relu, n, y);
    } else if let Some(y) = T::as_bf16_mut(y) {
        simd::bias_act_bf16(z, bias, relu, n, y);
    } else {
        let mut y32 = vec![0f32; y.len()];
        simd::bias_act_f32(z, bias, relu, n, &mut y32);
        T::narrow_into(&y32, y);
    }
}

/// dz [Cout, G·N] of the group's dy [G, Cout, N] (the images side by side), times the ReLU
/// derivative through its output y when `relu`. Exact in any T (dz is either dy or zero), so it
/// stays in T for the matmuls.
fn gather_dz<T: Scalar>(dy: &[T], y: &[T], dz: &mut [T], [cout, n]: [usize; 2], relu: bool) {
    if let (Some(dy), Some(y), Some(dz)) = (T::as_f32(dy), T::as_f32(y), T::as_f32_mut(dz)) {
        simd::gather_dz_f32(dy, y, dz, cout, n, relu);
    } else if let (Some(dy), Some(y), Some(dz)) =
        (T::as_bf16(dy), T::as_bf16(y), T::as_bf16_mut(dz))
    {
        simd::gather_dz_bf16(dy, y, dz, cout, n, relu);
    } else {
        let mut d = vec![0f32; dz.len()];
        simd::gather_dz_f32(&T::widen(dy), &T::widen(y), &mut d, cout, n, relu);
        dz.copy_from_slice(&T::narrow(d));
    }
}

/// sums[i] += Σ_j dz[i, j], in f32.
fn add_row_sums<T: Scalar>(sums: &mut [f32], dz: &[T]) {
    if let Some(dz) = T::as_f32(dz) {
        simd::add_row_sums_f32(sums, dz);
    } else if let Some(dz) = T::as_bf16(dz) {
        simd::add_row_sums_bf16(sums, dz);
    } else {
        simd::add_row_sums_f32(sums, &T::widen(dz));
    }
}

/// The geometry im2col and col2im share: planes [C, Hp, Wp] (the input with its zero border,
/// Hp = H + 2·ph, Wp = W + 2·pw) against one image's columns of cols [C·KH·KW, Ho·Wo], row
/// (c, kh, kw) column (oh, ow) being plane c at (oh + kh, ow + kw).
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

    /// The bordered planes, plus slack for the copies' overrun.
    fn planes_len(&self) -> usize {
        self.channels * self.plane_len() + SLACK
    }

    /// Where each row of cols (c, kh, kw, in that order) takes its first element in the
    /// bordered planes: output pixel (oh, ow) of the row is at origin + oh·Wp + ow.
    fn patch_origins(&self) -> impl Iterator<Item = usize> {
        let (plane, wp, [kh_n, kw_n]) = (self.plane_len(), self.plane[1], self.kernel);
        (0..self.channels).flat_map(move |c| {
            (0..kh_n).flat_map(move |kh| (0..kw_n).map(move |kw| c * plane + kh * wp + kw))
        })
    }

    /// C·KH·KW.
    fn rows(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Ho·Wo.
    fn pixels(&self) -> usize {
        self.out[0] * self.out[1]
    }

    /// Where image row r starts in the bordered planes (channel 0).
    fn interior(&self, r: usize) -> usize {
        (r + self.pad[0]) * self.plane[1] + self.pad[1]
    }
}

/// Bytes each portable im2col block copy moves: a fixed size, so it compiles to one vector
/// move. Rows shorter than a block are copied whole and the excess overwritten by the next row
/// (32 bytes: unaligned 64-byte stores, which straddle cache lines, measured slower).
const BLOCK_BYTES: usize = 32;

/// Elements of slack after the planes and after each group's columns in a row of cols: the
/// block copies overrun by less than a block; the AVX-512 gather reads up to two vectors past a
/// start and writes up to one past the end, its plane fill up to 64 bytes past the last row
/// (64 elements at most).
const SLACK: usize = 64;

/// A worker's im2col scratch: the bordered planes and the cols buffer.
struct Im2col<T> {
    geom: Geom,
    /// The border stays zero: only the interior is rewritten (by the AVX-512 fill, with zeros
    /// over the border).
    planes: Vec<T>,
    /// cols [C·KH·KW, ld] for up to `images` images side by side.
    cols: Vec<T>,
    /// images·Ho·Wo + `SLACK`: the last image's overrun in a row lands in the slack rather
    /// than in the next row (an image's overrun into the next image is rewritten after).
    ld: usize,
    /// The AVX-512 path, when the CPU and the geometry allow.
    gather: Option<avx512::Gather>,
}

impl<T: Scalar> Im2col<T> {
    fn new(s: &ConvShape, images: usize) -> Self {
        let geom = Geom::new(s);
        let ld = images * geom.pixels() + SLACK;
        Self {
            geom,
            planes: T::zeros(geom.planes_len()),
            cols: T::zeros(geom.rows() * ld),
            ld,
            gather: avx512::Gather::new::<T>(&geom),
        }
    }

    /// cols [C·KH·KW, count·Ho·Wo] of `count` consecutive images [count, C, H, W], image j in
    /// columns j·Ho·Wo.. (a view with row stride `ld`).
    fn run(&mut self, images: &[T], count: usize) -> Mat<'_, T> {
        let g = self.geom;
        let (h, w) = (g.height, g.width);
        let (n, ld) = (g.pixels(), self.ld);
        let img = g.channels * h * w;
        for j in 0..count {
            let (image, cols) = (&images[j * img..][..img], &mut self.cols[j * n..]);
            if let Some(plan) = &self.gather {
                plan.run(image, &mut self.planes, cols, ld, g);
                continue;
            }
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
            if let (Some(p), Some(c)) = (T::as_f32(&self.planes), T::as_f32_mut(cols)) {
                simd::planes_to_cols_f32(p, c, ld, g);
            } else if let (Some(p), Some(c)) = (T::as_bf16(&self.planes), T::as_bf16_mut(cols)) {
                simd::planes_to_cols_bf16(p, c, ld, g);
            } else {
                planes_to_cols(&self.planes, cols, ld, g);
            }
        }
        Mat::strided(&self.cols, g.rows(), count * n, ld, 1)
    }
}

/// The gather half of im2col, from the bordered planes, into one image's columns of cols (row
/// stride `ld`). `cols` and `planes` have `SLACK` elements of slack.
#[inline(always)]
fn planes_to_cols<T: Copy>(planes: &[T], cols: &mut [T], ld: usize, g: Geom) {
    let block = (BLOCK_BYTES / size_of::<T>()).max(1);
    let [ho, wo] = g.out;
    let wp = g.plane[1];
    for (row, origin) in g.patch_origins().enumerate() {
        // The whole rest of the planes: the last block of a row may run past this plane.
        let patch = &planes[origin..];
        let mut at = row * ld;
        for oh in 0..ho {
            let from = &patch[oh * wp..];
            for j in (0..wo).step_by(block) {
                cols[at + j..][..block].copy_from_slice(&from[j..][..block]);
            }
            at += wo;
        }
    }
}

/// c = a·b (+ c when `accumulate`). f32 on this thread (the groups are the parallel axis): the
/// `gemm` crate without threads. bf16 through `matmul_bf16`, which may split a product over
/// rayon's threads; nested in the group loop that measured as fast as one thread a product.
fn matmul<T: Scalar>(c: MatMut<f32>, a: Mat<T>, b: Mat<T>, accumulate: bool) {
    let (Some(ad), Some(bd)) = (T::as_f32(a.data()), T::as_f32(b.data())) else {
        return T::matmul(c, a, b, accumulate);
    };
    matmul_f32_serial(c, a.with_data(ad), b.with_data(bd), accumulate);
}

/// Whether T is one of the two types the AVX-512 plans are written for.
fn f32_or_bf16<T: Scalar>() -> bool {
    T::as_f32(&[]).is_some() || T::as_bf16(&[]).is_some()
}

mod avx512;

mod simd;

#[cfg(test)]
mod tests;
