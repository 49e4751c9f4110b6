//! Native bf16 matrix product for x86-64 with AVX512_BF16 (`vdpbf16ps`), GotoBLAS style.
//!
//! `vdpbf16ps` multiplies adjacent bf16 *pairs* and adds both products into one f32 lane, so
//! both operands are packed with K interleaved in pairs: one `u32` holds `(x[k], x[k + 1])`
//! (even k in the low half), an odd K being padded with a zero in both operands.
//!
//! * A is packed one micro-panel of `MR` rows at a time, in one of two layouts, whichever is
//!   cheap to produce from A's strides: *rows* (row i's pairs contiguous, rows `A_ROW` apart:
//!   a plain copy of row-major A) or *pairs* (for each pair, the `MR` rows' `u32` contiguous:
//!   an interleave of two columns of column-major A). Transposing 16 x 16 blocks instead
//!   would cost as much as the arithmetic when N is small.
//! * B is packed in micro-panels of `NR = 32` columns: for each pair, 32 consecutive `u32`
//!   (two zmm loads, 16 columns each).
//! * The micro-kernel keeps an `MR x 32` f32 tile in `2 * MR` zmm registers and, per pair,
//!   broadcasts one A pair against the two B vectors.
//!
//! All functions here are `unsafe`: they take raw pointers that the caller (`super`) checked
//! against the views' slices, and they need a CPU with `avx512f,avx512bw,avx512vl,avx512bf16`.

use core::arch::x86_64::*;
use std::cell::RefCell;
use std::sync::Mutex;

/// Rows of the register tile: 14 x 2 accumulators + 2 B vectors + 1 broadcast = 31 zmm.
pub(super) const MR: usize = 14;
/// Columns of the register tile (two zmm of 16 f32).
pub(super) const NR: usize = 32;
/// Maximum K block, in pairs: a 32-column B micro-panel of this many pairs is 32 KB.
const KC_PAIRS: usize = 256;
/// Maximum N block: the packed B block (KC x NC) stays in L2.
const NC: usize = 512;

/// Distance in `u32` between rows of an A panel packed by rows: a compile-time constant so
/// the kernel addresses each row with a fixed displacement, and not a multiple of 4 KB so
/// the rows fall in different L1 sets.
const A_ROW: usize = KC_PAIRS + 16;

/// Rows of A a kernel prefetches into L1 while it computes, one cache line per pair: `rows`
/// rows of `lines` lines from `ptr`, `stride` bytes apart. Only ever a hint.
#[derive(Clone, Copy)]
struct Prefetch {
    ptr: *const u8,
    stride: isize,
    lines: usize,
    rows: usize,
}

/// A strided bf16 matrix seen as raw bits; element (i, j) at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
pub(super) struct Raw {
    pub ptr: *const u16,
    pub rs: isize,
    pub cs: isize,
}

impl Raw {
    /// SAFETY: the caller keeps (i, j) inside the view it validated.
    #[inline(always)]
    unsafe fn at(&self, i: usize, j: usize) -> u16 {
        unsafe { *self.ptr.offset(i as isize * self.rs + j as isize * self.cs) }
    }

    /// SAFETY: as for `at`, the sub-view's origin lies in the validated view.
    #[inline(always)]
    pub(super) unsafe fn offset(self, i: usize, j: usize) -> Self {
        Self {
            ptr: unsafe { self.ptr.offset(i as isize * self.rs + j as isize * self.cs) },
            ..self
        }
    }
}

/// `(lo, hi)` bf16 bits as one pair.
#[inline(always)]
fn pair(lo: u16, hi: u16) -> u32 {
    lo as u32 | (hi as u32) << 16
}

/// Mask of the first `n` lanes (n <= 32).
#[inline(always)]
fn lanes32(n: usize) -> u32 {
    if n >= 32 { u32::MAX } else { (1u32 << n) - 1 }
}

#[inline(always)]
fn lanes16(n: usize) -> u16 {
    if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
}

