//! 2×2 max pooling with stride 2 (NCHW, floor: a trailing odd row or column is dropped), with
//! the argmax kept as one byte per output so the backward is a scatter, not a search.
//!
//! Comparisons run on the values widened to f32 (exact for bf16) with masks, not branches; the
//! pooled value is copied from the input, never rounded.

use rayon::prelude::*;

use crate::scalar::Scalar;
use crate::size::expect_len;

/// Output [planes, H/2, W/2] and the argmax of each output within its window (0..4, row-major).
pub fn max_pool2x2_forward<T: Scalar>(
    x: &[T],
    planes: usize,
    height: usize,
    width: usize,
) -> (Vec<T>, Vec<u8>) {
    let x_dims = [planes, height, width];
    expect_len(
        "max_pool2x2_forward: x must be [planes, height, width]",
        x.len(),
        &x_dims,
    );
    let (oh, ow) = (height / 2, width / 2);
    let mut y = T::zeros(planes * oh * ow);
    let mut arg = vec![0u8; planes * oh * ow];
    if oh * ow == 0 {
        return (y, arg);
    }
    // A few planes per task: the per-plane work (60 outputs on CNN2D) is too small to schedule.
    let per_task = (4096 / (oh * ow)).max(1);
    y.par_chunks_mut(per_task * oh * ow)
        .zip(arg.par_chunks_mut(per_task * oh * ow))
        .zip(x.par_chunks(per_task * height * width))
        .for_each(|((y, arg), x)| {
            for ((y, arg), x) in y
                .chunks_exact_mut(oh * ow)
                .zip(arg.chunks_exact_mut(oh * ow))
                .zip(x.chunks_exact(height * width))
            {
                for i in 0..oh {
                    let rows = [
                        &x[2 * i * width..][..width],
                        &x[(2 * i + 1) * width..][..width],
                    ];
                    pool_row_any(rows, &mut y[i * ow..][..ow], &mut arg[i * ow..][..ow]);
                }
            }
        });
    (y, arg)
}

/// `pool_row` compiled for the element type: AVX-512, else AVX2, for rows of up to 16 values,
/// else the loops below for f32 and bf16.
fn pool_row_any<T: Scalar>(rows: [&[T]; 2], y: &mut [T], arg: &mut [u8]) {
    // The widest tier that handles the row, for one element type's `pool_row_*`.
    macro_rules! widest_tier {
        ($pool:ident, $top:expr, $bottom:expr, $y:expr) => {{
            let (top, bottom, y) = ($top, $bottom, $y);
            #[cfg(target_arch = "x86_64")]
            if avx512::handles(top.len()) {
                // SAFETY: `handles` detected the features (`cpu::avx512_bw_vl`) and checked
                // that the row fits one vector; both rows, y and arg are the `[..width]` and
                // `[..ow]` slices `max_pool2x2_forward` cuts.
                return unsafe { avx512::$pool([top, bottom], y, arg) };
            }
            #[cfg(target_arch = "x86_64")]
            if avx2::handles(top.len()) {
                // SAFETY: `handles` detected AVX2 (`cpu::avx2_fma`) and checked that the row
                // fits two vectors; the slices are as above.
                return unsafe { avx2::$pool([top, bottom], y, arg) };
            }
            return simd::$pool([top, bottom], y, arg);
        }};
    }
    if let (Some(top), Some(bottom), Some(y)) =
        (T::as_f32(rows[0]), T::as_f32(rows[1]), T::as_f32_mut(y))
    {
        widest_tier!(pool_row_f32, top, bottom, y);
    }
    if let (Some(top), Some(bottom), Some(y)) =
        (T::as_bf16(rows[0]), T::as_bf16(rows[1]), T::as_bf16_mut(y))
    {
        widest_tier!(pool_row_bf16, top, bottom, y);
    }
    pool_row(rows, y, arg, |v| T::widen(&[v])[0].to_bits());
}

/// An order-preserving integer key of an f32: larger values get larger keys, and every NaN
/// the largest (PyTorch's max pooling propagates NaN). Integer compares and selects keep the
/// window loop free of the branches float compares turn into.
#[inline(always)]
fn key(bits: u32) -> u32 {
    // −0 and +0 compare equal: one key.
    let bits = if bits == 0x8000_0000 { 0 } else { bits };
    let nan = (bits & 0x7fff_ffff) > 0x7f80_0000;
    let negative = 0u32.wrapping_sub(bits >> 31);
    let ordered = bits ^ (negative | 0x8000_0000);
    if nan { u32::MAX } else { ordered }
}

