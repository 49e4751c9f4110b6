//! AVX-512 im2col and col2im: whole vectors where the portable loops move one short output
//! row (Wo elements, 11 on the CNN2D shapes) at a time.

use super::{Geom, f32_or_bf16};
use crate::scalar::Scalar;

/// Whether this CPU runs the kernels below (avx512bw for the byte masks and the 16-bit
/// permute): every feature they are compiled for, unless portable is forced.
pub(super) fn available() -> bool {
    crate::cpu::avx512_bw_vl()
}

/// How to gather one image's row of cols from its plane: output vector t (`lanes`
/// elements) is a permutation of the 2·lanes plane elements from `starts[t]` (relative to
/// the row's (kh, kw) origin), the same for every row. So each 64-byte store of cols costs
/// two loads and one permute.
pub(super) struct Gather {
    lanes: usize,
    starts: Vec<usize>,
    /// `lanes` indices into the two source vectors per output vector.
    perm: Vec<u16>,
}

impl Gather {
    /// None unless T is f32 or bf16, the CPU has AVX-512, and every output vector's sources
    /// span at most two vectors of the plane (output rows not much narrower than the
    /// plane's).
    pub(super) fn new<T: Scalar>(g: &Geom) -> Option<Self> {
        if !f32_or_bf16::<T>() || !available() {
            return None;
        }
        let lanes = 64 / size_of::<T>();
        let [_, wo] = g.out;
        let at = |j: usize| j / wo * g.plane[1] + j % wo;
        let (mut starts, mut perm) = (Vec::new(), Vec::new());
        for j0 in (0..g.pixels()).step_by(lanes) {
            starts.push(at(j0));
            for j in j0..j0 + lanes {
                let d = if j < g.pixels() { at(j) - at(j0) } else { 0 };
                if d >= 2 * lanes {
                    return None;
                }
                perm.push(d as u16);
            }
        }
        Some(Self {
            lanes,
            starts,
            perm,
        })
    }

    /// One image [C, H, W] into the interior of the bordered planes, then its columns of
    /// cols (row stride `ld`) from them. T is the f32 or bf16 this plan was built for.
    pub(super) fn run<T: Copy + 'static>(
        &self,
        image: &[T],
        planes: &mut [T],
        cols: &mut [T],
        ld: usize,
        g: Geom,
    ) {
        let lanes = 64 / size_of::<T>();
        assert_eq!(
            self.lanes, lanes,
            "conv2d: gather plan for another element size"
        );
        assert!(image.len() >= g.channels * g.height * g.width);
        // The last row's origin, then its farthest load; the last row's farthest store; the
        // planes and the fill's overrun.
        if g.rows() > 0 {
            let read = (g.channels - 1) * g.plane_len()
                + (g.kernel[0] - 1) * g.plane[1]
                + (g.kernel[1] - 1)
                + self.starts.last().map_or(0, |s| s + 2 * lanes);
            let write = (g.rows() - 1) * ld + self.starts.len() * lanes;
            let fill = g.channels * g.plane_len() + 64 / size_of::<T>();
            assert!(
                read.max(fill) <= planes.len() && write <= cols.len(),
                "conv2d: im2col buffers"
            );
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: features checked in `new`, bounds above.
        unsafe {
            let elem = size_of::<T>();
            let planes = planes.as_mut_ptr().cast::<u8>();
            x86::fill_planes(image.as_ptr().cast(), planes, elem, g);
            let cols = cols.as_mut_ptr();
            if elem == 4 {
                x86::planes_to_cols_f32(self, planes.cast(), cols.cast(), ld, g);
            } else {
                x86::planes_to_cols_bf16(self, planes.cast(), cols.cast(), ld, g);
            }
        }
    }
}

/// col2im's plan: for each 16-wide stretch of a dx row and each kernel column kw, the
/// lanes fed by output columns (ow < Wo) and their offset in an output row.
pub(super) struct Scatter {
    /// [W / 16 rounded up, KW] of (lane mask, ow of lane 0).
    spans: Vec<(u16, isize)>,
}

impl Scatter {
    /// None unless the CPU has AVX-512.
    pub(super) fn new(g: &Geom) -> Option<Self> {
        if !available() {
            return None;
        }
        let mut spans = Vec::new();
        for q0 in (0..g.width).step_by(16) {
            let width = (g.width - q0).min(16) as isize;
            for kw in 0..g.kernel[1] {
                // Lane l is dx column q0 + l: plane column q0 + l + pw, output column
                // ow = q0 + l + pw − kw.
                let ow0 = (q0 + g.pad[1]) as isize - kw as isize;
                let lo = (-ow0).clamp(0, width);
                let hi = (g.out[1] as isize - ow0).clamp(lo, width);
                let mask = ((1u32 << hi) - (1u32 << lo)) as u16;
                spans.push((mask, ow0));
            }
        }
        Some(Self { spans })
    }