thread_local! {
    /// Packing buffers, reused across calls: fresh large allocations would be mmapped and
    /// page-faulted on every product.
    static BUFFERS: RefCell<(Vec<u32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Where `gemm` takes B from: packed block by block as it goes, or packed in advance.
#[derive(Clone, Copy)]
pub(super) enum BSource<'a> {
    Raw(Raw),
    Packed(&'a PackedB),
}

/// A k x n B packed once, every block as `gemm` would pack it, for many products with it (a
/// weight that every block of rows, or every step of a recurrence, multiplies).
pub(super) struct PackedB {
    data: Vec<u32>,
    k: usize,
    n: usize,
    /// K blocks per N block.
    k_blocks: usize,
    /// `u32` per block: nc * kc, whatever the block's own size.
    block_len: usize,
}

impl PackedB {
    /// SAFETY: `b` addresses k x n valid bf16 (k, n > 0) and the CPU supports
    /// avx512f/bw/vl/bf16.
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
    pub(super) unsafe fn new(b: Raw, k: usize, n: usize) -> Self {
        let (kp, kc, nc) = blocking(k, n);
        let (k_blocks, block_len) = (kp.div_ceil(kc), nc * kc);
        let mut data = take_packed(n.div_ceil(nc) * k_blocks * block_len);
        for (jb, j0) in (0..n).step_by(nc).enumerate() {
            let nb = nc.min(n - j0);
            for (pb, p0) in (0..kp).step_by(kc).enumerate() {
                let kk = (2 * kc.min(kp - p0)).min(k - 2 * p0);
                let at = (jb * k_blocks + pb) * block_len;
                // SAFETY: the block lies inside b; its slot holds nc * kc >= padded nb * kcp.
                unsafe { pack_b(b.offset(2 * p0, j0), kk, nb, data[at..].as_mut_ptr()) };
            }
        }
        Self {
            data,
            k,
            n,
            k_blocks,
            block_len,
        }
    }

    pub(super) fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// The packed block of N block `jb` and K block `pb`.
    fn block(&self, jb: usize, pb: usize) -> *const u32 {
        self.data[(jb * self.k_blocks + pb) * self.block_len..].as_ptr()
    }
}

/// Buffers of dropped `PackedB`s, for the next packing of the same size (a layer's weights
/// are packed again every step: a fresh buffer would be zeroed and page-faulted each time).
static PACKED_POOL: Mutex<Vec<Vec<u32>>> = Mutex::new(Vec::new());
const PACKED_POOL_MAX: usize = 16;

/// A buffer of `len` from the pool (stale contents: `pack_b` rewrites every block slot's panels,
/// and the kernels read nothing past them), else a zeroed one.
fn take_packed(len: usize) -> Vec<u32> {
    let mut pool = PACKED_POOL.lock().unwrap_or_else(|e| e.into_inner());
    match pool.iter().rposition(|v| v.len() == len) {
        Some(i) => pool.swap_remove(i),
        None => vec![0u32; len],
    }
}

impl Drop for PackedB {
    fn drop(&mut self) {
        let mut pool = PACKED_POOL.lock().unwrap_or_else(|e| e.into_inner());
        let _evicted = (pool.len() >= PACKED_POOL_MAX).then(|| pool.remove(0));
        pool.push(std::mem::take(&mut self.data));
    }
}

/// Pairs of K, then the K block (pairs) and N block (columns, a multiple of NR) for a k x n
/// B: even blocks, so the last one is not a sliver.
fn blocking(k: usize, n: usize) -> (usize, usize, usize) {
    let kp = k.div_ceil(2);
    let kc = kp.div_ceil(kp.div_ceil(KC_PAIRS));
    let nc = n.div_ceil(n.div_ceil(NC)).next_multiple_of(NR);
    (kp, kc, nc)
}

/// c (m x n, row stride ldc) = a·b, or += when `accumulate`, single-threaded.
///
/// SAFETY: `a` (m x k) and a raw `b` (k x n) address valid bf16 elements over their whole
/// extent (a packed `b` was packed as k x n), `c` addresses m rows of n valid f32 at stride
/// `ldc`, no other thread writes those rows and columns, and the CPU supports
/// avx512f/bw/vl/bf16.
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm(
    c: *mut f32,
    ldc: usize,
    m: usize,
    n: usize,
    k: usize,
    a: Raw,
    b: BSource,
    accumulate: bool,
) {
    debug_assert!(m > 0 && n > 0 && k > 0);
    if let BSource::Packed(p) = b {
        debug_assert_eq!((p.k, p.n), (k, n));
    }
    let (kp, kc, nc) = blocking(k, n);
    BUFFERS.with_borrow_mut(|(abuf, bbuf)| {
        if abuf.len() < MR * A_ROW {
            abuf.resize(MR * A_ROW, 0);
        }
        if bbuf.len() < nc * kc {
            bbuf.resize(nc * kc, 0);
        }
        let ap = abuf.as_mut_ptr();
        for (jb, j0) in (0..n).step_by(nc).enumerate() {
            let nb = nc.min(n - j0);
            for (pb, p0) in (0..kp).step_by(kc).enumerate() {
                let kcp = kc.min(kp - p0);
                // Elements of K in this block (the last pair of an odd K is half padding).
                let kk = (2 * kcp).min(k - 2 * p0);
                let bp = match b {
                    BSource::Raw(b) => {
                        // SAFETY: the block lies inside b; bbuf holds nc * kc >= padded
                        // nb * kcp.
                        unsafe { pack_b(b.offset(2 * p0, j0), kk, nb, bbuf.as_mut_ptr()) };
                        bbuf.as_ptr()
                    }
                    BSource::Packed(p) => p.block(jb, pb),
                };
                let load_c = accumulate || p0 > 0;
                // One A micro-panel at a time, packed right before its products: it stays
                // in L1 against the B block in L2. Row-major A streams from memory once: the
                // kernels prefetch the next panel's rows a line per pair, hiding the latency
                // behind the arithmetic (a burst of prefetches while packing does not).
                let calls = nb.div_ceil(NR);
                for i in (0..m).step_by(MR) {
                    let mr = MR.min(m - i);
                    // SAFETY: the panel lies inside a; abuf holds MR * A_ROW u32.
                    let rows = unsafe { pack_a(a.offset(i, 2 * p0), mr, kk, ap) };
                    // Rows of the next panel still to prefetch, shared out over the calls.
                    let next = if a.cs == 1 {
                        MR.min(m.saturating_sub(i + MR))
                    } else {
                        0
                    };
                    for (call, jr) in (0..nb).step_by(NR).enumerate() {
                        let nr = NR.min(nb - jr);
                        let (r0, r1) = (call * next / calls, (call + 1) * next / calls);
                        let pf = Prefetch {
                            // A hint only: the address is never dereferenced.
                            ptr: a
                                .ptr
                                .wrapping_offset((i + MR + r0) as isize * a.rs + 2 * p0 as isize)
                                .cast(),
                            stride: 2 * a.rs,
                            // Lines per row, one more for a row that is not line-aligned.
                            lines: (2 * kk).div_ceil(64) + 1,
                            rows: r1 - r0,
                        };
                        // SAFETY: B panel jr / NR starts at jr * kcp pairs (each full panel
                        // is NR wide, only the last may be narrower); the tile (i.., j0 +
                        // jr..) of c is inside the m x n output.
                        unsafe {
                            let bp = bp.add(jr * kcp);
                            let cp = c.add(i * ldc + j0 + jr);
                            tile(mr, nr, rows, kcp, ap, bp, cp, ldc, load_c, pf);
                        }
                    }
                }
            }
        }
    });
}

/// Dispatches to the micro-kernel instantiated for this edge: `mr` rows (packed by rows, or
/// by pairs at stride `mr`), `nr` columns (packed at stride 16 or 32).
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
#[allow(clippy::too_many_arguments)]
#[inline(never)]
unsafe fn tile(
    mr: usize,
    nr: usize,
    rows: bool,
    kcp: usize,
    a: *const u32,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    load_c: bool,
    pf: Prefetch,
) {
    let mask = lanes16(nr - if nr > 16 { 16 } else { 0 });
    macro_rules! dispatch {
        ($($r:literal)*) => {
            match (mr, nr > 16, rows) {
                $(
                    ($r, true, true) => unsafe { kernel::<$r, 2, true>(kcp, a, b, c, ldc, mask, load_c, pf) },
                    ($r, false, true) => unsafe { kernel::<$r, 1, true>(kcp, a, b, c, ldc, mask, load_c, pf) },
                    ($r, true, false) => unsafe { kernel::<$r, 2, false>(kcp, a, b, c, ldc, mask, load_c, pf) },
                    ($r, false, false) => unsafe { kernel::<$r, 1, false>(kcp, a, b, c, ldc, mask, load_c, pf) },
                )*
                _ => unreachable!("tile rows {mr} > MR"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14);
}

/// The register-blocked micro-kernel: an R x (16 V) tile of c (+)= packed A · packed B over
/// `kcp` pairs. A is packed by rows (`ROWS`, row i at `i * A_ROW`) or by pairs (stride R).
/// The last of the V column vectors is stored under `mask`. Prefetches `pf` on the way.
///
/// SAFETY: `a` holds the R x kcp panel, `b` kcp * 16V pairs, `c` R rows of the masked
/// columns.
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
#[allow(clippy::needless_range_loop)] // index loops over consts unroll into registers
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize, const V: usize, const ROWS: bool>(
    kcp: usize,
    a: *const u32,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    mask: u16,
    load_c: bool,
    pf: Prefetch,
) {
    // The tile of c is written (and read if load_c) at the end: fetch it meanwhile.
    for i in 0..R {
        for v in 0..V {
            _mm_prefetch::<_MM_HINT_ET0>(c.wrapping_add(i * ldc + 16 * v).cast());
        }
    }
    // (row step, pair step) of A, both compile-time constants.
    let (row_step, pair_step) = if ROWS { (A_ROW, 1) } else { (1, R) };
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let (mut a, mut b) = (a, b);
    let (mut pf_row, mut pf_line, mut pf_rows) = (pf.ptr, 0, pf.rows);
    for _ in 0..kcp {
        if pf_rows != 0 {
            _mm_prefetch::<_MM_HINT_T0>(pf_row.wrapping_add(64 * pf_line).cast());
            pf_line += 1;
            if pf_line == pf.lines {
                pf_line = 0;
                pf_row = pf_row.wrapping_offset(pf.stride);
                pf_rows -= 1;
            }
        }
        let mut bv = [_mm512_setzero_si512(); V];
        for v in 0..V {
            // SAFETY: within this pair's 16V packed columns.
            bv[v] = unsafe { _mm512_loadu_si512(b.add(16 * v).cast()) };
        }
        for i in 0..R {
            // SAFETY: row i of this pair in the packed panel.
            let av = _mm512_set1_epi32(unsafe { *a.add(i * row_step) } as i32);
            for v in 0..V {
                acc[i][v] = _mm512_dpbf16_ps(acc[i][v], bh(av), bh(bv[v]));
            }
        }
        // SAFETY: at most one past the packed panels.
        unsafe {
            a = a.add(pair_step);
            b = b.add(16 * V);
        }
    }
    for i in 0..R {
        for v in 0..V {
            let m = if v + 1 == V { mask } else { u16::MAX };
            // SAFETY: row i, columns 16v.. under m are inside c.
            unsafe {
                let p = c.add(i * ldc + 16 * v);
                let mut x = acc[i][v];
                if load_c {
                    x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, p));
                }
                _mm512_mask_storeu_ps(p, m, x);
            }
        }
    }
}

#[inline(always)]
fn bh(x: __m512i) -> __m512bh {
    // SAFETY: both are plain 512-bit vectors; bf16 pairs are just reinterpreted bits.
    unsafe { core::mem::transmute::<__m512i, __m512bh>(x) }
}

/// Packs rows `0..kk` (kk <= 2 * KC_PAIRS) and columns `0..nb` of `b` into NR-column
/// micro-panels of `kk.div_ceil(2)` pairs each; the last panel is 16 or 32 wide, zero-padded.
///
/// SAFETY: the kk x nb block of `b` is valid; `out` holds nb.next_multiple_of(16) * pairs.
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
unsafe fn pack_b(b: Raw, kk: usize, nb: usize, out: *mut u32) {
    let kcp = kk.div_ceil(2);
    if b.cs == 1 {
        // Row-major: per pair, interleave rows 2p and 2p+1, 32 columns at a time. Panel by
        // panel, so the stores are sequential (pairs outer would store to panels 16 KB
        // apart, all in one L1 set), and each 64-byte line of B is read once.
        let (lo, hi) = interleave_indices();
        for j in (0..nb).step_by(NR) {
            let w = (nb - j).min(NR);
            let m = lanes32(w);
            let width = if w > 16 { 32 } else { 16 };
            for p in 0..kcp {
                let r0 = 2 * p;
                // SAFETY: row r0 (and r0 + 1 if < kk), columns j..j+w are in the block; the
                // panel of j holds kcp pairs of `width` pairs.
                unsafe {
                    let src = b.ptr.offset(r0 as isize * b.rs + j as isize);
                    let x0 = _mm512_maskz_loadu_epi16(m, src.cast());
                    let x1 = if r0 + 1 < kk {
                        _mm512_maskz_loadu_epi16(m, src.offset(b.rs).cast())
                    } else {
                        _mm512_setzero_si512()
                    };
                    let dst = out.add(j * kcp + p * width);
                    _mm512_storeu_si512(dst.cast(), _mm512_permutex2var_epi16(x0, lo, x1));
                    if w > 16 {
                        let x = _mm512_permutex2var_epi16(x0, hi, x1);
                        _mm512_storeu_si512(dst.add(16).cast(), x);
                    }
                }
            }
        }
    } else if b.rs == 1 {
        // Columns contiguous along K: each column's pairs are u32 already; transpose 16
        // columns x 16 pairs at a time.
        for j in (0..nb).step_by(16) {
            let w = (nb - j).min(16);
            let panel = j / NR * NR;
            let width = if nb - panel > 16 { 32 } else { 16 };
            // SAFETY: columns j..j+w, rows < kk are in the block; stores stay in the panel.
            unsafe {
                let dst = out.add(panel * kcp + (j - panel));
                for p in (0..kcp).step_by(16) {
                    let m = lanes32(kk - 2 * p);
                    let mut r = [_mm512_setzero_si512(); 16];
                    for (q, row) in r.iter_mut().enumerate().take(w) {
                        let src = b.ptr.offset(2 * p as isize + (j + q) as isize * b.cs);
                        *row = _mm512_maskz_loadu_epi16(m, src.cast());
                    }
                    transpose16(&mut r);
                    for (q, row) in r.iter().enumerate().take(16.min(kcp - p)) {
                        _mm512_storeu_si512(dst.add((p + q) * width).cast(), *row);
                    }
                }
            }
        }
    } else {
        for j in (0..nb).step_by(NR) {
            let w = (nb - j).min(NR);
            let width = if w > 16 { 32 } else { 16 };
            for p in 0..kcp {
                for q in 0..width {
                    // SAFETY: in-block reads only; the write is within panel j.
                    unsafe {
                        let v = if q < w {
                            let hi = if 2 * p + 1 < kk {
                                b.at(2 * p + 1, j + q)
                            } else {
                                0
                            };
                            pair(b.at(2 * p, j + q), hi)
                        } else {
                            0
                        };
                        *out.add(j * kcp + p * width + q) = v;
                    }
                }
            }
        }
    }
}

/// Packs the `h x kk` panel of `a` (h <= MR, kk <= 2 * KC_PAIRS) into `out`, by rows
/// (returns true: row q at `q * A_ROW`) or by pairs (returns false: pair p at `p * h`).
///
/// SAFETY: the h x kk block of `a` is valid; `out` holds MR * A_ROW u32.
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
unsafe fn pack_a(a: Raw, h: usize, kk: usize, out: *mut u32) -> bool {
    let kcp = kk.div_ceil(2);
    if a.cs == 1 {
        // Rows contiguous along K: their pairs are u32 already, copy 16 pairs at a time. The
        // masked load zero-pads the tail (and the odd-K half pair); full stores may write up
        // to kcp.next_multiple_of(16) <= KC_PAIRS < A_ROW.
        for q in 0..h {
            // SAFETY: row q's kk elements are in the block; the stores stay in row q.
            unsafe {
                let src = a.ptr.offset(q as isize * a.rs);
                let dst = out.add(q * A_ROW);
                for p in (0..kcp).step_by(16) {
                    let x = _mm512_maskz_loadu_epi16(lanes32(kk - 2 * p), src.add(2 * p).cast());
                    _mm512_storeu_si512(dst.add(p).cast(), x);
                }
            }
        }
        true
    } else if a.rs == 1 {
        // Columns contiguous along M: per pair, interleave columns 2p and 2p+1 of A.
        let (lo, _) = interleave_indices();
        let m = lanes32(h);
        for p in 0..kcp {
            let c0 = 2 * p;
            // SAFETY: rows 0..h of columns c0 (and c0 + 1 if < kk) are in the block; the
            // h-pair store is pair p's slot.
            unsafe {
                let src = a.ptr.offset(c0 as isize * a.cs);
                let x0 = _mm512_maskz_loadu_epi16(m, src.cast());
                let x1 = if c0 + 1 < kk {
                    _mm512_maskz_loadu_epi16(m, src.offset(a.cs).cast())
                } else {
                    _mm512_setzero_si512()
                };
                // The next panel's rows (a hint: wrapping past the end of A is harmless).
                _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(MR).cast());
                _mm_prefetch::<_MM_HINT_T0>(src.wrapping_offset(MR as isize + a.cs).cast());
                _mm512_mask_storeu_epi32(
                    out.add(p * h).cast(),
                    lanes16(h),
                    _mm512_permutex2var_epi16(x0, lo, x1),
                );
            }
        }
        false
    } else {
        for q in 0..h {
            for p in 0..kcp {
                // SAFETY: in-block reads only; the write is in row q of the panel.
                unsafe {
                    let hi = if 2 * p + 1 < kk {
                        a.at(q, 2 * p + 1)
                    } else {
                        0
                    };
                    *out.add(q * A_ROW + p) = pair(a.at(q, 2 * p), hi);
                }
            }
        }
        true
    }
}

/// Index vectors for `vpermt2w` that interleave x (lanes 0..31) and y (32..63):
/// `lo` = x0 y0 x1 y1 .. x15 y15, `hi` = x16 y16 .. x31 y31.
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
fn interleave_indices() -> (__m512i, __m512i) {
    let mut lo = [0u16; 32];
    let mut hi = [0u16; 32];
    for t in 0..16 {
        lo[2 * t] = t as u16;
        lo[2 * t + 1] = 32 + t as u16;
        hi[2 * t] = 16 + t as u16;
        hi[2 * t + 1] = 48 + t as u16;
    }
    // SAFETY: 64-byte arrays read as unaligned vectors.
    unsafe {
        (
            _mm512_loadu_si512(lo.as_ptr().cast()),
            _mm512_loadu_si512(hi.as_ptr().cast()),
        )
    }
}

/// In-register transpose of a 16 x 16 matrix of u32 (row q of the input becomes column q).
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
fn transpose16(r: &mut [__m512i; 16]) {
    let mut t = [_mm512_setzero_si512(); 16];
    // 2x2 blocks of u32, then 2x2 blocks of u64, then of 128-bit lanes, then of 256 bits.
    for q in 0..8 {
        t[2 * q] = _mm512_unpacklo_epi32(r[2 * q], r[2 * q + 1]);
        t[2 * q + 1] = _mm512_unpackhi_epi32(r[2 * q], r[2 * q + 1]);
    }
    for q in 0..4 {
        let (x0, x1, x2, x3) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
        r[4 * q] = _mm512_unpacklo_epi64(x0, x2);
        r[4 * q + 1] = _mm512_unpackhi_epi64(x0, x2);
        r[4 * q + 2] = _mm512_unpacklo_epi64(x1, x3);
        r[4 * q + 3] = _mm512_unpackhi_epi64(x1, x3);
    }
    // Now r[4q + s] holds, in each 128-bit lane l, column 4l + s of rows 4q..4q+3.
    for q in 0..2 {
        for s in 0..4 {
            let (x, y) = (r[8 * q + s], r[8 * q + 4 + s]);
            t[8 * q + s] = _mm512_shuffle_i32x4::<0x88>(x, y);
            t[8 * q + 4 + s] = _mm512_shuffle_i32x4::<0xdd>(x, y);
        }
    }
    for s in 0..8 {
        let (x, y) = (t[s], t[8 + s]);
        r[s] = _mm512_shuffle_i32x4::<0x88>(x, y);
        r[8 + s] = _mm512_shuffle_i32x4::<0xdd>(x, y);
    }
}

/// out[i] = row i of `a` (m x k, contiguous rows) · `v` (k contiguous), or += when
/// `accumulate`; out has stride `ldo`.
///
/// SAFETY: rows of a and v valid over k elements; out valid over m elements at stride ldo.
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemv(
    out: *mut f32,
    ldo: usize,
    m: usize,
    k: usize,
    a: *const u16,
    lda: isize,
    v: *const u16,
    accumulate: bool,
) {
    for i in 0..m {
        // Two accumulators to hide the dot-product latency.
        let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        // SAFETY: every load is masked to the row's k elements.
        unsafe {
            let row = a.offset(i as isize * lda);
            let mut p = 0;
            while p + 64 <= k {
                let x0 = _mm512_loadu_si512(row.add(p).cast());
                let y0 = _mm512_loadu_si512(v.add(p).cast());
                let x1 = _mm512_loadu_si512(row.add(p + 32).cast());
                let y1 = _mm512_loadu_si512(v.add(p + 32).cast());
                s0 = _mm512_dpbf16_ps(s0, bh(x0), bh(y0));
                s1 = _mm512_dpbf16_ps(s1, bh(x1), bh(y1));
                p += 64;
            }
            while p < k {
                let m = lanes32(k - p);
                let x = _mm512_maskz_loadu_epi16(m, row.add(p).cast());
                let y = _mm512_maskz_loadu_epi16(m, v.add(p).cast());
                s0 = _mm512_dpbf16_ps(s0, bh(x), bh(y));
                p += 32;
            }
            let s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
            let o = out.add(i * ldo);
            *o = if accumulate { *o + s } else { s };
        }
    }
}

/// c (m x n, row stride n) = a·bᵀ for column `a` (m values, `lda` apart) and row `b` (n
/// contiguous values), or += when `accumulate`: a product with K = 1, which the packed kernel
/// would run at one pair per tile (a one-output layer's input gradient).
///
/// SAFETY: a valid at i·lda for i < m, b over n elements, c over m x n.
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
pub(super) unsafe fn outer(
    c: *mut f32,
    m: usize,
    n: usize,
    a: *const u16,
    lda: isize,
    b: *const u16,
    accumulate: bool,
) {
    for i in 0..m {
        // SAFETY: i < m.
        let scale = _mm512_set1_ps(f32::from_bits(
            (unsafe { *a.offset(i as isize * lda) } as u32) << 16,
        ));
        for j in (0..n).step_by(16) {
            let mask = lanes16(n - j);
            // SAFETY: masked to row i's columns below n.
            unsafe {
                let bits = _mm256_maskz_loadu_epi16(mask, b.add(j).cast());
                let x = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(bits)));
                let o = c.add(i * n + j);
                let mut y = _mm512_mul_ps(x, scale);
                if accumulate {
                    y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, o));
                }
                _mm512_mask_storeu_ps(o, mask, y);
            }
        }
    }
}

