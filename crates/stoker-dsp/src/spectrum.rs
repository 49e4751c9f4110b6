//! Power spectral density estimates for reports (where the noise is, what a controller removed).

use std::f64::consts::PI;

use rustfft::{FftPlanner, num_complex::Complex};

/// Welch's PSD: periodic-Hann-windowed segments of `segment` samples at 50 % overlap (exact
/// constant overlap-add for Hann), averaged |FFT|², one-sided. Returns the bin frequencies in Hz
/// (0 to fs/2, `segment/2 + 1` of them) and the density in units²/Hz, scaled so that
/// Σ psd·Δf ≈ the signal's mean square. No detrending: an offset shows up at 0 Hz.
///
/// # Panics
/// If `segment` is not a power of two ≥ 2 or `x` is shorter than one segment.
pub fn welch_psd(x: &[f32], sample_rate: f64, segment: usize) -> (Vec<f64>, Vec<f64>) {
    assert!(
        segment >= 2 && segment.is_power_of_two(),
        "Welch segment must be a power of two ≥ 2, got {segment}"
    );
    assert!(
        x.len() >= segment,
        "signal of {} samples is shorter than one segment ({segment})",
        x.len()
    );
    let window: Vec<f64> = (0..segment)
        .map(|n| 0.5 - 0.5 * (2.0 * PI * n as f64 / segment as f64).cos())
        .collect();
    let fft = FftPlanner::new().plan_fft_forward(segment);
    let bins = segment / 2 + 1;
    let starts = (0..x.len() - segment + 1).step_by(segment / 2);
    let count = starts.len();
    let mut power = vec![0f64; bins];
    let mut buf = vec![Complex::default(); segment];
    for start in starts {
        for ((c, &v), &w) in buf.iter_mut().zip(&x[start..start + segment]).zip(&window) {
            *c = Complex::new(v as f64 * w, 0.0);
        }
        fft.process(&mut buf);
        for (p, c) in power.iter_mut().zip(&buf) {
            *p += c.norm_sqr();
        }
    }
    // Density normalisation: divide by fs·Σw² (the window's noise power); negative frequencies
    // fold onto positive ones, except DC and Nyquist which have no mirror.
    let scale = 1.0 / (sample_rate * window.iter().map(|w| w * w).sum::<f64>() * count as f64);
    for (k, p) in power.iter_mut().enumerate() {
        let fold = if k == 0 || k == segment / 2 { 1.0 } else { 2.0 };
        *p *= fold * scale;
    }
    let freqs = (0..bins)
        .map(|k| k as f64 * sample_rate / segment as f64)
        .collect();
    (freqs, power)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fir::energy, test_noise};

    const FS: f64 = 16_000.0;

    #[test]
    fn sine_peaks_at_its_bin_and_power_is_conserved() {
        let noise = test_noise(32_000, 21);
        let x: Vec<f32> = (0..noise.len())
            .map(|n| ((2.0 * PI * 1000.0 * n as f64 / FS).sin() as f32) + 0.1 * noise[n])
            .collect();
        let (freqs, psd) = welch_psd(&x, FS, 1024);
        assert_eq!(freqs.len(), 513);
        let df = freqs[1] - freqs[0];
        let peak = (0..psd.len())
            .max_by(|&a, &b| psd[a].total_cmp(&psd[b]))
            .unwrap();
        assert!(
            (freqs[peak] - 1000.0).abs() <= df / 2.0,
            "peak at {} Hz",
            freqs[peak]
        );
        let total: f64 = psd.iter().sum::<f64>() * df;
        let mean_square = energy(&x) / x.len() as f64;
        assert!(
            (total / mean_square - 1.0).abs() < 0.1,
            "Σpsd·Δf {total} vs mean square {mean_square}"
        );
    }

    #[test]
    fn white_noise_is_flat() {
        let x = test_noise(64_000, 22);
        let (_, psd) = welch_psd(&x, FS, 256);
        // Uniform[−1, 1) has variance 1/3, spread evenly over fs/2.
        let level = 1.0 / 3.0 / (FS / 2.0);
        let inner = &psd[1..psd.len() - 1];
        let mean = inner.iter().sum::<f64>() / inner.len() as f64;
        assert!(
            (mean / level - 1.0).abs() < 0.05,
            "mean level {mean} vs {level}"
        );
    }
}
