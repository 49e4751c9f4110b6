use super::*;
use crate::testing::pseudo_random;

struct Case {
    steps: usize,
    batch: usize,
    d: usize,
    hd: usize,
    x: Vec<f32>,
    wx: Vec<f32>,
    bias: Vec<f32>,
    wh: Vec<f32>,
}

impl Case {
    fn new(steps: usize, batch: usize, d: usize, hd: usize, seed: u32) -> Self {
        let k = 1.0 / (hd as f32).sqrt();
        Self {
            steps,
            batch,
            d,
            hd,
            x: pseudo_random(steps * batch * d, seed, 1.5),
            wx: pseudo_random(d * 4 * hd, seed + 1, k * 1.5),
            bias: pseudo_random(4 * hd, seed + 2, k),
            wh: pseudo_random(hd * 4 * hd, seed + 3, k * 1.5),
        }
    }

    /// The kernel's forward over this case's input, in f32.
    fn forward(&self, keep_tape: bool) -> (Vec<f32>, Option<LstmTape>) {
        let w = self.weights();
        let (h, tape) = lstm_forward(
            &self.x,
            self.steps,
            self.batch,
            &w,
            MatmulType::F32,
            keep_tape,
        );
        (h.into_vec(), tape)
    }

    fn weights(&self) -> LstmWeights<'_> {
        LstmWeights {
            wx: &self.wx,
            bias: &self.bias,
            wh: &self.wh,
            d_in: self.d,
            hidden: self.hd,
        }
    }

    /// The equations, plainly, in f64: every step's h, [T, B, H].
    fn naive(&self, x: &[f64], wx: &[f64], bias: &[f64], wh: &[f64]) -> Vec<f64> {
        let (b, d, hd) = (self.batch, self.d, self.hd);
        let g4 = 4 * hd;
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let mut out = vec![0f64; self.steps * b * hd];
        for n in 0..b {
            let (mut h, mut c) = (vec![0f64; hd], vec![0f64; hd]);
            for t in 0..self.steps {
                let xr = &x[(t * b + n) * d..][..d];
                let pre: Vec<f64> = (0..g4)
                    .map(|j| {
                        bias[j]
                            + (0..d).map(|k| xr[k] * wx[k * g4 + j]).sum::<f64>()
                            + (0..hd).map(|k| h[k] * wh[k * g4 + j]).sum::<f64>()
                    })
                    .collect();
                for u in 0..hd {
                    let i = sig(pre[u]);
                    let f = sig(pre[hd + u]);
                    let g = pre[2 * hd + u].tanh();
                    let o = sig(pre[3 * hd + u]);
                    c[u] = f * c[u] + i * g;
                    h[u] = o * c[u].tanh();
                    out[(t * b + n) * hd + u] = h[u];
                }
            }
        }
        out
    }

    fn wide(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&a| a as f64).collect()
    }

    fn naive_h(&self) -> Vec<f64> {
        self.naive(
            &Self::wide(&self.x),
            &Self::wide(&self.wx),
            &Self::wide(&self.bias),
            &Self::wide(&self.wh),
        )
    }
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}

fn check_forward(case: &Case) {
    let want = case.naive_h();
    let (h, tape) = case.forward(true);
    let diff = max_abs_diff(&h, &want);
    assert!(diff < 1e-5, "forward off by {diff}");
    let tape = tape.expect("asked for a tape");
    assert_eq!(tape.gates().len(), case.steps * case.batch * 4 * case.hd);
    assert_eq!(tape.cells().len(), case.steps * case.batch * case.hd);
    let (h2, none) = case.forward(false);
    assert!(none.is_none());
    assert_eq!(h, h2);
}

#[test]
fn lstm_forward_matches_naive_equations() {
    check_forward(&Case::new(5, 3, 4, 6, 7));
    // Wider than a 16-lane vector, with a remainder.
    check_forward(&Case::new(4, 5, 9, 21, 11));
}

