//! FIR plumbing shared by the plant simulation, the baselines and the filter bank.

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
    use crate::signal::test_noise;

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
