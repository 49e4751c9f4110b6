//! Classic ANC controllers, the yardsticks a learned controller is compared against: the online
//! filtered-reference NLMS (what a real-time ANC unit runs) and the offline least-squares FIR
//! (the best any causal linear FIR of that length can do on the data).

use std::ops::Range;

use super::fir::{convolve_causal, dot, saturate};

/// The run of an adaptive controller over a whole signal.
#[derive(Debug, Clone, PartialEq)]
pub struct FxNlmsOutput {
    /// What the error microphone heard, e(n), for every sample.
    pub residual: Vec<f32>,
    /// The controller taps w(k) after the last sample.
    pub weights: Vec<f32>,
}

/// Filtered-reference NLMS adapting online from w = 0, in O(N·(taps + |S|)).
///
/// Each sample: y(n) = Σ_k w(k)·x(n−k); e(n) = d(n) − Σ_k S(k)·g(y(n−k)) with g =
/// [`saturate`]`(·, eta)`; then w(k) += step·e(n)·x'(n−k) / (‖x'_hist(n)‖² + eps) where
/// x' = S * x. Filtering the reference through S (assumed known exactly) aligns the gradient
/// with the plant the speaker drives; normalising by the reference power makes `step` a
/// dimensionless rate (stable for 0 < step < 2 without delay, smaller with it).
pub fn fxnlms(x: &[f32], d: &[f32], s: &[f32], taps: usize, step: f32, eta: f32) -> FxNlmsOutput {
    assert_eq!(x.len(), d.len(), "x and d must have the same length");
    assert!(
        taps > 0 && !s.is_empty(),
        "need at least one controller and one path tap"
    );
    const EPS: f64 = 1e-6;
    let filtered = convolve_causal(s, x);
    // Histories as zero-padded buffers in time order, so the window for sample n is the
    // contiguous slice [n, n + len) and the taps are kept time-reversed to match it.
    let xp = zero_padded(x, taps);
    let fp = zero_padded(&filtered, taps);
    let s_rev: Vec<f32> = s.iter().rev().copied().collect();
    let mut speaker = vec![0f32; s.len() - 1 + x.len()];
    let mut w_rev = vec![0f64; taps];
    let mut norm = 0f64; // ‖x'_hist(n)‖², slid in O(1) per sample
    let mut residual = Vec::with_capacity(x.len());
    for n in 0..x.len() {
        let y = dot(&w_rev, &xp[n..n + taps]) as f32;
        speaker[s.len() - 1 + n] = saturate(y, eta);
        let e = d[n] as f64 - dot(&s_rev, &speaker[n..n + s.len()]);
        residual.push(e as f32);
        let entering = fp[n + taps - 1] as f64;
        let leaving = if n > 0 { fp[n - 1] as f64 } else { 0.0 };
        norm = (norm + entering * entering - leaving * leaving).max(0.0);
        let gain = step as f64 * e / (norm + EPS);
        for (w, &f) in w_rev.iter_mut().zip(&fp[n..n + taps]) {
            *w += gain * f as f64;
        }
    }
    let weights = w_rev.iter().rev().map(|&w| w as f32).collect();
    FxNlmsOutput { residual, weights }
}

