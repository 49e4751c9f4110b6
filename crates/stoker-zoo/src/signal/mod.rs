//! Plain-slice signal processing for active noise control (ANC), independent of burn.
//!
//! The protocol these functions serve: signals at 16 kHz, a reference `x`, the disturbance
//! `d = P * x` at the error microphone (`P` the primary path), and a controller that sees only
//! `x(≤ n)` and emits `y(n)`. The microphone hears `e = d − S * g(y)`, with `S` the secondary
//! path and `g` the loudspeaker's optional saturation ([`fir::saturate`]). Quality is the noise
//! reduction [`fir::nr_db`] = 10·log10(Σd² / Σe²).
//!
//! What lives here: the band-split front end ([`filterbank`]), FIR plumbing ([`fir`]), the
//! classic controllers a learned one must beat ([`baselines`]) and a Welch PSD for reports
//! ([`spectrum`]). Inputs and outputs are `f32` like the rest of the pipeline; sums run in `f64`
//! because signals are long (~10⁵ samples) and NR measures residuals 60 dB or more below `d`.

pub mod baselines;
pub mod filterbank;
pub mod fir;
pub mod spectrum;

pub use baselines::{FxNlmsOutput, apply_controller, fxnlms, least_squares_fir};
pub use filterbank::{design_filterbank, filter_delay};
pub use fir::{convolve_causal, nr_db, saturate};
pub use spectrum::welch_psd;

/// Deterministic white noise, uniform in [−1, 1), from xorshift64*: tests need reproducible
/// broadband excitation without a `rand` dependency.
#[cfg(test)]
pub(crate) fn test_noise(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // top 24 bits
            bits as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
