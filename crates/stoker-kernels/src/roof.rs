//! This core's f32 multiply-add and bf16 dot-product roofs, measured: independent FMA chains in registers, enough of
//! them to keep both FMA pipes busy through their latency (12 ymm chains on AVX2, 16 zmm on
//! AVX-512, as `../shared/tools/peak.c`), so a benchmark can print its kernels' share of the
//! peak measured in the same run rather than a figure from another day.

use std::time::Instant;

/// Threads the threaded products split over (rayon's pool): the single-thread roofs × this is
/// their roof.
pub fn product_threads() -> usize {
    rayon::current_num_threads()
}

/// Single-thread f32 GFLOP/s of `iterations` rounds of independent FMAs on the widest path
/// this CPU has (0 where neither AVX2 nor AVX-512 is available: no roof to compare against).
pub fn fma_peak_gflops(iterations: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let started = Instant::now();
        let flops = if crate::cpu::avx512_wide() {
            // SAFETY: `avx512_wide` detected the features `x86::chains_avx512` is compiled for.
            unsafe { x86::chains_avx512(iterations) }
        } else if crate::cpu::avx2_fma() {
            // SAFETY: `avx2_fma` detected the features `x86::chains_avx2` is compiled for.
            unsafe { x86::chains_avx2(iterations) }
        } else {
            return 0.0;
        };
        flops / started.elapsed().as_secs_f64() / 1e9
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (iterations, Instant::now());
        0.0
    }
}

/// Single-thread GFLOP/s of `iterations` rounds of independent `vdpbf16ps` (16 zmm chains, as
/// `../shared/tools/peak.c`; each does 16 lanes × 2 bf16 products, added: 64 FLOPs); 0 where
/// the CPU has no AVX512_BF16.
pub fn bf16_dot_peak_gflops(iterations: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if !crate::cpu::avx512_bf16() {
            return 0.0;
        }
        let started = Instant::now();
        // SAFETY: `avx512_bf16` detected the features `x86::chains_bf16` is compiled for.
        let flops = unsafe { x86::chains_bf16(iterations) };
        flops / started.elapsed().as_secs_f64() / 1e9
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (iterations, Instant::now());
        0.0
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::hint::black_box;

    /// FLOPs done: 12 chains × 8 lanes × 2 per iteration.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn chains_avx2(iterations: u64) -> f64 {
        let (b, c) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(0.999_999));
        let mut acc: [__m256; 12] = std::array::from_fn(|i| _mm256_set1_ps(i as f32));
        for _ in 0..iterations {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, b, c);
            }
        }
        black_box(acc);
        iterations as f64 * 12.0 * 16.0
    }

    /// FLOPs done: 16 chains × 16 lanes × 2 per iteration.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub(super) unsafe fn chains_avx512(iterations: u64) -> f64 {
        let (b, c) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(0.999_999));
        let mut acc: [__m512; 16] = std::array::from_fn(|i| _mm512_set1_ps(i as f32));
        for _ in 0..iterations {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, b, c);
            }
        }
        black_box(acc);
        iterations as f64 * 16.0 * 32.0
    }

    /// FLOPs done: 16 chains × 64 per iteration.
    ///
    /// # Safety
    /// The CPU has AVX-512F, BW, VL and BF16.
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
    pub(super) unsafe fn chains_bf16(iterations: u64) -> f64 {
        // Bit patterns of bf16 pairs near 1.0 (0x3f80): the sums stay finite.
        let pair = |bits: i32| -> __m512bh {
            // SAFETY: both are plain 512-bit vectors; bf16 pairs are just reinterpreted bits.
            unsafe { core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(bits)) }
        };
        let (b, c) = (pair(0x3f80_3f80), pair(0x3c00_3c00));
        let mut acc: [__m512; 16] = std::array::from_fn(|i| _mm512_set1_ps(i as f32));
        for _ in 0..iterations {
            for a in acc.iter_mut() {
                *a = _mm512_dpbf16_ps(*a, b, c);
            }
        }
        black_box(acc);
        iterations as f64 * 16.0 * 64.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bf16_roof_is_positive_where_avx512_bf16_exists() {
        let peak = super::bf16_dot_peak_gflops(100_000);
        assert_eq!(peak > 0.0, crate::cpu::avx512_bf16());
    }

    #[test]
    fn the_roof_is_positive_where_a_vector_path_exists() {
        let peak = super::fma_peak_gflops(100_000);
        assert_eq!(
            peak > 0.0,
            crate::cpu::avx2_fma() || crate::cpu::avx512_wide()
        );
    }
}