/// The causal FIR controller w (`taps` coefficients) minimising Σ_{n∈fit} (d(n) − (w * x')(n))²
/// with x' = S * x. Filtering x instead of the output is exact for the linear plant since
/// S * (w * x) = w * (S * x); the history before `fit.start` is used, x'(<0) = 0.
///
/// Solves the normal equations by Cholesky in `f64`, with a ridge of 1e-9 × the mean diagonal
/// so that a band-limited reference (singular covariance) still has a solution.
/// Returns zeros if x' is silent over `fit`.
///
/// # Panics
/// If `taps` is 0 or `fit` goes past the end of `x` or `d`.
pub fn least_squares_fir(
    x: &[f32],
    d: &[f32],
    s: &[f32],
    taps: usize,
    fit: Range<usize>,
) -> Vec<f32> {
    assert!(taps > 0, "a controller needs at least one tap");
    assert!(
        fit.end <= x.len() && fit.end <= d.len(),
        "fit range {fit:?} past the signals ({} samples)",
        x.len().min(d.len())
    );
    let filtered = convolve_causal(s, x);
    let mut r = covariance(&filtered, taps, fit.clone());
    let p = cross_correlation(&filtered, d, taps, fit);
    let trace: f64 = (0..taps).map(|i| r[i][i]).sum();
    if trace == 0.0 {
        return vec![0.0; taps];
    }
    let ridge = 1e-9 * trace / taps as f64;
    (0..taps).for_each(|i| r[i][i] += ridge);
    cholesky_solve(r, &p)
        .expect("ridged covariance is positive definite")
        .into_iter()
        .map(|w| w as f32)
        .collect()
}

/// e = d − S * g(w * x): the residual a fixed FIR controller `w` leaves.
pub fn apply_controller(w: &[f32], x: &[f32], s: &[f32], d: &[f32], eta: f32) -> Vec<f32> {
    assert_eq!(x.len(), d.len(), "x and d must have the same length");
    let drive: Vec<f32> = convolve_causal(w, x)
        .into_iter()
        .map(|y| saturate(y, eta))
        .collect();
    let heard = convolve_causal(s, &drive);
    d.iter().zip(heard).map(|(&d, h)| d - h).collect()
}

fn zero_padded(v: &[f32], history: usize) -> Vec<f32> {
    let mut padded = vec![0f32; history - 1];
    padded.extend_from_slice(v);
    padded
}

/// R[i][j] = Σ_{n∈a..b} f(n−i)·f(n−j), f(<0) = 0, in O(taps·(b−a) + taps²): the first row by
/// direct correlation, then each diagonal step shifts the summation window back by one sample,
/// R[i+1][j+1] = R[i][j] + f(a−1−i)f(a−1−j) − f(b−1−i)f(b−1−j).
fn covariance(f: &[f32], taps: usize, Range { start: a, end: b }: Range<usize>) -> Vec<Vec<f64>> {
    let mut r = vec![vec![0f64; taps]; taps];
    if a >= b {
        return r;
    }
    // Signed sample index: the recursion reaches back before sample 0, where f is 0.
    let at = |n: isize| usize::try_from(n).map_or(0.0, |i| f[i] as f64);
    let (a, b) = (a as isize, b as isize);
    r[0] = lagged_products(f, f, taps, a as usize..b as usize);
    for i in 0..taps - 1 {
        for j in i..taps - 1 {
            let (i_, j_) = (i as isize, j as isize);
            let entering = at(a - 1 - i_) * at(a - 1 - j_);
            let leaving = at(b - 1 - i_) * at(b - 1 - j_);
            let next = r[i][j] + entering - leaving;
            r[i + 1][j + 1] = next;
            r[j + 1][i + 1] = next;
        }
    }
    let first_row = r[0].clone();
    for (row, v) in r.iter_mut().zip(first_row) {
        row[0] = v;
    }
    r
}

/// p[i] = Σ_{n∈fit} d(n)·f(n−i).
fn cross_correlation(f: &[f32], d: &[f32], taps: usize, fit: Range<usize>) -> Vec<f64> {
    lagged_products(d, f, taps, fit)
}

/// Σ_{n∈a..b} u(n)·v(n−lag) for each lag in 0..taps, with v(<0) = 0.
fn lagged_products(
    u: &[f32],
    v: &[f32],
    taps: usize,
    Range { start: a, end: b }: Range<usize>,
) -> Vec<f64> {
    (0..taps)
        .map(|lag| {
            let lo = a.max(lag);
            if lo >= b {
                0.0
            } else {
                dot(&u[lo..b], &v[lo - lag..b - lag])
            }
        })
        .collect()
}

