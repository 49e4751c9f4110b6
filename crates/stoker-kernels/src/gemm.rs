//! Matrix products on strided views: f32 through the `gemm` crate, bf16 inputs with f32
//! accumulation and output (so a fused bias / activation runs once in f32 before any rounding).

use std::sync::atomic::{AtomicU64, Ordering};

use gemm::Parallelism;
use half::bf16;

/// FLOPs (2·m·n·k) of every product run so far in this process: one relaxed atomic add per
/// product, so benchmarks can report the GFLOP/s a model step achieves in its products.
static PRODUCT_FLOPS: AtomicU64 = AtomicU64::new(0);

/// FLOPs of the products run so far (f32 and bf16; a bf16 product widened to f32 counts once).
pub fn product_flops() -> u64 {
    PRODUCT_FLOPS.load(Ordering::Relaxed)
}

fn count_product(m: usize, n: usize, k: usize) {
    let flops = 2 * (m as u64) * (n as u64) * (k as u64);
    PRODUCT_FLOPS.fetch_add(flops, Ordering::Relaxed);
}

/// A read-only matrix view: element (i, j) is `data[i * row_stride + j * col_stride]`.
///
/// Built only by the checked constructors below, so every element of a view lies inside its
/// slice: the products hand views to raw-pointer kernels on that guarantee.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// Elements a rows × cols view with these strides spans (0 when empty), or None on overflow.
fn extent(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(row_stride)?
        .checked_add((cols - 1).checked_mul(col_stride)?)?
        .checked_add(1)
}

impl<'a, T> Mat<'a, T> {
    /// A contiguous row-major matrix. Panics unless `data` holds rows × cols elements.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// A view with element (i, j) at `data[i * row_stride + j * col_stride]`. Panics unless
    /// every element lies inside `data` (computed without overflow) and both strides fit
    /// `isize` (the kernels offset pointers by them).
    pub fn strided(
        data: &'a [T],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        assert!(
            isize::try_from(row_stride).is_ok() && isize::try_from(col_stride).is_ok(),
            "matrix view: strides {row_stride}, {col_stride} exceed isize::MAX"
        );
        let needed = extent(rows, cols, row_stride, col_stride);
        assert!(
            needed.is_some_and(|n| n <= data.len()),
            "matrix view: {rows} x {cols} with strides ({row_stride}, {col_stride}) exceeds its {} elements",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// The sub-view of `rows` × `cols` elements from (row0, col0), strides unchanged. Panics
    /// unless it lies inside this view.
    pub fn block(self, row0: usize, rows: usize, col0: usize, cols: usize) -> Self {
        assert!(
            row0.checked_add(rows).is_some_and(|end| end <= self.rows)
                && col0.checked_add(cols).is_some_and(|end| end <= self.cols),
            "matrix view: block {row0}+{rows} x {col0}+{cols} outside {} x {}",
            self.rows,
            self.cols
        );
        // In the view, so the offset is inside data (and the block's extent within the rest).
        let start = if rows == 0 || cols == 0 {
            0
        } else {
            row0 * self.row_stride + col0 * self.col_stride
        };
        Self::strided(
            &self.data[start..],
            rows,
            cols,
            self.row_stride,
            self.col_stride,
        )
    }

    pub fn data(&self) -> &'a [T] {
        self.data
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn row_stride(&self) -> usize {
        self.row_stride
    }

    pub fn col_stride(&self) -> usize {
        self.col_stride
    }

    /// The same shape and strides over another slice of the same length (a reinterpretation
    /// of `data`, e.g. `[T]` that is `[f32]`).
    pub fn with_data<U>(&self, data: &'a [U]) -> Mat<'a, U> {
        assert_eq!(
            data.len(),
            self.data.len(),
            "matrix view: new data's length"
        );
        Mat {
            data,
            rows: self.rows,
            cols: self.cols,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
        }
    }

    /// Element (i, j). Panics outside the view.
    pub fn at(&self, i: usize, j: usize) -> T
    where
        T: Copy,
    {
        assert!(
            i < self.rows && j < self.cols,
            "matrix view: ({i}, {j}) outside {} x {}",
            self.rows,
            self.cols
        );
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

/// A contiguous row-major output matrix, built only by the checked `row_major`: its slice holds
/// rows × cols elements.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
}

impl<'a, T> MatMut<'a, T> {
    /// Panics unless `data` holds rows × cols elements (computed without overflow).
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        assert!(
            rows.checked_mul(cols).is_some_and(|n| n <= data.len()),
            "output matrix: {rows} x {cols} exceeds its {} elements",
            data.len()
        );
        Self { data, rows, cols }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// `src` [rows, cols] row-major, transposed into [cols, rows] row-major: for products that
/// would read a matrix through `Mat::t`, which the f32 gemm reads at about half speed as a
/// right operand (`gemm_speed dG`: the LSTM's dgates·whᵀ through a view and through a copy).
pub fn transposed<T: Copy + Default>(src: &[T], rows: usize, cols: usize) -> Vec<T> {
    crate::size::expect_len(
        "transposed: src must be [rows, cols]",
        src.len(),
        &[rows, cols],
    );
    let mut out = vec![T::default(); rows * cols];
    for (i, row) in src.chunks_exact(cols.max(1)).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j * rows + i] = v;
        }
    }
    out
}

fn check_shapes<A, B, C>(c: &MatMut<C>, a: &Mat<A>, b: &Mat<B>) {
    assert_eq!(a.cols, b.rows, "matmul: inner dimensions differ");
    assert_eq!((c.rows, c.cols), (a.rows, b.cols), "matmul: output shape");
}

/// Checks the shapes; true when the product is done without a kernel: c empty, or no inner
/// dimension to sum over (then c is zeroed unless accumulating).
fn nothing_to_sum<T>(c: &mut MatMut<f32>, a: &Mat<T>, b: &Mat<T>, accumulate: bool) -> bool {
    check_shapes(c, a, b);
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        if !accumulate {
            c.data[..m * n].fill(0.0);
        }
        return true;
    }
    false
}