/// One output row from two input rows: the max of each 2×2 window and where it was (the first
/// of equal maxima). `bits` gives a value's f32 bits. Inlined into the per-type loops.
#[inline(always)]
fn pool_row<T: Copy>(
    [top, bottom]: [&[T]; 2],
    y: &mut [T],
    arg: &mut [u8],
    bits: impl Fn(T) -> u32,
) {
    for (j, (y, arg)) in y.iter_mut().zip(arg.iter_mut()).enumerate() {
        let window = [top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]];
        let (mut best, mut at) = (key(bits(window[0])), 0u8);
        for (k, &v) in window.iter().enumerate().skip(1) {
            let v = key(bits(v));
            let take = v > best;
            best = if take { v } else { best };
            at = if take { k as u8 } else { at };
        }
        *y = window[at as usize];
        *arg = at;
    }
}

mod simd {
    use half::bf16;

    use super::pool_row;
    use crate::activation::multiversion;

    multiversion! {
        fn pool_row_f32(rows: [&[f32]; 2], y: &mut [f32], arg: &mut [u8]) {
            pool_row(rows, y, arg, f32::to_bits);
        }
    }

    multiversion! {
        fn pool_row_bf16(rows: [&[bf16]; 2], y: &mut [bf16], arg: &mut [u8]) {
            pool_row(rows, y, arg, |v| (v.to_bits() as u32) << 16);
        }
    }
}

/// The input gradient [planes, H, W]: each output's gradient goes to its argmax, zeros elsewhere.
pub fn max_pool2x2_backward<T: Scalar>(
    dy: &[T],
    arg: &[u8],
    planes: usize,
    height: usize,
    width: usize,
) -> Vec<T> {
    let (oh, ow) = (height / 2, width / 2);
    let x_len = crate::size::product("max_pool2x2_backward: dx", &[planes, height, width]);
    let y_dims = [planes, oh, ow];
    expect_len(
        "max_pool2x2_backward: dy must be [planes, H/2, W/2]",
        dy.len(),
        &y_dims,
    );
    expect_len(
        "max_pool2x2_backward: arg must be [planes, H/2, W/2]",
        arg.len(),
        &y_dims,
    );
    let mut dx = T::zeros(x_len);
    if oh * ow == 0 {
        return dx;
    }
    let per_task = (4096 / (oh * ow)).max(1);
    dx.par_chunks_mut(per_task * height * width)
        .zip(dy.par_chunks(per_task * oh * ow))
        .zip(arg.par_chunks(per_task * oh * ow))
        .for_each(|((dx, dy), arg)| {
            for ((dx, dy), arg) in dx
                .chunks_exact_mut(height * width)
                .zip(dy.chunks_exact(oh * ow))
                .zip(arg.chunks_exact(oh * ow))
            {
                for i in 0..oh {
                    for j in 0..ow {
                        let k = arg[i * ow + j] as usize;
                        dx[(2 * i + k / 2) * width + 2 * j + k % 2] = dy[i * ow + j];
                    }
                }
            }
        });
    dx
}