    /// The adjoint of im2col: dx [C, H, W] from one image's columns of dcols
    /// [C·KH·KW, ·] (row stride `ld`). Each 16-wide stretch of a dx row sums its
    /// contributions in registers, each a masked load of dcols, then is stored as f32 or
    /// rounded to bf16 (as `round_bf16`). False (nothing done) for other T.
    pub(super) fn col2im<T: Scalar>(
        &self,
        dcols: &[f32],
        ld: usize,
        dx: &mut [T],
        g: Geom,
    ) -> bool {
        // The kernel stores f32, or rounds to bf16, through a pointer of that type.
        let bf16 = T::as_bf16(dx).is_some();
        if !bf16 && T::as_f32(dx).is_none() {
            return false;
        }
        assert!(
            dx.len() >= g.channels * g.height * g.width,
            "conv2d: dx too small"
        );
        let [ho, wo] = g.out;
        assert!(
            g.rows() == 0 || ho * wo == 0 || (g.rows() - 1) * ld + ho * wo <= dcols.len(),
            "conv2d: dcols too small"
        );
        #[cfg(target_arch = "x86_64")]
        // SAFETY: features checked in `new`; the kernel reads only in-bounds lanes; T is
        // what the kernel stores.
        unsafe {
            let (dcols, dx) = (dcols.as_ptr(), dx.as_mut_ptr().cast());
            if bf16 {
                x86::col2im::<true>(self, dcols, ld, dx, g);
            } else {
                x86::col2im::<false>(self, dcols, ld, dx, g);
            }
        }
        true
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use super::{Gather, Geom, Scatter};

    /// The first `n` of 64 lanes.
    #[inline(always)]
    fn lanes64(n: usize) -> u64 {
        if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
    }

    /// Copies image [C, H, W] into the interior of planes [C, Hp, Wp] (`elem`-byte
    /// elements), one whole bordered row a 64-byte store: a masked load of the image row
    /// with zeros around it. A store's overrun past the row is zeros, rewritten by the
    /// next row or landing in the border or the planes' slack (64 bytes at least).
    ///
    /// SAFETY: `available()`; the image holds C·H·W elements, planes C·Hp·Wp and the slack.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn fill_planes(image: *const u8, planes: *mut u8, elem: usize, g: Geom) {
        let (row, padded, left) = (g.width * elem, g.plane[1] * elem, g.pad[1] * elem);
        for c in 0..g.channels {
            for r in 0..g.height {
                let from = image
                    .wrapping_add((c * g.height + r) * row)
                    .wrapping_sub(left);
                // SAFETY: the bordered row r + ph of plane c, overrun as above.
                let to =
                    unsafe { planes.add((c * g.plane_len() + (r + g.pad[0]) * g.plane[1]) * elem) };
                for b in (0..padded).step_by(64) {
                    // Bytes b.. of the bordered row; the image's are left..left + row.
                    let m =
                        lanes64(left.saturating_sub(b)) ^ lanes64((left + row).saturating_sub(b));
                    // SAFETY: only the image row's bytes are read; the stores as above.
                    unsafe {
                        let v = _mm512_maskz_loadu_epi8(m, from.wrapping_add(b).cast());
                        _mm512_storeu_si512(to.add(b).cast(), v);
                    }
                }
            }
        }
    }

