//! A bank of FIR filters over rows of samples, as `conv1d` computes it with one input channel
//! (a cross-correlation, no padding): out[r, c, n] = Σ_k w[c, k]·x[r, n + k]. The ANC model's
//! band split and its secondary path are such filters; burn's CPU convolution ran the
//! secondary path's backward at ~2 % of an ANC training step. Each sum runs as `taps`
//! vectorised multiply-adds over a row held in L1.

use rayon::prelude::*;

use crate::activation::multiversion;
use crate::size::expect_len;

/// Sizes: `rows` signals of `len` samples, `channels` filters of `taps` taps (taps ≤ len).
#[derive(Debug, Clone, Copy)]
pub struct FirShape {
    pub rows: usize,
    pub len: usize,
    pub channels: usize,
    pub taps: usize,
}

impl FirShape {
    /// Outputs per row and channel.
    pub fn outputs(&self) -> usize {
        self.len + 1 - self.taps
    }

    fn check(&self, x: usize, w: usize) {
        assert!(
            self.taps > 0 && self.taps <= self.len,
            "fir: {} taps over rows of {} samples",
            self.taps,
            self.len
        );
        expect_len("fir: x must be [rows, len]", x, &[self.rows, self.len]);
        expect_len(
            "fir: w must be [channels, taps]",
            w,
            &[self.channels, self.taps],
        );
    }
}

multiversion! {
    /// out += w[k]·x[k..] for every tap k: one row's correlation with one filter.
    fn correlate_row(out: &mut [f32], x: &[f32], w: &[f32]) {
        for (k, &wk) in w.iter().enumerate() {
            for (o, &v) in out.iter_mut().zip(&x[k..]) {
                *o = wk.mul_add(v, *o);
            }
        }
    }
}

multiversion! {
    /// dx[k..] += w[k]·dout for every tap k: the input gradient of `correlate_row`.
    fn spread_row(dx: &mut [f32], dout: &[f32], w: &[f32]) {
        for (k, &wk) in w.iter().enumerate() {
            for (d, &g) in dx[k..].iter_mut().zip(dout) {
                *d = wk.mul_add(g, *d);
            }
        }
    }
}

/// Lanes of partial sums `dot` keeps: independent chains that vectorise.
const LANES: usize = 16;

multiversion! {
    /// dw[k] += Σ_n dout[n]·x[n + k] for every tap k: the filter gradient of `correlate_row`.
    fn filter_grad_row(dw: &mut [f32], x: &[f32], dout: &[f32]) {
        for (k, d) in dw.iter_mut().enumerate() {
            let mut acc = [0f32; LANES];
            let (xs, gs) = (&x[k..k + dout.len()], dout);
            let mut xc = xs.chunks_exact(LANES);
            let mut gc = gs.chunks_exact(LANES);
            for (xb, gb) in (&mut xc).zip(&mut gc) {
                for l in 0..LANES {
                    acc[l] = xb[l].mul_add(gb[l], acc[l]);
                }
            }
            let tail: f32 = xc.remainder().iter().zip(gc.remainder()).map(|(a, b)| a * b).sum();
            *d += acc.iter().sum::<f32>() + tail;
        }
    }
}

/// out [rows, channels, outputs]: every row through every filter.
pub fn fir_forward(x: &[f32], w: &[f32], s: FirShape) -> Vec<f32> {
    s.check(x.len(), w.len());
    let n = s.outputs();
    let mut out = vec![0f32; s.rows * s.channels * n];
    out.par_chunks_mut(s.channels * n)
        .zip(x.par_chunks(s.len))
        .for_each(|(o, xr)| {
            for (oc, wc) in o.chunks_mut(n).zip(w.chunks(s.taps)) {
                correlate_row(oc, xr, wc);
            }
        });
    out
}

/// Gradients of `fir_forward` from dout [rows, channels, outputs], each when asked for: dx
/// [rows, len] and dw [channels, taps] (summed over rows).
pub fn fir_backward(
    x: &[f32],
    w: &[f32],
    dout: &[f32],
    s: FirShape,
    [need_dx, need_dw]: [bool; 2],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    s.check(x.len(), w.len());
    let n = s.outputs();
    expect_len(
        "fir: dout must be [rows, channels, outputs]",
        dout.len(),
        &[s.rows, s.channels, n],
    );
    let dx = need_dx.then(|| {
        let mut dx = vec![0f32; s.rows * s.len];
        dx.par_chunks_mut(s.len)
            .zip(dout.par_chunks(s.channels * n))
            .for_each(|(d, g)| {
                for (gc, wc) in g.chunks(n).zip(w.chunks(s.taps)) {
                    spread_row(d, gc, wc);
                }
            });
        dx
    });
    let dw = need_dw.then(|| {
        let mut dw = vec![0f32; s.channels * s.taps];
        for (xr, g) in x.chunks(s.len).zip(dout.chunks(s.channels * n)) {
            for (dc, gc) in dw.chunks_mut(s.taps).zip(g.chunks(n)) {
                filter_grad_row(dc, xr, gc);
            }
        }
        dw
    });
    (dx, dw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo_random;

    fn random(len: usize, seed: u32) -> Vec<f32> {
        pseudo_random(len, seed, 0.5)
    }

    /// The forward and both gradients against their definitions summed in f64, over several
    /// rows and channels, lengths that leave vector tails.
    #[test]
    fn forward_and_gradients_match_definitions() {
        let s = FirShape {
            rows: 3,
            len: 77,
            channels: 2,
            taps: 19,
        };
        let n = s.outputs();
        let (x, w, g) = (
            random(s.rows * s.len, 1),
            random(s.channels * s.taps, 2),
            random(s.rows * s.channels * n, 3),
        );
        let out = fir_forward(&x, &w, s);
        let (dx, dw) = fir_backward(&x, &w, &g, s, [true, true]);
        let (dx, dw) = (dx.expect("asked for"), dw.expect("asked for"));
        let close = |got: f32, want: f64, what: &str| {
            assert!((got as f64 - want).abs() < 1e-5, "{what}: {got} vs {want}");
        };
        let mut want_dx = vec![0f64; x.len()];
        let mut want_dw = vec![0f64; w.len()];
        for r in 0..s.rows {
            for c in 0..s.channels {
                for i in 0..n {
                    let mut sum = 0f64;
                    let gi = g[(r * s.channels + c) * n + i] as f64;
                    for k in 0..s.taps {
                        let (xi, wk) = (x[r * s.len + i + k] as f64, w[c * s.taps + k] as f64);
                        sum += wk * xi;
                        want_dx[r * s.len + i + k] += wk * gi;
                        want_dw[c * s.taps + k] += xi * gi;
                    }
                    close(out[(r * s.channels + c) * n + i], sum, "out");
                }
            }
        }
        for (got, want) in dx.iter().zip(&want_dx) {
            close(*got, *want, "dx");
        }
        for (got, want) in dw.iter().zip(&want_dw) {
            close(*got, *want, "dw");
        }
        let (only_dx, no_dw) = fir_backward(&x, &w, &g, s, [true, false]);
        assert!(no_dw.is_none() && only_dx == Some(dx));
        assert!(fir_backward(&x, &w, &g, s, [false, true]).0.is_none());
    }

    #[test]
    #[should_panic(expected = "taps over rows")]
    fn more_taps_than_samples_is_refused() {
        let s = FirShape {
            rows: 1,
            len: 4,
            channels: 1,
            taps: 5,
        };
        fir_forward(&[0.0; 4], &[0.0; 5], s);
    }
}
