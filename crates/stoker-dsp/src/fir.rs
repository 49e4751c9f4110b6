//! FIR plumbing shared by the plant simulation, the baselines and the filter bank.
//!
//! Causal convolution exists in two arithmetics, each kept exactly as its callers had it
//! (prepared data and training losses must not change by a bit): [`convolve_causal`] for `f32`
//! signals (the model side, the baselines, prediction) and [`convolve_causal_f64`] for prepare's
//! simulation of the primary path in `f64`. Both compute y(n) = Σ_k h(k)·x(n−k) with x(<0) = 0;
//! they differ in summation order, so their last bits may differ.

/// Dot product accumulated in `f64` over eight independent lanes: independent partial sums let
/// the compiler vectorise (a single running sum is a serial dependency chain), and `f64` keeps
/// 512-tap sums accurate far below the residuals NR measures.
pub(crate) fn dot<A, B>(a: &[A], b: &[B]) -> f64
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    debug_assert_eq!(a.len(), b.len());
    const LANES: usize = 8;
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&p, &q)| p.into() * q.into())
        .sum();
    let mut acc = [0f64; LANES];
    for (pa, pb) in ca.zip(cb) {
        for ((s, &p), &q) in acc.iter_mut().zip(pa).zip(pb) {
            *s += p.into() * q.into();
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Causal convolution y(n) = Σ_k h(k)·x(n−k) with x(<0) = 0, truncated to `x.len()` samples:
/// exactly what a real-time filter (or an acoustic path) outputs while `x` plays.
pub fn convolve_causal(h: &[f32], x: &[f32]) -> Vec<f32> {
    // Reversed taps turn each output into one contiguous dot product with a window of x.
    let reversed: Vec<f32> = h.iter().rev().copied().collect();
    (0..x.len())
        .map(|n| {
            let window = &x[(n + 1).saturating_sub(h.len())..=n];
            dot(&reversed[h.len() - window.len()..], window) as f32
        })
        .collect()
}

/// [`convolve_causal`] on `f64` signals, summing in ascending k: y(n) = Σ_k h(k)·x(n − k),
/// as long as x. Blocked so each block of y stays in cache while every tap adds a shifted slice
/// of x to it (a loop the compiler vectorises). Prepare's disturbance d = P * x.
pub fn convolve_causal_f64(h: &[f64], x: &[f64]) -> Vec<f64> {
    const BLOCK: usize = 4096;
    let mut y = vec![0.0; x.len()];
    for (b, out) in y.chunks_mut(BLOCK).enumerate() {
        let start = b * BLOCK;
        let end = start + out.len();
        for (k, &hk) in h.iter().enumerate().take(end) {
            let first = start.max(k);
            for (o, &v) in out[first - start..].iter_mut().zip(&x[first - k..end - k]) {
                *o += hk * v;
            }
        }
    }
    y
}

/// Σ v², in `f64`.
pub(crate) fn energy(v: &[f32]) -> f64 {
    dot(v, v)
}

/// Noise reduction 10·log10(Σd² / Σe²) in dB: positive when the controller removed noise,
/// +∞ for a perfect cancellation of a non-silent `d`.
pub fn nr_db(d: &[f32], e: &[f32]) -> f64 {
    10.0 * (energy(d) / energy(e)).log10()
}

/// Loudspeaker saturation g(y) = tanh(η·y)/η: unit slope at 0 and output bounded by 1/η.
/// `eta == 0` is the linear speaker, g(y) = y (the limit of the formula).
pub fn saturate(y: f32, eta: f32) -> f32 {
    if eta == 0.0 {
        y
    } else {
        (eta * y).tanh() / eta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_noise;

    #[test]
    fn convolution_matches_the_naive_double_loop() {
        let (h, x) = (test_noise(37, 1), test_noise(500, 2));
        let y = convolve_causal(&h, &x);
        for (n, &yn) in y.iter().enumerate() {
            let naive: f64 = (0..h.len().min(n + 1))
                .map(|k| h[k] as f64 * x[n - k] as f64)
                .sum();
            assert!((yn as f64 - naive).abs() < 1e-5, "n={n}: {yn} vs {naive}");
        }
    }

    #[test]
    fn convolution_is_causal() {
        let (h, mut x) = (test_noise(64, 3), test_noise(300, 4));
        let before = convolve_causal(&h, &x);
        let n = 150;
        x[n + 1..].iter_mut().for_each(|v| *v = 7.0);
        let after = convolve_causal(&h, &x);
        assert_eq!(before[..=n], after[..=n]);
        assert_ne!(before[n + 1], after[n + 1]);
    }

    #[test]
    fn f64_convolution_is_the_causal_convolution() {
        let h = [0.5, -1.0, 0.25];
        let x = [1.0, 2.0, 0.0, -1.0, 3.0];
        // y(n) = 0.5 x(n) − x(n−1) + 0.25 x(n−2), x(<0) = 0.
        let expected = [0.5, 0.0, -1.75, 0.0, 2.5];
        assert_eq!(convolve_causal_f64(&h, &x), expected);
        // Longer filter than signal, and an empty signal.
        assert_eq!(
            convolve_causal_f64(&[1.0, 1.0, 1.0, 1.0], &[1.0, 2.0]),
            vec![1.0, 3.0]
        );
        assert!(convolve_causal_f64(&h, &[]).is_empty());
    }

    #[test]
    fn blocked_f64_convolution_matches_the_direct_sum() {
        let x: Vec<f64> = (0..10_000)
            .map(|i| ((i * 7919) % 101) as f64 - 50.0)
            .collect();
        let h: Vec<f64> = (0..300)
            .map(|k| ((k * 31) % 17) as f64 * 0.01 - 0.08)
            .collect();
        let y = convolve_causal_f64(&h, &x);
        for n in [0, 1, 299, 300, 4095, 4096, 4097, 8191, 9999] {
            let direct: f64 = (0..h.len())
                .filter(|&k| k <= n)
                .map(|k| h[k] * x[n - k])
                .sum();
            assert!(
                (y[n] - direct).abs() < 1e-9,
                "n = {n}: {} vs {direct}",
                y[n]
            );
        }
    }

    #[test]
    fn nr_of_a_tenfold_smaller_residual_is_20_db() {
        let d = test_noise(1000, 5);
        let e: Vec<f32> = d.iter().map(|v| v / 10.0).collect();
        assert!((nr_db(&d, &e) - 20.0).abs() < 1e-9);
    }

    #[test]
    fn saturation_is_linear_near_zero_and_bounded() {
        assert_eq!(saturate(3.5, 0.0), 3.5);
        assert!((saturate(1e-3, 2.0) - 1e-3).abs() < 1e-8);
        assert!(saturate(100.0, 2.0) <= 0.5 && saturate(-100.0, 2.0) >= -0.5);
    }
}
