//! Vectorised activations. `tanh` is Eigen's rational approximation (max error a few ulp over
//! f32, exact saturation beyond ±7.9): branch-free, so the loops below compile to AVX-512 on
//! CPUs that have it, where the scalar libm call costs ~3 ns an element.

/// Runs `$body` (a loop over slices) compiled for AVX-512 when the CPU has every feature it is
/// compiled for (`cpu::avx512_wide`), else for AVX2 + FMA (`cpu::avx2_fma`), else baseline.
/// The tiers give the same results: Rust neither contracts a·b + c nor reorders sums, and
/// `mul_add` rounds once on every tier (baseline calls libm's `fmaf`, the slow part there).
macro_rules! multiversion {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? $body
                if $crate::cpu::avx512_wide() {
                    // SAFETY: `avx512_wide` detected every feature `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? $body
                if $crate::cpu::avx2_fma() {
                    // SAFETY: `avx2_fma` detected every feature `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body
        }
    };
}
pub(crate) use multiversion;

/// tanh, accurate to a few ulp in f32.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Eigen's coefficients, as published
pub fn tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16_f32;
    p = p.mul_add(x2, 2.000_187_9e-13);
    p = p.mul_add(x2, -8.604_672e-11);
    p = p.mul_add(x2, 5.122_297_3e-8);
    p = p.mul_add(x2, 1.485_722_4e-5);
    p = p.mul_add(x2, 6.372_619_3e-4);
    p = p.mul_add(x2, 4.893_524_6e-3);
    let p = p * x;
    let mut q = 1.198_258_4e-6_f32;
    q = q.mul_add(x2, 1.185_347_1e-4);
    q = q.mul_add(x2, 2.268_434_6e-3);
    q = q.mul_add(x2, 4.893_525e-3);
    p / q
}

/// The logistic function, through tanh: σ(x) = ½·tanh(x/2) + ½.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    0.5f32.mul_add(tanh(0.5 * x), 0.5)
}

multiversion! {
    fn tanh_in_place(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = tanh(*v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_and_sigmoid_match_libm() {
        let mut worst = (0f32, 0f32);
        for k in -200_000..=200_000 {
            let x = k as f32 * 1e-4;
            let err = (tanh(x) - x.tanh()).abs();
            if err > worst.0 {
                worst = (err, x);
            }
            let s = 1.0 / (1.0 + (-x).exp());
            assert!((sigmoid(x) - s).abs() < 1e-6, "sigmoid({x})");
        }
        assert!(worst.0 < 1e-6, "tanh off by {} at {}", worst.0, worst.1);
        // Saturates (to within the f32 spacing below 1) instead of overflowing.
        assert!((tanh(40.0) - 1.0).abs() < 1e-6 && (tanh(-40.0) + 1.0).abs() < 1e-6);
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn in_place_matches_scalar() {
        let mut v: Vec<f32> = (0..1000).map(|k| (k as f32 - 500.0) / 60.0).collect();
        let want: Vec<f32> = v.iter().map(|&x| tanh(x)).collect();
        tanh_in_place(&mut v);
        assert_eq!(v, want);
    }
}
