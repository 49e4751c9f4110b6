//! Sample-rate conversion of a whole recording with rubato's synchronous FFT resampler: the
//! spectrum is cut (anti-aliasing) or extended, and the resampler's startup delay is trimmed so
//! output sample n lies at the time of input sample n · from / to (to within one input sample).

use crate::error::{Error, Result};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

/// Input frames per FFT block: long blocks put the anti-aliasing cutoff close to the new
/// Nyquist frequency; the delay they add is trimmed.
const CHUNK: usize = 2048;

/// `signal` at `from` Hz, resampled to `to` Hz: ⌈len · to / from⌉ samples.
pub(crate) fn resample(signal: &[f64], from: u32, to: u32) -> Result<Vec<f64>> {
    let failed = |message: String| Error::Resample { from, to, message };
    if from == 0 || to == 0 {
        return Err(failed("a rate of 0 Hz".into()));
    }
    if from == to || signal.is_empty() {
        return Ok(signal.to_vec());
    }
    let mut resampler = Fft::<f64>::new_custom(
        from as usize,
        to as usize,
        CHUNK,
        1,
        1,
        WindowFunction::BlackmanHarris2,
        FixedSync::Both,
    )
    .map_err(|e| failed(e.to_string()))?;
    let input = InterleavedSlice::new(signal, 1, signal.len())
        .map_err(|e| failed(format!("resampler input buffer: {e}")))?;
    let output = resampler
        .process_all(&input, signal.len(), None)
        .map_err(|e| failed(e.to_string()))?;
    Ok(output.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, seconds: f64) -> Vec<f64> {
        let n = (seconds * f64::from(rate)) as usize;
        (0..n)
            .map(|i| (std::f64::consts::TAU * freq * i as f64 / f64::from(rate)).sin())
            .collect()
    }

    /// RMS of the middle of a signal (away from the edges' transients).
    fn mid_rms(x: &[f64]) -> f64 {
        let m = &x[x.len() / 4..3 * x.len() / 4];
        (m.iter().map(|v| v * v).sum::<f64>() / m.len() as f64).sqrt()
    }

    #[test]
    fn in_band_tone_keeps_its_amplitude_and_phase() {
        let x = tone(1000.0, 48_000, 1.0);
        let y = resample(&x, 48_000, 16_000).unwrap();
        assert_eq!(y.len(), 16_000);
        let amplitude = mid_rms(&y) * 2f64.sqrt();
        assert!((amplitude - 1.0).abs() < 0.02, "amplitude {amplitude}");
        // The delay is trimmed: y(n) ≈ x(3n) to within one input sample (20 µs).
        let mid = 4000..12_000;
        let (mut s, mut c) = (0.0, 0.0);
        for n in mid {
            let phase = std::f64::consts::TAU * 1000.0 * n as f64 / 16_000.0;
            s += y[n] * phase.sin();
            c += y[n] * phase.cos();
        }
        let lag_in_samples = -c.atan2(s) / std::f64::consts::TAU / 1000.0 * 48_000.0;
        assert!(
            lag_in_samples.abs() <= 1.01,
            "output lags the input by {lag_in_samples:.3} input samples"
        );
    }

    #[test]
    fn tone_above_the_new_nyquist_is_removed_not_aliased() {
        let x = tone(10_000.0, 48_000, 1.0);
        let y = resample(&x, 48_000, 16_000).unwrap();
        let db = 20.0 * (mid_rms(&y) / mid_rms(&x)).log10();
        assert!(db < -40.0, "10 kHz tone only attenuated by {db:.1} dB");
    }

    #[test]
    fn other_ratios_have_the_expected_length() {
        let x = tone(440.0, 44_100, 0.5);
        let y = resample(&x, 44_100, 16_000).unwrap();
        assert_eq!(
            y.len(),
            (x.len() as f64 * 16_000.0 / 44_100.0).ceil() as usize
        );
        let amplitude = mid_rms(&y) * 2f64.sqrt();
        assert!((amplitude - 1.0).abs() < 0.02, "amplitude {amplitude}");
        assert_eq!(resample(&x, 8000, 8000).unwrap(), x);
    }
}
