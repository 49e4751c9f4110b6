//! Which instruction sets the kernels may use: one cached detection per set of target features
//! a kernel is compiled for, each checking every feature in the set, all of them off when
//! `STOKER_KERNELS_PORTABLE=1` (so CI runs the portable paths on an AVX-512 host).
//!
//! A function compiled with `#[target_feature(enable = ...)]` may be called only where its
//! set's detection below returned true.

use std::sync::OnceLock;

/// The environment variable that forces every kernel onto its portable path.
pub const PORTABLE_ENV: &str = "STOKER_KERNELS_PORTABLE";

/// Whether `STOKER_KERNELS_PORTABLE=1` forces the portable paths (read once per process).
pub fn portable_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var_os(PORTABLE_ENV).is_some_and(|v| v == "1"))
}

/// Defines `$name()`: true when the CPU has every listed feature and portable is not forced.
macro_rules! feature_set {
    ($(#[$doc:meta])* $name:ident: $($feature:tt),+) => {
        $(#[$doc])*
        pub fn $name() -> bool {
            static HAS: OnceLock<bool> = OnceLock::new();
            *HAS.get_or_init(|| {
                #[cfg(target_arch = "x86_64")]
                {
                    !portable_forced() && $(std::arch::is_x86_feature_detected!($feature))&&+
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    false
                }
            })
        }
    };
}

feature_set! {
    /// `avx512f,avx512bw,avx512vl,avx2,fma`: the loops `multiversion!` (and the LSTM's
    /// `dispatch!`) compile twice.
    avx512_wide: "avx512f", "avx512bw", "avx512vl", "avx2", "fma"
}

feature_set! {
    /// `avx2,fma`: the loops `multiversion!` compiles a second time for CPUs without AVX-512,
    /// the batch-1 products of `matvec` and the pooling kernel.
    avx2_fma: "avx2", "fma"
}

feature_set! {
    /// `avx512f,avx512bw,avx512vl`: the hand-written im2col / col2im and pooling kernels.
    avx512_bw_vl: "avx512f", "avx512bw", "avx512vl"
}

feature_set! {
    /// `avx512f,avx512bf16,avx512bw,avx512vl`: the native bf16 matrix product.
    avx512_bf16: "avx512f", "avx512bw", "avx512vl", "avx512bf16"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portable_switch_turns_every_set_off() {
        let forced = std::env::var_os(PORTABLE_ENV).is_some_and(|v| v == "1");
        assert_eq!(portable_forced(), forced);
        if forced {
            assert!(!avx512_wide() && !avx512_bw_vl() && !avx512_bf16() && !avx2_fma());
        }
        // A CPU with bf16 products has the narrower sets too.
        if avx512_bf16() {
            assert!(avx512_bw_vl());
        }
    }
}