/// Below this many multiply-adds a second thread costs more than it saves.
const PARALLEL_MIN_FLOPS: usize = 1 << 21;

fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_FLOPS {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    }
}

/// c = a·b, or c += a·b when `accumulate`.
pub fn matmul_f32(c: MatMut<f32>, a: Mat<f32>, b: Mat<f32>, accumulate: bool) {
    let p = parallelism(a.rows, b.cols, a.cols);
    gemm_f32(c, a, b, accumulate, p);
}

/// `matmul_f32` on the calling thread only, for callers that parallelise over their own axis.
pub fn matmul_f32_serial(c: MatMut<f32>, a: Mat<f32>, b: Mat<f32>, accumulate: bool) {
    gemm_f32(c, a, b, accumulate, Parallelism::None);
}

fn gemm_f32(mut c: MatMut<f32>, a: Mat<f32>, b: Mat<f32>, accumulate: bool, p: Parallelism) {
    if nothing_to_sum(&mut c, &a, &b, accumulate) {
        return;
    }
    let (m, n, k) = (a.rows, b.cols, a.cols);
    count_product(m, n, k);
    let stride = |s: usize| s as isize; // fits: checked when the view was built
    // SAFETY: shapes checked above; `Mat`'s constructors put every element of a and b inside
    // their slices (non-negative strides that fit isize), and `MatMut::row_major` checked that
    // c's slice holds m × n.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.data.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            stride(a.col_stride),
            stride(a.row_stride),
            b.data.as_ptr(),
            stride(b.col_stride),
            stride(b.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            p,
        );
    }
}

/// Whether `matmul_bf16` runs the native AVX512_BF16 kernel on this CPU (else it widens to
/// f32 and runs `matmul_f32`).
pub fn native_bf16_available() -> bool {
    crate::cpu::avx512_bf16()
}

/// c = a·b, or c += a·b when `accumulate`, with bf16 inputs and f32 accumulation.
///
/// On CPUs with AVX512_BF16 this runs a native `vdpbf16ps` kernel on any non-negative
/// strides (products of bf16 pairs summed in f32; denormal inputs and outputs flush to
/// zero), threaded with rayon when big enough; elsewhere it widens to f32 and runs
/// `matmul_f32`.
pub fn matmul_bf16(c: MatMut<f32>, a: Mat<bf16>, b: Mat<bf16>, accumulate: bool) {
    bf16_product(c, a, b, accumulate, true);
}

/// `matmul_bf16` on the calling thread only, for callers that parallelise over their own axis.
pub fn matmul_bf16_serial(c: MatMut<f32>, a: Mat<bf16>, b: Mat<bf16>, accumulate: bool) {
    bf16_product(c, a, b, accumulate, false);
}

/// A bf16 right operand packed once for many products with it — a layer's weights, which every
/// block of rows and every step of a recurrence multiplies: [`matmul_bf16_packed_serial`] then
/// skips the packing `matmul_bf16` does on every call. Where the native kernel does not run it
/// holds b widened to f32 once, so those products widen only a.
pub struct PackedBf16<'a> {
    b: Mat<'a, bf16>,
    #[cfg(target_arch = "x86_64")]
    native: Option<native::Packed>,
    /// b widened (empty when the native kernel runs), and that view's row and column strides.
    wide: Vec<f32>,
    wide_strides: (usize, usize),
}

