//! One Adam step over a parameter in a single pass: the moments, the bias-corrected update and
//! the new parameter element by element, where a tensor library runs about a dozen passes.
//!
//! The arithmetic follows burn's `Adam` operation for operation (each product and sum rounded
//! to f32 in the same order, no fused multiply-add), so both give the same bits.

use rayon::prelude::*;

use simd::{Scalars, update, update_decayed};

/// Adam's hyper-parameters for one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// L2 penalty added to the gradient (0: none).
    pub weight_decay: f32,
    /// Steps taken including this one (1 on the first).
    pub time: i32,
}

/// Elements per parallel task: enough that the split costs nothing next to the pass.
const CHUNK: usize = 1 << 15;

/// Updates `param`, `moment_1` and `moment_2` in place from `grad`. The moments of a first
/// step are zeros.
pub fn adam_step(
    param: &mut [f32],
    grad: &[f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
    h: AdamStep,
) {
    let n = param.len();
    assert!(
        grad.len() == n && moment_1.len() == n && moment_2.len() == n,
        "adam_step: parameter, gradient and moments differ in length"
    );
    let bias_correction2_sqrt = (1.0 - h.beta_2.powi(h.time)).sqrt();
    let scalars = Scalars {
        lr: h.lr,
        beta_1: h.beta_1,
        beta_2: h.beta_2,
        factor_1: 1.0 - h.beta_1,
        factor_2: 1.0 - h.beta_2,
        combined: bias_correction2_sqrt / (1.0 - h.beta_1.powi(h.time)),
        epsilon: h.epsilon * bias_correction2_sqrt,
        weight_decay: h.weight_decay,
    };
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(moment_1.par_chunks_mut(CHUNK))
        .zip(moment_2.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            if scalars.weight_decay == 0.0 {
                update(p, g, m, v, scalars);
            } else {
                update_decayed(p, g, m, v, scalars);
            }
        });
}

/// The element loops, compiled for AVX-512 where the CPU has it.
mod simd {
    use crate::activation::multiversion;

    /// The per-step constants.
    #[derive(Debug, Clone, Copy)]
    pub struct Scalars {
        pub lr: f32,
        pub beta_1: f32,
        pub beta_2: f32,
        pub factor_1: f32,
        pub factor_2: f32,
        pub combined: f32,
        pub epsilon: f32,
        pub weight_decay: f32,
    }

    /// One element: burn's `moment_1·β1 + g·(1 − β1)`, `moment_2·β2 + g²·(1 − β2)`, then
    /// `p − (m·combined / (√v + ε·bc2))·lr`.
    #[inline(always)]
    fn element(p: &mut f32, g: f32, m: &mut f32, v: &mut f32, s: Scalars) {
        *m = *m * s.beta_1 + g * s.factor_1;
        *v = *v * s.beta_2 + (g * g) * s.factor_2;
        *p -= (*m * s.combined / (v.sqrt() + s.epsilon)) * s.lr;
    }

    multiversion! {
        fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: Scalars) {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                element(p, g, m, v, s);
            }
        }
    }

    multiversion! {
        /// With weight decay: burn's `p·penalty + g` first.
        fn update_decayed(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: Scalars) {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = *p * s.weight_decay + g;
                element(p, g, m, v, s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo_random;

    /// Adam from its definition, in f64.
    fn reference(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], h: AdamStep) {
        let (b1, b2) = (h.beta_1 as f64, h.beta_2 as f64);
        for i in 0..p.len() {
            let g = g[i] + h.weight_decay as f64 * p[i];
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            let m_hat = m[i] / (1.0 - b1.powi(h.time));
            let v_hat = v[i] / (1.0 - b2.powi(h.time));
            p[i] -= h.lr as f64 * m_hat / (v_hat.sqrt() + h.epsilon as f64);
        }
    }

    #[test]
    fn three_steps_follow_the_definition() {
        // Past one parallel chunk, not a multiple of it.
        let n = CHUNK + 77;
        for weight_decay in [0.0, 0.01] {
            let mut p = pseudo_random(n, 1, 1.0);
            let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
            let wide = |x: &[f32]| x.iter().map(|&x| x as f64).collect::<Vec<_>>();
            let (mut p64, mut m64, mut v64) = (wide(&p), vec![0f64; n], vec![0f64; n]);
            for time in 1..=3 {
                let g = pseudo_random(n, 10 + time as u32, 0.5);
                let h = AdamStep {
                    lr: 1e-2,
                    beta_1: 0.9,
                    beta_2: 0.999,
                    epsilon: 1e-5,
                    weight_decay,
                    time,
                };
                adam_step(&mut p, &g, &mut m, &mut v, h);
                reference(&mut p64, &wide(&g), &mut m64, &mut v64, h);
            }
            for i in 0..n {
                assert!(
                    (p[i] as f64 - p64[i]).abs() < 1e-5,
                    "[{i}] {} vs {}",
                    p[i],
                    p64[i]
                );
                assert!((m[i] as f64 - m64[i]).abs() < 1e-6);
                assert!((v[i] as f64 - v64[i]).abs() < 1e-7);
            }
        }
    }
}