/// The row-pair loop in AVX-512 for rows of up to 16 values (CNN2D's are 11): each row's keys
/// in one vector, its even and odd columns split by permutes, the window maxima and argmaxima
/// as integer max / compare masks, in the same first-maximum order as `pool_row`.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use core::arch::x86_64::*;
    use half::bf16;

    /// Whether rows of `width` values take this path on this CPU.
    pub(super) fn handles(width: usize) -> bool {
        (2..=16).contains(&width) && crate::cpu::avx512_bw_vl()
    }

    /// `super::key` on 16 lanes.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn keys(bits: __m512i) -> __m512i {
        let negative_zero = _mm512_cmpeq_epi32_mask(bits, _mm512_set1_epi32(i32::MIN));
        let bits = _mm512_maskz_mov_epi32(!negative_zero, bits);
        let magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fff_ffff));
        let nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7f80_0000));
        let flip = _mm512_or_si512(_mm512_srai_epi32::<31>(bits), _mm512_set1_epi32(i32::MIN));
        _mm512_mask_mov_epi32(_mm512_xor_si512(bits, flip), nan, _mm512_set1_epi32(-1))
    }

    /// (max key, original bits, index 0 / 1) of each column pair (2j, 2j + 1) of one row.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn pairs(bits: __m512i) -> (__m512i, __m512i, __m512i) {
        let even = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 14, 12, 10, 8, 6, 4, 2, 0);
        let odd = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 15, 13, 11, 9, 7, 5, 3, 1);
        let k = keys(bits);
        let (ke, ko) = (
            _mm512_permutexvar_epi32(even, k),
            _mm512_permutexvar_epi32(odd, k),
        );
        let (be, bo) = (
            _mm512_permutexvar_epi32(even, bits),
            _mm512_permutexvar_epi32(odd, bits),
        );
        let right = _mm512_cmpgt_epu32_mask(ko, ke);
        (
            _mm512_max_epu32(ke, ko),
            _mm512_mask_mov_epi32(be, right, bo),
            _mm512_maskz_mov_epi32(right, _mm512_set1_epi32(1)),
        )
    }

    /// The pooled f32 bits and argmax of a row pair given as f32 bits.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn pool(top: __m512i, bottom: __m512i) -> (__m512i, __m512i) {
        let (tk, tv, ti) = pairs(top);
        let (bk, bv, bi) = pairs(bottom);
        let lower = _mm512_cmpgt_epu32_mask(bk, tk);
        let at = _mm512_mask_add_epi32(ti, lower, bi, _mm512_set1_epi32(2));
        (_mm512_mask_mov_epi32(tv, lower, bv), at)
    }

    /// SAFETY: `cpu::avx512_bw_vl()` is true; rows of the same width ≤ 16, y and arg of width / 2.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn pool_row_f32([top, bottom]: [&[f32]; 2], y: &mut [f32], arg: &mut [u8]) {
        let (inputs, outputs) = ((1u32 << top.len()) - 1, (1u32 << y.len()) - 1);
        // SAFETY: every load and store is masked to the slices' lengths.
        unsafe {
            let t = _mm512_maskz_loadu_epi32(inputs as u16, top.as_ptr().cast());
            let b = _mm512_maskz_loadu_epi32(inputs as u16, bottom.as_ptr().cast());
            let (v, at) = pool(t, b);
            _mm512_mask_storeu_epi32(y.as_mut_ptr().cast(), outputs as u16, v);
            _mm512_mask_cvtepi32_storeu_epi8(arg.as_mut_ptr().cast(), outputs as u16, at);
        }
    }

    /// SAFETY: as for `pool_row_f32`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn pool_row_bf16(
        [top, bottom]: [&[bf16]; 2],
        y: &mut [bf16],
        arg: &mut [u8],
    ) {
        let (inputs, outputs) = ((1u32 << top.len()) - 1, (1u32 << y.len()) - 1);
        let widen = |p: *const bf16| {
            // SAFETY: masked to the row's length; bf16 → f32 bits is a 16-bit shift.
            let h = unsafe { _mm256_maskz_loadu_epi16(inputs as u16, p.cast()) };
            _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h))
        };
        // SAFETY: every load and store is masked to the slices' lengths.
        unsafe {
            let (v, at) = pool(widen(top.as_ptr()), widen(bottom.as_ptr()));
            let v = _mm512_srli_epi32::<16>(v);
            _mm512_mask_cvtepi32_storeu_epi16(y.as_mut_ptr().cast(), outputs as u16, v);
            _mm512_mask_cvtepi32_storeu_epi8(arg.as_mut_ptr().cast(), outputs as u16, at);
        }
    }
}