/// Central finite differences of L = Σ r⊙h through the f64 forward, against the kernel's
/// gradients, for every entry of dx, dwx, dbias and dwh.
fn check_backward(case: &Case) {
    let n_out = case.steps * case.batch * case.hd;
    let r = pseudo_random(n_out, 99, 1.0);
    let (_, tape) = case.forward(true);
    let grads = lstm_backward(
        &case.x,
        &r,
        &tape.unwrap(),
        &case.weights(),
        MatmulType::F32,
    );

    let params = [
        Case::wide(&case.x),
        Case::wide(&case.wx),
        Case::wide(&case.bias),
        Case::wide(&case.wh),
    ];
    let loss = |p: &[Vec<f64>; 4]| -> f64 {
        case.naive(&p[0], &p[1], &p[2], &p[3])
            .iter()
            .zip(&r)
            .map(|(&h, &rv)| h * rv as f64)
            .sum()
    };
    let got = [&grads.dx, &grads.dwx, &grads.dbias, &grads.dwh];
    let names = ["dx", "dwx", "dbias", "dwh"];
    let eps = 1e-5;
    for which in 0..4 {
        assert_eq!(got[which].len(), params[which].len(), "{}", names[which]);
        let mut worst = 0f64;
        for k in 0..params[which].len() {
            let mut p = params.clone();
            p[which][k] += eps;
            let up = loss(&p);
            p[which][k] -= 2.0 * eps;
            let down = loss(&p);
            let want = (up - down) / (2.0 * eps);
            let ours = got[which][k] as f64;
            let err = (ours - want).abs() / (want.abs() + 1e-2);
            worst = worst.max(err);
            assert!(
                err < 1e-3,
                "{}[{k}]: {ours} vs finite difference {want}",
                names[which]
            );
        }
        // Something was checked (a single step has no recurrent term, so dwh = 0).
        if which != 3 || case.steps > 1 {
            assert!(
                got[which].iter().any(|&v| v != 0.0),
                "{} all zero",
                names[which]
            );
        }
        eprintln!("{}: worst relative error {worst:.2e}", names[which]);
    }
}

#[test]
fn lstm_backward_matches_finite_differences() {
    check_backward(&Case::new(5, 3, 4, 6, 3));
}

#[test]
fn lstm_single_step() {
    let case = Case::new(1, 3, 4, 5, 21);
    check_forward(&case);
    check_backward(&case);
    // No recurrent term at all: dwh is zero.
    let (_, tape) = lstm_forward(&case.x, 1, 3, &case.weights(), MatmulType::F32, true);
    let g = lstm_backward(
        &case.x,
        &[1.0; 3 * 5],
        &tape.unwrap(),
        &case.weights(),
        MatmulType::F32,
    );
    assert!(g.dwh.iter().all(|&v| v == 0.0));
    assert!(g.dwx.iter().any(|&v| v != 0.0));
}

#[test]
fn lstm_empty_sequence() {
    let case = Case::new(0, 3, 4, 5, 1);
    let (h, tape) = lstm_forward(&[], 0, 3, &case.weights(), MatmulType::Bf16, true);
    assert!(h.is_empty());
    let g = lstm_backward(&[], &[], &tape.unwrap(), &case.weights(), MatmulType::Bf16);
    assert!(g.dx.is_empty() && g.dwx.iter().all(|&v| v == 0.0));
}

