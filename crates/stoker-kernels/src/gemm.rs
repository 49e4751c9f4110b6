//! Matrix products on strided views: f32 through the `gemm` crate, bf16 inputs with f32
//! accumulation and output (so a fused bias / activation runs once in f32 before any rounding).

use gemm::Parallelism;
use half::bf16;

/// A read-only matrix view: element (i, j) is `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: isize,
    pub col_stride: isize,
}

impl<'a, T> Mat<'a, T> {
    /// A contiguous row-major matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix view exceeds its data");
        Self {
            data,
            rows,
            cols,
            row_stride: cols as isize,
            col_stride: 1,
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

    pub fn at(&self, i: usize, j: usize) -> T
    where
        T: Copy,
    {
        self.data[(i as isize * self.row_stride + j as isize * self.col_stride) as usize]
    }
}

/// A contiguous row-major output matrix.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    pub data: &'a mut [T],
    pub rows: usize,
    pub cols: usize,
}

impl<'a, T> MatMut<'a, T> {
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix view exceeds its data");
        Self { data, rows, cols }
    }
}

/// `src` [rows, cols] row-major, transposed into [cols, rows] row-major: for products that
/// would read a matrix through `Mat::t`, which the f32 gemm reads at about half speed as a
/// right operand (`gemm_speed dG`: the LSTM's dgates·whᵀ through a view and through a copy).
pub fn transposed<T: Copy + Default>(src: &[T], rows: usize, cols: usize) -> Vec<T> {
    assert_eq!(src.len(), rows * cols, "transposed: shape");
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

fn gemm_f32(c: MatMut<f32>, a: Mat<f32>, b: Mat<f32>, accumulate: bool, p: Parallelism) {
    check_shapes(&c, &a, &b);
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.data[..m * n].fill(0.0);
        }
        return;
    }
    let in_bounds = |v: &Mat<f32>| {
        v.row_stride >= 0
            && v.col_stride >= 0
            && (v.rows - 1) * (v.row_stride as usize) + (v.cols - 1) * (v.col_stride as usize)
                < v.data.len()
    };
    assert!(
        in_bounds(&a) && in_bounds(&b),
        "matmul: view exceeds its data"
    );
    // SAFETY: shapes checked, every element of both views and of c lies inside its slice.
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
            a.col_stride,
            a.row_stride,
            b.data.as_ptr(),
            b.col_stride,
            b.row_stride,
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
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether every element of the view lies inside its slice (non-negative strides only, so
/// raw pointer arithmetic from the slice start stays in bounds).
fn in_bounds<T>(v: &Mat<T>) -> bool {
    if v.row_stride < 0 || v.col_stride < 0 {
        return false;
    }
    if v.rows == 0 || v.cols == 0 {
        return true;
    }
    let last =
        (v.rows - 1) as u128 * v.row_stride as u128 + (v.cols - 1) as u128 * v.col_stride as u128;
    last < v.data.len() as u128
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

fn bf16_product(c: MatMut<f32>, a: Mat<bf16>, b: Mat<bf16>, accumulate: bool, threaded: bool) {
    check_shapes(&c, &a, &b);
    assert!(
        c.data.len() >= c.rows * c.cols,
        "matrix view exceeds its data"
    );
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.data[..m * n].fill(0.0);
        }
        return;
    }
    // The native path wins at every size (even 7x5x3: the portable one widens both inputs).
    #[cfg(target_arch = "x86_64")]
    if native_bf16_available() && in_bounds(&a) && in_bounds(&b) {
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
    let widen = |v: &Mat<bf16>| -> Vec<f32> {
        let mut out = Vec::with_capacity(v.rows * v.cols);
        for i in 0..v.rows {
            for j in 0..v.cols {
                out.push(v.at(i, j).to_f32());
            }
        }
        out
    };
    let (aw, bw) = (widen(&a), widen(&b));
    let (aw, bw) = (
        Mat::row_major(&aw, a.rows, a.cols),
        Mat::row_major(&bw, b.rows, b.cols),
    );
    if threaded {
        matmul_f32(c, aw, bw, accumulate);
    } else {
        matmul_f32_serial(c, aw, bw, accumulate);
    }
}

#[cfg(target_arch = "x86_64")]
mod bf16_avx512;

/// Threading and special cases around the AVX512_BF16 kernel.
#[cfg(target_arch = "x86_64")]
mod native {
    use super::bf16_avx512::{self as k512, MR, NR, Raw};
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
        Raw {
            ptr: v.data.as_ptr().cast(),
            rs: v.row_stride,
            cs: v.col_stride,
        }
    }

    /// Caller checked: CPU features, shapes, both views in bounds, c holds m * n. Splits the
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
        // A matrix-vector product: one dot product per output, no packing.
        if n == 1 && a.col_stride == 1 {
            let v: Vec<bf16> = (0..k).map(|p| b.at(p, 0)).collect();
            // SAFETY: a's rows are in bounds (checked), v has k elements, c has m.
            unsafe {
                k512::gemv(
                    cp,
                    1,
                    m,
                    k,
                    a.data.as_ptr().cast(),
                    a.row_stride,
                    v.as_ptr().cast(),
                    accumulate,
                )
            };
            return;
        }
        if m == 1 && b.row_stride == 1 {
            // c^T = b^T a^T: the rows of b^T are b's columns, contiguous.
            let v: Vec<bf16> = (0..k).map(|p| a.at(0, p)).collect();
            // SAFETY: as above with b^T (n x k) and c of n elements.
            unsafe {
                k512::gemv(
                    cp,
                    1,
                    n,
                    k,
                    b.data.as_ptr().cast(),
                    b.col_stride,
                    v.as_ptr().cast(),
                    accumulate,
                )
            };
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
                    a.row_stride,
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
                    a.col_stride,
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
            unsafe { k512::gemm(cp, n, m, n, k, a, b, accumulate) };
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
                    k512::gemm(cp.0.add(start * n), n, len, n, k, a, b.0, accumulate);
                } else {
                    let b = b.0.offset(0, start);
                    k512::gemm(cp.0.add(start), n, m, len, k, a.0, b, accumulate);
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
    fn layout(rows: usize, cols: usize, lay: Layout, seed: u32) -> (Vec<bf16>, isize, isize) {
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
        let (ld, step) = (ld as isize, lay.step as isize);
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
        let a = Mat {
            data: &ad,
            rows: m,
            cols: k,
            row_stride: ars,
            col_stride: acs,
        };
        let b = Mat {
            data: &bd,
            rows: k,
            cols: n,
            row_stride: brs,
            col_stride: bcs,
        };
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
        let (want, scale) = naive_bf16(&a, &b);
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
        check_bf16(71, 1, 30, lay(true, 2), lay(true, 1), true, 10);
        // K = 1: an outer product.
        check_bf16(113, 384, 1, lay(false, 0), lay(false, 0), false, 11);
        check_bf16(20, 37, 1, lay(true, 3), lay(false, 2), true, 12);
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