impl<'a> PackedBf16<'a> {
    pub fn new(b: Mat<'a, bf16>) -> Self {
        #[cfg(target_arch = "x86_64")]
        let native = native::Packed::new(&b);
        #[cfg(target_arch = "x86_64")]
        let portable = native.is_none();
        #[cfg(not(target_arch = "x86_64"))]
        let portable = true;
        let mut wide = Vec::new();
        let wide_strides = if portable {
            widen_view(&b, &mut wide)
        } else {
            (b.cols, 1)
        };
        Self {
            #[cfg(target_arch = "x86_64")]
            native,
            b,
            wide,
            wide_strides,
        }
    }
}

/// `matmul_bf16_serial` with b packed in advance.
pub fn matmul_bf16_packed_serial(
    mut c: MatMut<f32>,
    a: Mat<bf16>,
    b: &PackedBf16,
    accumulate: bool,
) {
    if nothing_to_sum(&mut c, &a, &b.b, accumulate) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(packed) = &b.native {
        count_product(a.rows, b.b.cols, a.cols);
        native::matmul_packed(c, a, packed, accumulate);
        return;
    }
    let (row_stride, col_stride) = b.wide_strides;
    let wide_b = Mat::strided(&b.wide, b.b.rows, b.b.cols, row_stride, col_stride);
    with_widened(&a, |wide_a| {
        matmul_f32_serial(c, wide_a, wide_b, accumulate)
    });
}

fn bf16_product(mut c: MatMut<f32>, a: Mat<bf16>, b: Mat<bf16>, accumulate: bool, threaded: bool) {
    if nothing_to_sum(&mut c, &a, &b, accumulate) {
        return;
    }
    // The native path wins at every size (even 7x5x3: the portable one widens both inputs).
    #[cfg(target_arch = "x86_64")]
    if native_bf16_available() {
        count_product(a.rows, b.cols, a.cols);
        native::matmul(c, a, b, accumulate, threaded);
        return;
    }
    matmul_bf16_portable(c, a, b, accumulate, threaded);
}

/// The portable path: widen to f32 and run the f32 product.
fn matmul_bf16_portable(
    c: MatMut<f32>,
    a: Mat<bf16>,
    b: Mat<bf16>,
    accumulate: bool,
    threaded: bool,
) {
    with_widened(&a, |wide_a| {
        with_widened(&b, |wide_b| {
            if threaded {
                matmul_f32(c, wide_a, wide_b, accumulate);
            } else {
                matmul_f32_serial(c, wide_a, wide_b, accumulate);
            }
        })
    });
}

/// `v` as a row-major f32 matrix in `out` (resized), each row widened by the vectorised
/// converter when its elements are contiguous.
fn widen_row_major(v: &Mat<bf16>, out: &mut Vec<f32>) {
    // Every element is overwritten below: no fill pass when the length is already right.
    if out.len() != v.rows * v.cols {
        out.clear();
        out.resize(v.rows * v.cols, 0.0);
    }
    if v.cols == 0 {
        return;
    }
    for (i, row) in out.chunks_exact_mut(v.cols).enumerate() {
        if v.col_stride == 1 {
            let start = i * v.row_stride;
            <bf16 as crate::scalar::Scalar>::widen_into(&v.data[start..start + v.cols], row);
        } else {
            for (j, o) in row.iter_mut().enumerate() {
                *o = v.at(i, j).to_f32();
            }
        }
    }
}

/// `v` widened to f32 into `out`; returns the strides of the f32 view of it. A view that spans
/// little more than its elements (a row-major block, or a transposed one) is widened whole by
/// the vectorised converter and keeps its strides, so the f32 product sees the same layout
/// (and gives the same bits) however the bf16 operand reached it; any other view is gathered
/// row by row.
fn widen_view(v: &Mat<bf16>, out: &mut Vec<f32>) -> (usize, usize) {
    let span = extent(v.rows, v.cols, v.row_stride, v.col_stride).unwrap_or(usize::MAX);
    if span <= 2 * v.rows * v.cols {
        if out.len() != span {
            out.clear();
            out.resize(span, 0.0);
        }
        <bf16 as crate::scalar::Scalar>::widen_into(&v.data[..span], out);
        return (v.row_stride, v.col_stride);
    }
    widen_row_major(v, out);
    (v.cols, 1)
}