fn rel_norm_diff(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn lstm_bf16_agrees_with_f32() {
    let case = Case::new(12, 8, 16, 32, 5);
    let w = case.weights();
    let dh = pseudo_random(12 * 8 * 32, 77, 1.0);
    let run = |ty| {
        let (h, tape) = lstm_forward(&case.x, 12, 8, &w, ty, true);
        let g = lstm_backward(&case.x, &dh, &tape.unwrap(), &w, ty);
        (h.into_vec(), g)
    };
    let (h32, g32) = run(MatmulType::F32);
    let (h16, g16) = run(MatmulType::Bf16);
    let pairs = [
        ("h", &h16, &h32),
        ("dx", &g16.dx, &g32.dx),
        ("dwx", &g16.dwx, &g32.dwx),
        ("dbias", &g16.dbias, &g32.dbias),
        ("dwh", &g16.dwh, &g32.dwh),
    ];
    for (name, low, full) in pairs {
        let rel = rel_norm_diff(low, full);
        eprintln!("{name}: bf16 vs f32 relative difference {rel:.2e}");
        assert!(rel < 2e-2, "{name}: bf16 off by {rel}");
        // The flag really routes through bf16: the results differ.
        assert!(rel > 1e-5, "{name}: bf16 identical to f32 ({rel})");
    }
}

/// Forward and backward of a batch split over several threads (an odd number of parts, so
/// blocks differ in size) against one block, and with the pooled buffers poisoned (NaN)
/// in between: the split may change the gradients' rounding only (each block's products
/// and weight-gradient partials sum in their own order), reused buffers change nothing.
/// (Under test the pool takes buffers from 1024 elements, so every large buffer here is
/// pooled.)
#[test]
fn lstm_parallel_blocks_and_reused_buffers() {
    let case = Case::new(4, 67, 8, 64, 13);
    let w = case.weights();
    let dh = pseudo_random(4 * 67 * 64, 8, 1.0);
    let x16 = bf16::narrow(case.x.clone());
    let run = |ty, parts| {
        let (h, g) = match ty {
            MatmulType::F32 => {
                let (h, tape) = forward::<f32>(&case.x, 4, 67, &w, true, Some(parts));
                (
                    h.into_vec(),
                    backward(&case.x, &dh, &tape.unwrap(), &w, Some(parts)),
                )
            }
            MatmulType::Bf16 => {
                let (h, tape) = forward::<bf16>(&x16, 4, 67, &w, true, Some(parts));
                let g = backward(&x16, &dh, &tape.unwrap(), &w, Some(parts));
                (bf16::widen(&h), g)
            }
        };
        [h, g.dx, g.dwx, g.dbias, g.dwh]
    };
    let names = ["h", "dx", "dwx", "dbias", "dwh"];
    for ty in [MatmulType::F32, MatmulType::Bf16] {
        let one = run(ty, 1);
        let three = run(ty, 3);
        // Poison every pooled buffer of the sizes in use (and then some).
        for len in [
            4 * 67 * 256,
            67 * 256,
            4 * 67 * 64,
            67 * 64,
            4 * 67 * 8,
            67 * 8,
        ] {
            let bufs: Vec<_> = (0..4)
                .map(|_| {
                    let mut b = Buf::<f32>::take(len);
                    b.fill(f32::NAN);
                    let mut l = Buf::<bf16>::take(len);
                    l.fill(bf16::NAN);
                    (b, l)
                })
                .collect();
            drop(bufs);
        }
        let again = run(ty, 3);
        for (k, name) in names.iter().enumerate() {
            assert_eq!(three[k], again[k], "{ty:?}: {name} after buffer reuse");
            assert!(three[k].iter().all(|v| v.is_finite()), "{ty:?}: {name}");
            // bf16 rounds the gate gradients, whose f32 values differ in the last bits.
            let tol = if ty == MatmulType::F32 { 1e-5 } else { 1e-2 };
            let scale = one[k].iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in one[k].iter().zip(&three[k]) {
                assert!(
                    (a - b).abs() <= tol * scale,
                    "{ty:?}: {name} {a} (one block) vs {b} (three)"
                );
            }
        }
        assert_eq!(one[0], three[0], "{ty:?}: h does not depend on the split");
    }
    // And the whole thing against the equations.
    let (h, _) = forward::<f32>(&case.x, 4, 67, &w, false, Some(3));
    let diff = max_abs_diff(&h, &case.naive_h());
    assert!(diff < 1e-5, "forward off by {diff}");
}

/// The bf16-in, bf16-out entry points compute what the f32 ones do with bf16 products, on an
/// input that bf16 holds exactly.
#[test]
fn lstm_bf16_entry_points_match_the_f32_ones() {
    let mut case = Case::new(5, 9, 6, 20, 17);
    case.x = bf16::widen(&bf16::narrow(case.x.clone()));
    let x16 = bf16::narrow(case.x.clone());
    let w = case.weights();
    let (h, tape) = lstm_forward(&case.x, 5, 9, &w, MatmulType::Bf16, true);
    let (h16, tape16) = lstm_forward_bf16(&x16, 5, 9, &w, true);
    assert_eq!(bf16::widen(&h16), h.to_vec());
    assert!(h.iter().any(|&v| v != 0.0));
    let dh = pseudo_random(5 * 9 * 20, 3, 1.0);
    let g = lstm_backward(&case.x, &dh, &tape.unwrap(), &w, MatmulType::Bf16);
    let g16 = lstm_backward_bf16(&x16, &dh, &tape16.unwrap(), &w);
    assert_eq!(
        (g.dx, g.dwx, g.dbias, g.dwh),
        (g16.dx, g16.dwx, g16.dbias, g16.dwh)
    );
}