/// Solves A·z = b for symmetric positive-definite A via A = L·Lᵀ (L overwrites A's lower
/// triangle); `None` if a pivot is not positive, i.e. A is not positive definite.
fn cholesky_solve(mut a: Vec<Vec<f64>>, b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    for j in 0..n {
        let pivot = a[j][j] - dot(&a[j][..j], &a[j][..j]);
        if pivot.is_nan() || pivot <= 0.0 {
            return None;
        }
        let pivot = pivot.sqrt();
        a[j][j] = pivot;
        for i in j + 1..n {
            a[i][j] = (a[i][j] - dot(&a[i][..j], &a[j][..j])) / pivot;
        }
    }
    // L·y = b, forward.
    let mut z = b.to_vec();
    for i in 0..n {
        z[i] = (z[i] - dot(&a[i][..i], &z[..i])) / a[i][i];
    }
    // Lᵀ·z = y, backward: column i of L below the diagonal.
    for i in (0..n).rev() {
        let below: f64 = (i + 1..n).map(|k| a[k][i] * z[k]).sum();
        z[i] = (z[i] - below) / a[i][i];
    }
    Some(z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fir::nr_db, test_noise};

    const TAPS: usize = 32;

    /// White reference, a secondary path with a dominant (delayed) tap, a known 32-tap
    /// controller and the disturbance it would cancel exactly: d = S * (w_true * x).
    fn plant() -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = test_noise(20_000, 11);
        let mut s: Vec<f32> = test_noise(12, 12).iter().map(|v| 0.2 * v).collect();
        s[1] = 1.0;
        let w_true: Vec<f32> = test_noise(TAPS, 13)
            .iter()
            .enumerate()
            .map(|(k, v)| v * 0.9f32.powi(k as i32))
            .collect();
        let d = convolve_causal(&s, &convolve_causal(&w_true, &x));
        (x, s, w_true, d)
    }

    #[test]
    fn least_squares_recovers_a_known_controller() {
        let (x, s, w_true, d) = plant();
        let w = least_squares_fir(&x, &d, &s, TAPS, 0..x.len());
        for (k, (a, b)) in w.iter().zip(&w_true).enumerate() {
            assert!((a - b).abs() < 1e-3, "tap {k}: {a} vs {b}");
        }
        let nr = nr_db(&d, &apply_controller(&w, &x, &s, &d, 0.0));
        assert!(nr > 60.0, "NR {nr} dB");
    }

    #[test]
    fn least_squares_fits_a_window_not_starting_at_zero() {
        let (x, s, w_true, d) = plant();
        let w = least_squares_fir(&x, &d, &s, TAPS, 5_000..9_000);
        let worst = w
            .iter()
            .zip(&w_true)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-3, "worst tap error {worst}");
    }

    #[test]
    fn covariance_recursion_matches_direct_sums() {
        let f = test_noise(300, 14);
        let at = |n: usize, lag: usize| n.checked_sub(lag).map_or(0.0, |i| f[i] as f64);
        // A window with history before it, and one whose history is the zeros before x(0).
        for fit in [3..250, 0..120] {
            let r = covariance(&f, 7, fit.clone());
            for (i, row) in r.iter().enumerate() {
                for (j, &rij) in row.iter().enumerate() {
                    let direct: f64 = fit.clone().map(|n| at(n, i) * at(n, j)).sum();
                    assert!((rij - direct).abs() < 1e-9, "{fit:?}: R[{i}][{j}]");
                }
            }
        }
    }

    #[test]
    fn fxnlms_converges() {
        let (x, s, _, d) = plant();
        let out = fxnlms(&x, &d, &s, TAPS, 0.1, 0.0);
        let n = x.len();
        let early = nr_db(&d[..n / 10], &out.residual[..n / 10]);
        let late = nr_db(&d[n / 2..], &out.residual[n / 2..]);
        assert!(late > 20.0, "late NR {late} dB");
        assert!(late > early, "late {late} dB vs early {early} dB");
        assert_eq!(out.weights.len(), TAPS);
    }
}
