//! # stoker-dsp — signal processing on plain slices
//!
//! The signal processing that both prepare (simulating the acoustic plant) and the model side
//! (the ANC model's filter bank, its least-squares warm start, prediction's baselines and
//! reports) need, written once and free of burn: inputs and outputs are `f32`/`f64` slices.
//!
//! The protocol these functions serve: signals at 16 kHz, a reference `x`, the disturbance
//! `d = P * x` at the error microphone (`P` the primary path), and a controller that sees only
//! `x(≤ n)` and emits `y(n)`. The microphone hears `e = d − S * g(y)`, with `S` the secondary
//! path and `g` the loudspeaker's optional saturation ([`saturate`]). Quality is the noise
//! reduction [`nr_db`] = 10·log10(Σd² / Σe²).
//!
//! Principal items:
//! - [`fir`]: causal convolution ([`convolve_causal`], and [`convolve_causal_f64`] for the
//!   plant simulation in `f64`), [`saturate`], [`nr_db`];
//! - [`filterbank`]: the linear-phase band split ([`design_filterbank`], [`DesignError`]);
//! - [`baselines`]: the classic controllers a learned one must beat ([`fxnlms`],
//!   [`least_squares_fir`], [`apply_controller`]);
//! - [`spectrum`]: a Welch PSD for reports ([`welch_psd`]);
//! - [`wav`]: mono WAV writing ([`wav::write_mono`], [`wav::WavFormat`]).
//!
//! Sums run in `f64` because signals are long (~10⁵ samples) and NR measures residuals 60 dB
//! or more below `d`.
//!
//! ```
//! use stoker_dsp::{apply_controller, convolve_causal, nr_db};
//!
//! // A secondary path that delays by one sample; the ideal controller for d(n) = x(n − 1)
//! // is then the identity.
//! let x: Vec<f32> = (0..64).map(|n| (n as f32 * 0.3).sin()).collect();
//! let s = [0.0, 1.0];
//! let d = convolve_causal(&s, &x);
//! let e = apply_controller(&[1.0], &x, &s, &d, 0.0);
//! assert!(e.iter().all(|&v| v == 0.0));
//! assert!(nr_db(&d, &e).is_infinite());
//! ```

pub mod baselines;
pub mod filterbank;
pub mod fir;
pub mod spectrum;
pub mod wav;

pub use baselines::{FxNlmsOutput, apply_controller, fxnlms, least_squares_fir};
pub use filterbank::{DesignError, design_filterbank, filter_delay};
pub use fir::{convolve_causal, convolve_causal_f64, nr_db, saturate};
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
