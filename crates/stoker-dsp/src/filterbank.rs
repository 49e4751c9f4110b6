//! A linear-phase FIR filter bank that splits a signal into bands which add back up exactly.
//!
//! Each band is the difference of two windowed-sinc low-passes sharing one delay, so the bank
//! telescopes: Σ bands = δ(n − delay). A per-band controller can then work on the bands without
//! the split itself colouring the sum, only delaying it.

use std::f64::consts::PI;

/// Why a filter bank cannot be designed (the edges and taps usually come from a config).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DesignError {
    #[error("filter bank taps must be odd and ≥ 3, got {0}")]
    Taps(usize),
    #[error("band edge {edge} Hz is outside (0, {nyquist}) Hz")]
    EdgeOutside { edge: f64, nyquist: f64 },
    #[error("band edges must be strictly increasing, got {0} then {1}")]
    EdgesNotIncreasing(f64, f64),
}

/// Group delay, in samples, of every filter of a bank with `taps` taps: (taps − 1) / 2.
pub fn filter_delay(taps: usize) -> usize {
    taps.saturating_sub(1) / 2
}

/// Designs `edges_hz.len() + 1` filters of `taps` taps: a low-pass up to the first edge,
/// band-passes between consecutive edges and a high-pass above the last one
/// (δ(n − delay) − the last low-pass).
///
/// Returns an error (rather than panicking, since edges usually come from a config) unless
/// `taps` is odd and ≥ 3 — an integer delay needs an odd length — and the edges are strictly
/// increasing inside (0, fs/2).
pub fn design_filterbank(
    edges_hz: &[f64],
    taps: usize,
    sample_rate: f64,
) -> Result<Vec<Vec<f32>>, DesignError> {
    validate(edges_hz, taps, sample_rate)?;
    let mut delta = vec![0.0; taps];
    delta[filter_delay(taps)] = 1.0;
    // Cumulative low-passes ending in the all-pass delay; successive differences are the bands.
    let cumulative = edges_hz
        .iter()
        .map(|&f| lowpass(f / sample_rate, taps))
        .chain(std::iter::once(delta));
    let mut previous = vec![0.0; taps];
    let mut bank = Vec::with_capacity(edges_hz.len() + 1);
    for next in cumulative {
        bank.push(
            next.iter()
                .zip(&previous)
                .map(|(a, b)| (a - b) as f32)
                .collect(),
        );
        previous = next;
    }
    Ok(bank)
}

fn validate(edges_hz: &[f64], taps: usize, sample_rate: f64) -> Result<(), DesignError> {
    if taps < 3 || taps.is_multiple_of(2) {
        return Err(DesignError::Taps(taps));
    }
    let nyquist = sample_rate / 2.0;
    if let Some(&edge) = edges_hz.iter().find(|&&f| !(f > 0.0 && f < nyquist)) {
        return Err(DesignError::EdgeOutside { edge, nyquist });
    }
    if let Some(w) = edges_hz.windows(2).find(|w| w[0] >= w[1]) {
        return Err(DesignError::EdgesNotIncreasing(w[0], w[1]));
    }
    Ok(())
}

/// Hamming-windowed sinc low-pass with cutoff `fc` (cycles per sample), centred on the bank's
/// delay and scaled to unity DC gain so that low bands pass exactly what they should at 0 Hz.
fn lowpass(fc: f64, taps: usize) -> Vec<f64> {
    let centre = filter_delay(taps) as f64;
    let span = (taps - 1) as f64;
    let h: Vec<f64> = (0..taps)
        .map(|n| {
            let t = n as f64 - centre;
            let sinc = if t == 0.0 {
                2.0 * fc
            } else {
                (2.0 * PI * fc * t).sin() / (PI * t)
            };
            sinc * (0.54 - 0.46 * (2.0 * PI * n as f64 / span).cos())
        })
        .collect();
    let dc: f64 = h.iter().sum();
    h.into_iter().map(|v| v / dc).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fir::{convolve_causal, energy};

    const FS: f64 = 16_000.0;
    const TAPS: usize = 255;

    fn bank() -> Vec<Vec<f32>> {
        design_filterbank(&[500.0, 2000.0], TAPS, FS).unwrap()
    }

    /// Steady-state amplitude gain of `h` on a sine at `freq`, measured after the transient
    /// over a whole number of periods.
    fn sine_gain(h: &[f32], freq: f64) -> f64 {
        let x: Vec<f32> = (0..8000)
            .map(|n| (2.0 * PI * freq * n as f64 / FS).sin() as f32)
            .collect();
        let y = convolve_causal(h, &x);
        let range = TAPS..TAPS + 4000; // 4000 samples = 25 periods of 100 Hz, 1000 of 4 kHz
        (energy(&y[range.clone()]) / energy(&x[range])).sqrt()
    }

    #[test]
    fn bands_sum_to_a_pure_delay() {
        let bank = bank();
        assert_eq!(bank.len(), 3);
        for n in 0..TAPS {
            let sum: f32 = bank.iter().map(|b| b[n]).sum();
            let want = if n == filter_delay(TAPS) { 1.0 } else { 0.0 };
            assert!((sum - want).abs() < 1e-6, "n={n}: {sum}");
        }
    }

    #[test]
    fn low_band_passes_lows_and_high_band_passes_highs() {
        let bank = bank();
        let (low, high) = (&bank[0], &bank[2]);
        let db = |g: f64| 20.0 * g.log10();
        assert!((sine_gain(low, 100.0) - 1.0).abs() < 0.02);
        assert!(db(sine_gain(low, 4000.0)) < -30.0);
        assert!((sine_gain(high, 4000.0) - 1.0).abs() < 0.02);
        assert!(db(sine_gain(high, 100.0)) < -30.0);
    }

    #[test]
    fn bad_designs_are_rejected() {
        assert!(design_filterbank(&[500.0], 256, FS).is_err());
        assert!(design_filterbank(&[500.0, 500.0], TAPS, FS).is_err());
        assert!(design_filterbank(&[8000.0], TAPS, FS).is_err());
        assert!(design_filterbank(&[0.0], TAPS, FS).is_err());
    }
}