thread_local! {
    /// Widening buffers reused between products on this thread (taken out while in use, so a
    /// product that runs another one on this thread, as rayon may, finds the slot empty).
    static WIDE: std::cell::Cell<Vec<Vec<f32>>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` on `v` widened to f32, in a buffer reused between calls: the portable bf16
/// products widen an operand on every call.
fn with_widened<R>(v: &Mat<bf16>, f: impl FnOnce(Mat<f32>) -> R) -> R {
    let mut buf = WIDE.with(|slot| {
        let mut free = slot.take();
        let buf = free.pop().unwrap_or_default();
        slot.set(free);
        buf
    });
    let (row_stride, col_stride) = widen_view(v, &mut buf);
    let result = f(Mat::strided(&buf, v.rows, v.cols, row_stride, col_stride));
    // Operands of a few MB (a block of rows, a layer's weights) are kept for the next call;
    // a larger one is freed, not held by the thread for the rest of the process.
    if buf.capacity() <= KEPT_WIDE_MAX {
        WIDE.with(|slot| {
            let mut free = slot.take();
            free.push(buf);
            slot.set(free);
        });
    }
    result
}

/// The largest widening buffer (in f32 values, 8 MB) a thread keeps between products.
const KEPT_WIDE_MAX: usize = 1 << 21;

#[cfg(target_arch = "x86_64")]
mod bf16_avx512;

/// Threading and special cases around the AVX512_BF16 kernel.
#[cfg(target_arch = "x86_64")]
mod native {
    use super::bf16_avx512::{self as k512, BSource, MR, NR, PackedB, Raw};
    use super::{Mat, MatMut, PARALLEL_MIN_FLOPS};
    use half::bf16;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Raw pointers (c and the views) handed to rayon workers.
    #[derive(Clone, Copy)]
    struct AssertSend<T>(T);
    // SAFETY: the workers read the inputs, and write disjoint rows or columns of c, only
    // while `run_slabs` keeps the borrowed slices alive (it returns when all are done).
    unsafe impl<T> Send for AssertSend<T> {}
    unsafe impl<T> Sync for AssertSend<T> {}

    fn raw(v: &Mat<bf16>) -> Raw {
        // The strides fit isize: checked when the view was built.
        Raw {
            ptr: v.data.as_ptr().cast(),
            rs: v.row_stride as isize,
            cs: v.col_stride as isize,
        }
    }

    /// B packed for the native kernel (None on CPUs without it, or when B is empty).
    pub(super) struct Packed(PackedB);

    impl Packed {
        pub(super) fn new(b: &Mat<bf16>) -> Option<Self> {
            if !super::native_bf16_available() || b.rows == 0 || b.cols == 0 {
                return None;
            }
            // SAFETY: `Mat` keeps every element of the view inside its slice;
            // `native_bf16_available` detected avx512f/bw/vl/bf16, the features `new` needs.
            Some(Self(unsafe { PackedB::new(raw(b), b.rows, b.cols) }))
        }
    }

    /// c (+)= a·b on the calling thread, b packed in advance. Caller checked the shapes (a
    /// m x k, b k x n, c m x n with m, n, k > 0).
    pub(super) fn matmul_packed(c: MatMut<f32>, a: Mat<bf16>, b: &Packed, accumulate: bool) {
        let (m, n, k) = (a.rows, c.cols, a.cols);
        assert_eq!(b.0.shape(), (k, n), "matmul_bf16_packed: b's shape");
        // SAFETY: a in bounds (its view), c is m x n row-major, b was packed as k x n on a CPU
        // with the kernel's features.
        unsafe {
            k512::gemm(
                c.data.as_mut_ptr(),
                n,
                m,
                n,
                k,
                raw(&a),
                BSource::Packed(&b.0),
                accumulate,
            )
        };
    }

    /// Caller checked: CPU features and shapes; `Mat` and `MatMut` guarantee the views in
    /// bounds and c holding m * n. Splits the
    /// product over rayon's threads when `threaded` and it is big enough.
    pub(super) fn matmul(
        c: MatMut<f32>,
        a: Mat<bf16>,
        b: Mat<bf16>,
        accumulate: bool,
        threaded: bool,
    ) {
        let (m, n, k) = (a.rows, b.cols, a.cols);
        let cp = c.data.as_mut_ptr();
        // c = mat·v, `rows` outputs, for a `rows` x k matrix whose rows are contiguous and
        // `stride` apart: one dot product per output, no packing.
        let gemv = |rows: usize, mat: &[bf16], stride: usize, v: Vec<bf16>| {
            // SAFETY: the callers pass a view checked in bounds with `rows` rows of k, v of k
            // elements, and c holds `rows` (m * n with m or n 1).
            unsafe {
                k512::gemv(
                    cp,
                    1,
                    rows,
                    k,
                    mat.as_ptr().cast(),
                    stride as isize,
                    v.as_ptr().cast(),
                    accumulate,
                )
            };
        };
        if n == 1 && a.col_stride == 1 {
            gemv(
                m,
                a.data,
                a.row_stride,
                (0..k).map(|p| b.at(p, 0)).collect(),
            );
            return;
        }
        if m == 1 && b.row_stride == 1 {
            // c^T = b^T a^T: the rows of b^T are b's columns, contiguous.
            gemv(
                n,
                b.data,
                b.col_stride,
                (0..k).map(|p| a.at(0, p)).collect(),
            );
            return;
        }
        if k == 1 && b.col_stride == 1 {
            // SAFETY: a's column and b's row are in bounds (checked), c holds m * n.
            unsafe {
                k512::outer(
                    cp,
                    m,
                    n,
                    a.data.as_ptr().cast(),
                    a.row_stride as isize,
                    b.data.as_ptr().cast(),
                    accumulate,
                )
            };
            return;
        }
        if n == 1 && a.row_stride == 1 {
            // A transposed matrix times a vector (a weight gradient of a one-output layer):
            // c = Σ_p b[p]·(column p of a), each column contiguous.
            let v: Vec<f32> = (0..k).map(|p| b.at(p, 0).to_f32()).collect();
            // SAFETY: a's columns are in bounds (checked), v has k elements, c has m.
            unsafe {
                k512::gemv_columns(
                    cp,
                    m,
                    k,
                    a.data.as_ptr().cast(),
                    a.col_stride as isize,
                    &v,
                    accumulate,
                )
            };
            return;
        }
        let (a, b) = (raw(&a), raw(&b));
        let threads = if threaded {
            rayon::current_num_threads()
        } else {
            1
        };
        if threads < 2 || m.saturating_mul(n).saturating_mul(k) < PARALLEL_MIN_FLOPS {
            // SAFETY: views in bounds, c is m x n row-major, features checked by the caller.
            unsafe { k512::gemm(cp, n, m, n, k, a, BSource::Raw(b), accumulate) };
            return;
        }
        // Split c into slabs of whole tiles along M or N, whichever balances better over the
        // threads; each slab packs its own copy of the other operand, so count that too.
        let (tm, tn) = (m.div_ceil(MR), n.div_ceil(NR));
        let per = |tiles: usize| tiles.div_ceil(threads);
        const PACK_COST: usize = 4; // multiply-adds per packed element, roughly
        let cost_m = per(tm) * MR * n.next_multiple_of(NR) * k + PACK_COST * k * (n + per(tm) * MR);
        let cost_n = per(tn) * NR * m.next_multiple_of(MR) * k + PACK_COST * k * (m + per(tn) * NR);
        let split_m = cost_m <= cost_n;
        // Big products get up to 4 slabs per thread (a multiple of the threads, so none is
        // left over for one thread at the end), for the threads to balance when one is slowed
        // down by other work on the machine. Smaller ones get one slab per thread: measured,
        // finer slabs cost more than they balance there (each re-packs an operand and starts
        // with a cold A panel).
        const SLAB_MIN_FLOPS: usize = 1 << 25;
        let tiles = if split_m { tm } else { tn };
        let per_thread = (m.saturating_mul(n).saturating_mul(k) / (SLAB_MIN_FLOPS * threads))
            .min(tiles / (8 * threads))
            .clamp(1, 4);
        let step = tiles.div_ceil(per_thread * threads) * if split_m { MR } else { NR };
        let total = if split_m { m } else { n };
        let (cp, a, b) = (AssertSend(cp), AssertSend(a), AssertSend(b));
        // Past ~1 ms of work, the ~20 us a caller outside the pool loses sleeping until the
        // pool is done is noise, and its core is free for a worker at once.
        let big = m.saturating_mul(n).saturating_mul(k) >= 1 << 27;
        run_slabs(total.div_ceil(step), threads, big, move |index| {
            let (cp, a, b) = (cp, a, b);
            let start = index * step;
            let len = step.min(total - start);
            // SAFETY: slabs are disjoint row (or column) ranges of c; the sub-views start
            // inside the checked views; `run_slabs` returns once every slab is done.
            unsafe {
                if split_m {
                    let a = a.0.offset(start, 0);
                    k512::gemm(
                        cp.0.add(start * n),
                        n,
                        len,
                        n,
                        k,
                        a,
                        BSource::Raw(b.0),
                        accumulate,
                    );
                } else {
                    let b = b.0.offset(0, start);
                    k512::gemm(
                        cp.0.add(start),
                        n,
                        m,
                        len,
                        k,
                        a.0,
                        BSource::Raw(b),
                        accumulate,
                    );
                }
            }
        });
    }

    /// Runs `slab(0..count)` on `threads` threads, each taking the next slab from a shared
    /// counter when it is free; returns when all are done.
    ///
    /// Unless `in_pool`, a caller outside the rayon pool is one of the threads rather than
    /// sleeping until the pool is done (`rayon::scope` sends the whole job to the pool and
    /// wakes the caller after, ~20 us per call here), and waits for the last slabs by
    /// spinning. On a loaded machine a helper woken next to a busy caller may start late;
    /// the caller then takes its slabs, so the product is never slower than one thread.
    fn run_slabs(
        count: usize,
        threads: usize,
        in_pool: bool,
        slab: impl Fn(usize) + Copy + Send + Sync + 'static,
    ) {
        struct Shared {
            next: AtomicUsize,
            done: AtomicUsize,
        }
        let shared = Arc::new(Shared {
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        });
        let work = move |shared: &Shared| {
            loop {
                let index = shared.next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    break;
                }
                slab(index);
                // Release: the slab's writes to c happen before the caller sees it done.
                shared.done.fetch_add(1, Ordering::Release);
            }
        };
        let helpers = (threads - 1).min(count - 1);
        if in_pool || rayon::current_thread_index().is_some() {
            // On a worker, the scope's wait keeps this thread busy with other jobs.
            rayon::scope(|s| {
                for _ in 0..helpers {
                    let shared = &shared;
                    s.spawn(move |_| work(shared));
                }
                work(&shared);
            });
            return;
        }
        for _ in 0..helpers {
            let shared = Arc::clone(&shared);
            rayon::spawn(move || work(&shared));
        }
        // Helpers may still be writing into c: unwinding past them would free it under
        // their feet. The kernels do not panic; if one ever does, abort.
        struct AbortOnUnwind;
        impl Drop for AbortOnUnwind {
            fn drop(&mut self) {
                std::process::abort();
            }
        }
        let guard = AbortOnUnwind;
        work(&shared);
        // Acquire: pairs with the helpers' Release, their slabs of c are complete.
        while shared.done.load(Ordering::Acquire) < count {
            std::thread::yield_now();
        }
        std::mem::forget(guard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo_random;

    fn naive(a: &Mat<f32>, b: &Mat<f32>) -> Vec<f32> {
        let mut c = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] = (0..a.cols).map(|p| a.at(i, p) * b.at(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn f32_matches_naive_on_transposed_views_and_accumulates() {
        let (m, n, k) = (37, 29, 53);
        let a = pseudo_random(m * k, 1, 1.0);
        let bt = pseudo_random(n * k, 2, 1.0);
        let av = Mat::row_major(&a, m, k);
        let bv = Mat::row_major(&bt, n, k).t();
        let want = naive(&av, &bv);
        let mut c = vec![1.0; m * n];
        matmul_f32(MatMut::row_major(&mut c, m, n), av, bv, true);
        for (got, want) in c.iter().zip(&want) {
            assert!((got - (want + 1.0)).abs() < 1e-4, "{got} vs {}", want + 1.0);
        }
    }

    /// Reference on bf16 inputs, accumulated in f64; also returns sum |a||b| per element,
    /// the scale of the rounding error f32 accumulation may make.
    fn naive_bf16(a: &Mat<bf16>, b: &Mat<bf16>) -> (Vec<f64>, Vec<f64>) {
        let (m, n, k) = (a.rows, b.cols, a.cols);
        let mut c = vec![0.0; m * n];
        let mut scale = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let x = a.at(i, p).to_f64() * b.at(p, j).to_f64();
                    c[i * n + j] += x;
                    scale[i * n + j] += x.abs();
                }
            }
        }
        (c, scale)
    }

    /// How a test operand is stored.
    #[derive(Clone, Copy, Debug)]
    struct Layout {
        /// Stored as the transpose of a row-major matrix (column-major).
        transposed: bool,
        /// Unused elements after each stored row.
        pad: usize,
        /// Distance between consecutive elements of a stored row (2: neither stride is 1).
        step: usize,
    }

    /// A rows x cols bf16 matrix stored as `lay`: the storage and the view's strides.
    fn layout(rows: usize, cols: usize, lay: Layout, seed: u32) -> (Vec<bf16>, usize, usize) {
        let (outer, inner) = if lay.transposed {
            (cols, rows)
        } else {
            (rows, cols)
        };
        let ld = inner * lay.step + lay.pad;
        let data: Vec<bf16> = pseudo_random(outer * ld, seed, 1.0)
            .into_iter()
            .map(bf16::from_f32)
            .collect();
        let step = lay.step;
        if lay.transposed {
            (data, step, ld)
        } else {
            (data, ld, step)
        }
    }

    /// Checks matmul_bf16 against the reference for one shape and layout; `c` starts at a
    /// known value so accumulate is checked too.
    fn check_bf16(
        m: usize,
        n: usize,
        k: usize,
        la: Layout,
        lb: Layout,
        accumulate: bool,
        seed: u32,
    ) {
        let (ad, ars, acs) = layout(m, k, la, seed);
        let (bd, brs, bcs) = layout(k, n, lb, seed + 1);
        let a = Mat::strided(&ad, m, k, ars, acs);
        let b = Mat::strided(&bd, k, n, brs, bcs);
        let init = pseudo_random(m * n, seed + 2, 1.0);
        let mut c = init.clone();
        matmul_bf16(MatMut::row_major(&mut c, m, n), a, b, accumulate);
        // Threads split c, never the sum: one thread gives the same bits.
        let mut serial = init.clone();
        matmul_bf16_serial(MatMut::row_major(&mut serial, m, n), a, b, accumulate);
        assert_eq!(
            c, serial,
            "m={m} n={n} k={k}: serial and threaded products differ"
        );
        // B packed in advance: the same kernel and blocking as the serial product's (which
        // takes other kernels for m, n or k of 1), so the same bits.
        let mut packed = init.clone();
        let pb = PackedBf16::new(b);
        matmul_bf16_packed_serial(MatMut::row_major(&mut packed, m, n), a, &pb, accumulate);
        if m > 1 && n > 1 && k > 1 {
            assert_eq!(packed, serial, "m={m} n={n} k={k}: b packed in advance");
        }
        let (want, scale) = naive_bf16(&a, &b);
        for idx in 0..m * n {
            let err =
                (packed[idx] as f64 - want[idx] - if accumulate { init[idx] as f64 } else { 0.0 })
                    .abs();
            assert!(
                err <= 1e-6 * (scale[idx] + (init[idx] as f64).abs()) + 1e-30,
                "packed b off by {err:e}"
            );
        }
        for idx in 0..m * n {
            let base = if accumulate { init[idx] as f64 } else { 0.0 };
            let w = want[idx] + base;
            let err = (c[idx] as f64 - w).abs();
            let tol = 1e-6 * (scale[idx] + base.abs()) + 1e-30;
            assert!(
                err <= tol,
                "m={m} n={n} k={k} a={la:?} b={lb:?} acc={accumulate}: c[{}, {}] = {} want {w} (err {err:e} > {tol:e})",
                idx / n,
                idx % n,
                c[idx]
            );
        }
    }

    /// Row-major (`t` false) or column-major, with `pad` unused elements after each row.
    fn lay(t: bool, pad: usize) -> Layout {
        Layout {
            transposed: t,
            pad,
            step: 1,
        }
    }

    #[test]
    fn bf16_matches_reference_on_random_shapes_layouts_and_edges() {
        let mut s = 12345u32;
        let mut next = |hi: u32| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            1 + (s % hi) as usize
        };
        for case in 0..500u32 {
            let (m, n, k) = (next(70), next(70), next(70));
            let pad = |r: usize| if case % 3 == 0 { 0 } else { r };
            // Both transposes of both operands; every fifth operand strided in both axes.
            let la = Layout {
                transposed: case % 2 == 1,
                pad: pad(next(5)),
                step: if case % 5 == 3 { 2 } else { 1 },
            };
            let lb = Layout {
                transposed: case / 2 % 2 == 1,
                pad: pad(next(5)),
                step: if case % 5 == 4 { 2 } else { 1 },
            };
            check_bf16(m, n, k, la, lb, case % 7 < 3, case);
        }
    }

    #[test]
    fn bf16_handles_degenerate_and_tiny_shapes() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 1, 2),
            (1, 1, 3),
            (7, 5, 3),
            (7, 3, 5),
            (1, 40, 33),
            (40, 1, 33),
            (14, 32, 1),
            (15, 33, 2),
            (1, 1, 200),
        ] {
            for case in 0..8u32 {
                let pad = (case / 4) as usize * 3;
                check_bf16(
                    m,
                    n,
                    k,
                    lay(case % 2 == 1, pad),
                    lay(case / 2 % 2 == 1, pad),
                    case % 3 == 0,
                    case + 77,
                );
            }
        }
        // k = 0: c = 0, or unchanged when accumulating.
        let (a, b) = (vec![bf16::ZERO; 0], vec![bf16::ZERO; 0]);
        let mut c = vec![3.0f32; 6];
        matmul_bf16(
            MatMut::row_major(&mut c, 2, 3),
            Mat::row_major(&a, 2, 0),
            Mat::row_major(&b, 0, 3),
            true,
        );
        assert_eq!(c, vec![3.0; 6]);
        matmul_bf16(
            MatMut::row_major(&mut c, 2, 3),
            Mat::row_major(&a, 2, 0),
            Mat::row_major(&b, 0, 3),
            false,
        );
        assert_eq!(c, vec![0.0; 6]);
    }

    #[test]
    fn bf16_large_shapes_cross_blocks_and_threads() {
        // K past one K block (512), N past one N block (512), M past one M block and split
        // over threads, with every layout; a GEMV both ways round.
        check_bf16(300, 530, 1100, lay(false, 0), lay(false, 0), false, 1);
        check_bf16(300, 530, 1100, lay(true, 3), lay(true, 3), true, 2);
        check_bf16(1030, 40, 577, lay(false, 0), lay(true, 0), true, 3);
        check_bf16(40, 1030, 577, lay(true, 1), lay(false, 0), false, 4);
        let strided = Layout {
            transposed: false,
            pad: 1,
            step: 3,
        };
        check_bf16(70, 90, 530, strided, strided, true, 5);
        check_bf16(1024, 1, 384, lay(false, 0), lay(false, 0), false, 6);
        check_bf16(1, 1024, 384, lay(false, 0), lay(true, 0), true, 7);
        check_bf16(1, 1, 700, lay(true, 0), lay(false, 2), false, 8);
        // A transposed GEMV (a one-output layer's weight gradient), past one 64-row block.
        check_bf16(384, 1, 1279, lay(true, 0), lay(false, 0), false, 9);
        check_bf16(300, 1, 40, lay(true, 0), lay(false, 0), true, 13);
        check_bf16(71, 1, 30, lay(true, 2), lay(true, 1), true, 10);
        // K = 1: an outer product.
        check_bf16(113, 384, 1, lay(false, 0), lay(false, 0), false, 11);
        check_bf16(20, 37, 1, lay(true, 3), lay(false, 2), true, 12);
    }

    /// A packed buffer reused from an earlier packing of the same shape (stale values of other
    /// data, NaN here) gives the product of the new data.
    #[test]
    fn bf16_packed_reuses_buffers_of_earlier_packings() {
        let (m, n, k) = (30, 70, 45);
        let ad = <bf16 as crate::scalar::Scalar>::narrow(pseudo_random(m * k, 21, 1.0));
        let a = Mat::row_major(&ad, m, k);
        let nan = vec![bf16::NAN; k * n];
        drop(PackedBf16::new(Mat::row_major(&nan, k, n)));
        let bd = <bf16 as crate::scalar::Scalar>::narrow(pseudo_random(k * n, 22, 1.0));
        let b = Mat::row_major(&bd, k, n);
        let (mut packed, mut plain) = (vec![0.0; m * n], vec![0.0; m * n]);
        let pb = PackedBf16::new(b);
        matmul_bf16_packed_serial(MatMut::row_major(&mut packed, m, n), a, &pb, false);
        matmul_bf16_serial(MatMut::row_major(&mut plain, m, n), a, b, false);
        assert_eq!(packed, plain);
    }

    #[test]
    fn bf16_native_kernel_is_used_and_agrees_with_portable_path() {
        if !native_bf16_available() {
            eprintln!("skipped: this CPU lacks avx512bf16, matmul_bf16 runs the portable path");
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let (m, n, k) = (333, 257, 301);
            let ad: Vec<bf16> = pseudo_random(m * k, 9, 1.0)
                .into_iter()
                .map(bf16::from_f32)
                .collect();
            let bd: Vec<bf16> = pseudo_random(k * n, 10, 1.0)
                .into_iter()
                .map(bf16::from_f32)
                .collect();
            let (a, b) = (Mat::row_major(&ad, m, k), Mat::row_major(&bd, k, n));
            let mut native_c = vec![0.0; m * n];
            native::matmul(MatMut::row_major(&mut native_c, m, n), a, b, false, true);
            let mut public_c = vec![0.0; m * n];
            matmul_bf16(MatMut::row_major(&mut public_c, m, n), a, b, false);
            // The public entry point took the native path: bit-identical results ...
            assert_eq!(native_c, public_c);
            let mut portable_c = vec![0.0; m * n];
            matmul_bf16_portable(MatMut::row_major(&mut portable_c, m, n), a, b, false, true);
            // ... where the portable path sums in another order, so the comparison above
            // can tell the two apart.
            assert_ne!(native_c, portable_c);
            let (want, scale) = naive_bf16(&a, &b);
            for idx in 0..m * n {
                assert!((native_c[idx] as f64 - want[idx]).abs() <= 1e-6 * scale[idx]);
                assert!((portable_c[idx] as f64 - want[idx]).abs() <= 1e-6 * scale[idx]);
            }
        }
    }
}