/// The row-pair loop in AVX2 for rows of up to 16 values, as `avx512` does it in one vector: each
/// row in two 8-lane halves, keys as signed integers (AVX2 has no unsigned compare), even and odd
/// columns gathered by permutes and a blend.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use core::arch::x86_64::*;
    use half::bf16;

    /// Whether rows of `width` values take this path on this CPU.
    pub(super) fn handles(width: usize) -> bool {
        (2..=16).contains(&width) && crate::cpu::avx2_fma()
    }

    /// `super::key` on 8 lanes, shifted to signed order: the same order under signed compares.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn keys(bits: __m256i) -> __m256i {
        let negative_zero = _mm256_cmpeq_epi32(bits, _mm256_set1_epi32(i32::MIN));
        let bits = _mm256_andnot_si256(negative_zero, bits);
        let magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fff_ffff));
        let nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7f80_0000));
        // Negative values flip their magnitude bits, so a larger float is a larger integer.
        let flip = _mm256_and_si256(
            _mm256_srai_epi32::<31>(bits),
            _mm256_set1_epi32(0x7fff_ffff),
        );
        _mm256_blendv_epi8(
            _mm256_xor_si256(bits, flip),
            _mm256_set1_epi32(i32::MAX),
            nan,
        )
    }

    /// The even (or odd, `ODD` = 1) lanes of the 16 in [lo, hi], in order.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn columns<const ODD: i32>(lo: __m256i, hi: __m256i) -> __m256i {
        let pick = _mm256_setr_epi32(
            ODD,
            ODD + 2,
            ODD + 4,
            ODD + 6,
            ODD,
            ODD + 2,
            ODD + 4,
            ODD + 6,
        );
        _mm256_blend_epi32::<0b1111_0000>(
            _mm256_permutevar8x32_epi32(lo, pick),
            _mm256_permutevar8x32_epi32(hi, pick),
        )
    }

    /// (max key, original bits, index 0 / 1) of each column pair (2j, 2j + 1) of one row.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pairs([lo, hi]: [__m256i; 2]) -> (__m256i, __m256i, __m256i) {
        let (kl, kh) = (keys(lo), keys(hi));
        let (ke, ko) = (columns::<0>(kl, kh), columns::<1>(kl, kh));
        let (be, bo) = (columns::<0>(lo, hi), columns::<1>(lo, hi));
        let right = _mm256_cmpgt_epi32(ko, ke);
        (
            _mm256_max_epi32(ke, ko),
            _mm256_blendv_epi8(be, bo, right),
            _mm256_and_si256(right, _mm256_set1_epi32(1)),
        )
    }

    /// The pooled f32 bits and argmax of a row pair given as f32 bits.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pool(top: [__m256i; 2], bottom: [__m256i; 2]) -> (__m256i, __m256i) {
        let (tk, tv, ti) = pairs(top);
        let (bk, bv, bi) = pairs(bottom);
        let lower = _mm256_cmpgt_epi32(bk, tk);
        let at = _mm256_blendv_epi8(ti, _mm256_add_epi32(bi, _mm256_set1_epi32(2)), lower);
        (_mm256_blendv_epi8(tv, bv, lower), at)
    }

    /// A lane mask of the first `n` of 8 lanes (n may exceed 8).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn first(n: usize) -> __m256i {
        let n = n.min(8) as i32;
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    /// The argmax bytes of the first `arg.len()` lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn store_arg(arg: &mut [u8], at: __m256i) {
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` holds 8 i32; an unaligned store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), at) };
        for (a, &l) in arg.iter_mut().zip(&lanes) {
            *a = l as u8;
        }
    }

    /// SAFETY: `cpu::avx2_fma()` is true; rows of the same width ≤ 16, y and arg of width / 2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pool_row_f32([top, bottom]: [&[f32]; 2], y: &mut [f32], arg: &mut [u8]) {
        let width = top.len();
        let load = |row: &[f32]| {
            let p: *const i32 = row.as_ptr().cast();
            // SAFETY: each load is masked to the lanes below `width`, the row's length; masked
            // lanes are not read. `p.wrapping_add(8)` is only dereferenced where width > 8.
            unsafe {
                [
                    _mm256_maskload_epi32(p, first(width)),
                    _mm256_maskload_epi32(p.wrapping_add(8), first(width.saturating_sub(8))),
                ]
            }
        };
        let (v, at) = pool(load(top), load(bottom));
        // Through a stack copy: masked stores are microcoded on AMD cores.
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 f32; an unaligned store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
        y.copy_from_slice(&lanes[..y.len()]);
        store_arg(arg, at);
    }

    /// SAFETY: as for `pool_row_f32`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pool_row_bf16(
        [top, bottom]: [&[bf16]; 2],
        y: &mut [bf16],
        arg: &mut [u8],
    ) {
        // bf16 → f32 bits is a 16-bit shift. AVX2 masks 32-bit lanes: the row's pairs of values
        // are loaded as such, an odd last value inserted by a blend.
        let widen = |row: &[bf16]| {
            let width = row.len();
            let p: *const i32 = row.as_ptr().cast();
            // SAFETY: masked to the width / 2 whole pairs, all inside the row.
            let pairs = unsafe { _mm256_maskload_epi32(p, first(width / 2)) };
            let last = row[width - 1].to_bits() as i16;
            let at_last = _mm256_cmpeq_epi16(
                _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm256_set1_epi16(if width % 2 == 1 { width as i16 - 1 } else { -1 }),
            );
            let h = _mm256_blendv_epi8(pairs, _mm256_set1_epi16(last), at_last);
            [
                _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h))),
                _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm256_extracti128_si256::<1>(h))),
            ]
        };
        let (v, at) = pool(widen(top), widen(bottom));
        let mut lanes = [0u32; 8];
        // SAFETY: `lanes` holds 8 u32; an unaligned store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
        for (y, &l) in y.iter_mut().zip(&lanes) {
            *y = bf16::from_bits((l >> 16) as u16);
        }
        store_arg(arg, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    /// PyTorch's scan: row-major, a larger value or a NaN (over a number) takes over.
    fn reference(x: &[f32], planes: usize, height: usize, width: usize) -> (Vec<f32>, Vec<u8>) {
        let (oh, ow) = (height / 2, width / 2);
        let (mut y, mut arg) = (vec![], vec![]);
        for p in 0..planes {
            for i in 0..oh {
                for j in 0..ow {
                    let at =
                        |k: usize| x[p * height * width + (2 * i + k / 2) * width + 2 * j + k % 2];
                    let mut best = 0;
                    for k in 1..4 {
                        let (v, b) = (at(k), at(best));
                        if v > b || (v.is_nan() && !b.is_nan()) {
                            best = k;
                        }
                    }
                    y.push(at(best));
                    arg.push(best as u8);
                }
            }
        }
        (y, arg)
    }

    /// Every row width the vector path takes and the first it does not, on values with ties,
    /// signed zeros, infinities and NaNs; f32 and bf16 (whose values are exact in f32).
    #[test]
    fn pools_like_pytorch_on_every_width_and_special_value() {
        let specials = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            2.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        let mut state = 12345u32;
        for width in 2..=17 {
            let (planes, height) = (3, 5);
            let x: Vec<f32> = (0..planes * height * width)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    specials[state as usize % specials.len()]
                })
                .collect();
            let (want, want_arg) = reference(&x, planes, height, width);
            let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            let (y, arg) = max_pool2x2_forward(&x, planes, height, width);
            assert_eq!(arg, want_arg, "f32 width {width}");
            assert!(
                y.iter().zip(&want).all(|(&a, &b)| same(a, b)),
                "f32 width {width}"
            );
            let low: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
            let (y, arg) = max_pool2x2_forward(&low, planes, height, width);
            assert_eq!(arg, want_arg, "bf16 width {width}");
            assert!(
                y.iter().zip(&want).all(|(a, &b)| same(a.to_f32(), b)),
                "bf16 width {width}"
            );
        }
    }

    #[test]
    fn pools_the_max_of_each_window_and_routes_gradients_to_it() {
        // Two planes of 3×5: the last row and column fall outside every window.
        let x: Vec<f32> = (0..30).map(|k| ((k * 7 % 11) as f32) - 5.0).collect();
        let (y, arg) = max_pool2x2_forward(&x, 2, 3, 5);
        assert_eq!(y.len(), 2 * 2);
        for p in 0..2 {
            for j in 0..2 {
                let at = |r: usize, c: usize| x[p * 15 + r * 5 + c];
                let want = [
                    at(0, 2 * j),
                    at(0, 2 * j + 1),
                    at(1, 2 * j),
                    at(1, 2 * j + 1),
                ]
                .into_iter()
                .fold(f32::MIN, f32::max);
                assert_eq!(y[p * 2 + j], want);
            }
        }
        let dy = [1.0, 2.0, 3.0, 4.0];
        let dx = max_pool2x2_backward(&dy, &arg, 2, 3, 5);
        assert_eq!(dx.iter().sum::<f32>(), 10.0);
        for (k, &g) in dx.iter().enumerate() {
            if g != 0.0 {
                let (p, r, c) = (k / 15, k % 15 / 5, k % 5);
                assert_eq!(x[k], y[p * 2 + c / 2], "gradient at a non-max ({r}, {c})");
                assert_eq!(g, dy[p * 2 + c / 2]);
            }
        }
    }

    #[test]
    fn nan_propagates() {
        let x = [1.0, f32::NAN, 0.0, 2.0];
        assert!(max_pool2x2_forward(&x, 1, 2, 2).0[0].is_nan());
    }
}