/// Outputs `gemv_columns` holds in registers at a time: 8 zmm accumulators.
const GEMV_BLOCK: usize = 8;

/// out[i] = Σ_p v[p]·a[p·lda + i] for i < m (columns of the m x k `a` contiguous, `lda`
/// apart), or += when `accumulate`: a transposed matrix-vector product, accumulated as
/// Σ_p v[p]·(column p) over blocks of 128 outputs held in registers while `a` streams past.
/// (Accumulating through memory with masked stores stalled on store forwarding: a masked
/// store does not forward to the next column's load on this core.)
///
/// SAFETY: a valid at p·lda + i for p < k, i < m; out valid over m elements.
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
pub(super) unsafe fn gemv_columns(
    out: *mut f32,
    m: usize,
    k: usize,
    a: *const u16,
    lda: isize,
    v: &[f32],
    accumulate: bool,
) {
    for i0 in (0..m).step_by(16 * GEMV_BLOCK) {
        let masks: [u16; GEMV_BLOCK] =
            std::array::from_fn(|j| lanes16(m.saturating_sub(i0 + 16 * j)));
        let mut acc = [_mm512_setzero_ps(); GEMV_BLOCK];
        for (p, &vp) in v.iter().enumerate().take(k) {
            let scale = _mm512_set1_ps(vp);
            let column = a.wrapping_offset(p as isize * lda).wrapping_add(i0);
            for (j, sum) in acc.iter_mut().enumerate() {
                // SAFETY: masked to column p's elements below m; the masked-off lanes (past m)
                // are not read, and AVX-512 suppresses their faults.
                unsafe {
                    let bits =
                        _mm256_maskz_loadu_epi16(masks[j], column.wrapping_add(16 * j).cast());
                    // bf16 → f32 is a 16-bit shift into the high half.
                    let x =
                        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(bits)));
                    *sum = _mm512_fmadd_ps(x, scale, *sum);
                }
            }
        }
        for (j, sum) in acc.into_iter().enumerate() {
            if masks[j] == 0 {
                break;
            }
            // SAFETY: masked to out's elements below m.
            unsafe {
                let o = out.add(i0 + 16 * j);
                let total = if accumulate {
                    _mm512_add_ps(sum, _mm512_maskz_loadu_ps(masks[j], o))
                } else {
                    sum
                };
                _mm512_mask_storeu_ps(o, masks[j], total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose16_transposes() {
        if !super::super::native_bf16_available() {
            eprintln!("skipped: this CPU lacks avx512bf16");
            return;
        }
        let src: Vec<u32> = (0..256).collect();
        let mut got = [0u32; 256];
        // SAFETY: avx512 checked above; 16 rows of 16 u32 read and written in bounds.
        unsafe {
            let mut r = [_mm512_setzero_si512(); 16];
            for (q, row) in r.iter_mut().enumerate() {
                *row = _mm512_loadu_si512(src.as_ptr().add(16 * q).cast());
            }
            transpose16(&mut r);
            for (q, row) in r.iter().enumerate() {
                _mm512_storeu_si512(got.as_mut_ptr().add(16 * q).cast(), *row);
            }
        }
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(got[i * 16 + j], src[j * 16 + i], "({i}, {j})");
            }
        }
    }
}