    /// SAFETY: `available()`; the bounds `Gather::run` checks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn planes_to_cols_f32(
        plan: &Gather,
        planes: *const f32,
        cols: *mut f32,
        ld: usize,
        g: Geom,
    ) {
        for (row, origin) in g.patch_origins().enumerate() {
            // SAFETY: the row origin and every 2-vector load from it lie in the
            // planes, every store in the row.
            unsafe {
                let src = planes.add(origin);
                let dst = cols.add(row * ld);
                for (t, &s) in plan.starts.iter().enumerate() {
                    let idx = plan.perm.as_ptr().add(t * 16);
                    let idx = _mm512_cvtepu16_epi32(_mm256_loadu_si256(idx.cast()));
                    let a = _mm512_loadu_ps(src.add(s));
                    let b = _mm512_loadu_ps(src.add(s + 16));
                    let v = _mm512_permutex2var_ps(a, idx, b);
                    _mm512_storeu_ps(dst.add(t * 16), v);
                }
            }
        }
    }

    /// SAFETY: `available()`; the bounds `Gather::run` checks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn planes_to_cols_bf16(
        plan: &Gather,
        planes: *const u16,
        cols: *mut u16,
        ld: usize,
        g: Geom,
    ) {
        for (row, origin) in g.patch_origins().enumerate() {
            // SAFETY: as for f32.
            unsafe {
                let src = planes.add(origin);
                let dst = cols.add(row * ld);
                for (t, &s) in plan.starts.iter().enumerate() {
                    let idx = plan.perm.as_ptr().add(t * 32);
                    let idx = _mm512_loadu_si512(idx.cast());
                    let a = _mm512_loadu_si512(src.add(s).cast());
                    let b = _mm512_loadu_si512(src.add(s + 32).cast());
                    let v = _mm512_permutex2var_epi16(a, idx, b);
                    _mm512_storeu_si512(dst.add(t * 32).cast(), v);
                }
            }
        }
    }

    /// `crate::scalar::round_bf16` on 16 lanes: the bf16 bits in the low half of each.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn round_bf16(v: __m512) -> __m512i {
        let bits = _mm512_castps_si512(v);
        let high = _mm512_srli_epi32::<16>(bits);
        let odd = _mm512_and_si512(high, _mm512_set1_epi32(1));
        let bias = _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff));
        let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(bits, bias));
        // A NaN stays a (quiet) NaN rather than rounding up into infinity.
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        let quiet = _mm512_or_si512(high, _mm512_set1_epi32(0x40));
        _mm512_mask_blend_epi32(nan, rounded, quiet)
    }

    /// SAFETY: `available()`; dx holds C·H·W f32 (bf16 when `BF16`), dcols every
    /// (row, pixel) at row·ld + pixel.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn col2im<const BF16: bool>(
        plan: &Scatter,
        dcols: *const f32,
        ld: usize,
        dx: *mut u8,
        g: Geom,
    ) {
        // dx rows summed at a time, each in its own register: independent additions, and
        // the loads for one (kh, kw) read ROWS consecutive output rows of dcols.
        const ROWS: usize = 8;
        let [ho, wo] = g.out;
        let [kh_n, kw_n] = g.kernel;
        let ph = g.pad[0];
        for c in 0..g.channels {
            for (q, spans) in plan.spans.chunks_exact(kw_n).enumerate() {
                for r0 in (0..g.height).step_by(ROWS) {
                    let rows = (g.height - r0).min(ROWS);
                    let mut acc = [_mm512_setzero_ps(); ROWS];
                    for kh in 0..kh_n {
                        // dx row r0 + i sees output row oh = r0 + i + ph − kh, if < Ho.
                        let lo = kh.saturating_sub(r0 + ph);
                        let hi = (ho + kh).saturating_sub(r0 + ph).min(rows);
                        // Output row r0 + ph − kh (maybe out of range: only lanes of rows
                        // lo..hi are read).
                        let oh0 = (r0 + ph) as isize - kh as isize;
                        for (kw, &(mask, ow0)) in spans.iter().enumerate() {
                            let row = ((c * kh_n + kh) * kw_n + kw) * ld;
                            let base = dcols
                                .wrapping_add(row)
                                .wrapping_offset(oh0 * wo as isize + ow0);
                            for (i, acc) in acc.iter_mut().enumerate() {
                                if i >= lo && i < hi {
                                    // SAFETY: the masked lanes are pixels (oh, ow < Wo)
                                    // of row (c, kh, kw); the address of lane 0 may lie
                                    // outside dcols, hence the wrapping arithmetic.
                                    let v = unsafe {
                                        _mm512_maskz_loadu_ps(mask, base.wrapping_add(i * wo))
                                    };
                                    *acc = _mm512_add_ps(*acc, v);
                                }
                            }
                        }
                    }
                    let lanes = ((1u32 << (g.width - 16 * q).min(16)) - 1) as u16;
                    for (i, &acc) in acc.iter().enumerate().take(rows) {
                        let at = (c * g.height + r0 + i) * g.width + 16 * q;
                        // SAFETY: dx row r0 + i of channel c, the lanes' columns.
                        unsafe {
                            if BF16 {
                                let to = dx.add(2 * at).cast();
                                _mm512_mask_cvtepi32_storeu_epi16(to, lanes, round_bf16(acc));
                            } else {
                                _mm512_mask_storeu_ps(dx.add(4 * at).cast(), lanes, acc);
                            }
                        }
                    }
                }
            }
        }
    }
}
