//! A grouped dense layer with its activation fused: y_g = act(x_g·w_g + b_g) for each group g
//! (the bands of the ANC model), and its backward. The matmuls accumulate in f32 whatever the
//! element type; bias, activation and its derivative run in f32 in one vectorised pass.

use crate::activation::{multiversion, tanh};
use crate::gemm::{Mat, MatMut};
use crate::scalar::Scalar;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Tanh,
    Relu,
}

impl Activation {
    /// A plain code, for passing through tensor-library op signatures.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Tanh,
            2 => Self::Relu,
            _ => Self::Identity,
        }
    }
}

/// Sizes of a grouped dense layer: `groups` × ([rows, inputs] · [inputs, outputs]).
#[derive(Debug, Clone, Copy)]
pub struct DenseShape {
    pub groups: usize,
    pub rows: usize,
    pub inputs: usize,
    pub outputs: usize,
}

impl DenseShape {
    fn x(&self, g: usize) -> std::ops::Range<usize> {
        let len = self.rows * self.inputs;
        g * len..(g + 1) * len
    }
    fn w(&self, g: usize) -> std::ops::Range<usize> {
        let len = self.inputs * self.outputs;
        g * len..(g + 1) * len
    }
    fn y(&self, g: usize) -> std::ops::Range<usize> {
        let len = self.rows * self.outputs;
        g * len..(g + 1) * len
    }
    fn b(&self, g: usize) -> std::ops::Range<usize> {
        g * self.outputs..(g + 1) * self.outputs
    }
}

multiversion! {
    fn add_bias_tanh(z: &mut [f32], bias: &[f32]) {
        for row in z.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v = tanh(*v + b);
            }
        }
    }
}

multiversion! {
    fn add_bias_relu(z: &mut [f32], bias: &[f32]) {
        for row in z.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v = (*v + b).max(0.0);
            }
        }
    }
}

multiversion! {
    /// dz = dy where the ReLU passed (y > 0), else 0.
    fn relu_grad(dz: &mut [f32], y: &[f32]) {
        for (d, &y) in dz.iter_mut().zip(y) {
            *d = if y > 0.0 { *d } else { 0.0 };
        }
    }
}

multiversion! {
    fn add_bias(z: &mut [f32], bias: &[f32]) {
        for row in z.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

multiversion! {
    /// dz = dy ⊙ (1 − y²), the tanh derivative through its output.
    fn tanh_grad(dz: &mut [f32], y: &[f32]) {
        for (d, &y) in dz.iter_mut().zip(y) {
            *d *= y.mul_add(-y, 1.0);
        }
    }
}

/// y = act(x·w + b) per group. x [G, N, K], w [G, K, M], b [G, M] → y [G, N, M].
pub fn dense_forward<T: Scalar>(
    x: &[T],
    w: &[T],
    b: &[T],
    s: DenseShape,
    act: Activation,
) -> Vec<T> {
    let mut z = vec![0f32; s.groups * s.rows * s.outputs];
    for g in 0..s.groups {
        let zg = &mut z[s.y(g)];
        T::matmul(
            MatMut::row_major(zg, s.rows, s.outputs),
            Mat::row_major(&x[s.x(g)], s.rows, s.inputs),
            Mat::row_major(&w[s.w(g)], s.inputs, s.outputs),
            false,
        );
        let bias = T::widen(&b[s.b(g)]);
        match act {
            Activation::Tanh => add_bias_tanh(zg, &bias),
            Activation::Relu => add_bias_relu(zg, &bias),
            Activation::Identity => add_bias(zg, &bias),
        }
    }
    T::narrow(z)
}

/// Gradients of a grouped dense layer.
pub struct DenseGrads<T> {
    /// None unless asked for (the ANC model's inputs are data, not parameters).
    pub dx: Option<Vec<T>>,
    pub dw: Vec<T>,
    pub db: Vec<T>,
}

/// The backward of `dense_forward`, from its output `y` and the output gradient `dy`.
pub fn dense_backward<T: Scalar>(
    x: &[T],
    w: &[T],
    y: &[T],
    dy: &[T],
    s: DenseShape,
    act: Activation,
    need_dx: bool,
) -> DenseGrads<T> {
    let mut dz = T::widen(dy);
    match act {
        Activation::Tanh => tanh_grad(&mut dz, &T::widen(y)),
        Activation::Relu => relu_grad(&mut dz, &T::widen(y)),
        Activation::Identity => {}
    }
    let mut db = vec![0f32; s.groups * s.outputs];
    for g in 0..s.groups {
        let sums = &mut db[s.b(g)];
        for row in dz[s.y(g)].chunks_exact(s.outputs) {
            for (acc, &d) in sums.iter_mut().zip(row) {
                *acc += d;
            }
        }
    }
    let dz = T::narrow(dz);
    let mut dw = vec![0f32; s.groups * s.inputs * s.outputs];
    let mut dx = need_dx.then(|| vec![0f32; s.groups * s.rows * s.inputs]);
    for g in 0..s.groups {
        let dzg = Mat::row_major(&dz[s.y(g)], s.rows, s.outputs);
        T::matmul(
            MatMut::row_major(&mut dw[s.w(g)], s.inputs, s.outputs),
            Mat::row_major(&x[s.x(g)], s.rows, s.inputs).t(),
            dzg,
            false,
        );
        if let Some(dx) = dx.as_mut() {
            T::matmul(
                MatMut::row_major(&mut dx[s.x(g)], s.rows, s.inputs),
                dzg,
                Mat::row_major(&w[s.w(g)], s.inputs, s.outputs).t(),
                false,
            );
        }
    }
    DenseGrads {
        dx: dx.map(T::narrow),
        dw: T::narrow(dw),
        db: T::narrow(db),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo_random;
    use half::bf16;

    const SHAPE: DenseShape = DenseShape {
        groups: 3,
        rows: 7,
        inputs: 5,
        outputs: 4,
    };

    /// Loss L = Σ r ⊙ act(x·w + b), in f64, for finite differences.
    fn loss(x: &[f32], w: &[f32], b: &[f32], r: &[f32], act: Activation) -> f64 {
        let s = SHAPE;
        let mut total = 0.0;
        for g in 0..s.groups {
            for n in 0..s.rows {
                for m in 0..s.outputs {
                    let mut z = b[g * s.outputs + m] as f64;
                    for k in 0..s.inputs {
                        z += x[s.x(g).start + n * s.inputs + k] as f64
                            * w[s.w(g).start + k * s.outputs + m] as f64;
                    }
                    let y = match act {
                        Activation::Tanh => z.tanh(),
                        Activation::Relu => z.max(0.0),
                        Activation::Identity => z,
                    };
                    total += r[s.y(g).start + n * s.outputs + m] as f64 * y;
                }
            }
        }
        total
    }

    #[test]
    fn forward_and_backward_match_finite_differences() {
        let s = SHAPE;
        let x = pseudo_random(s.groups * s.rows * s.inputs, 1, 0.5);
        let w = pseudo_random(s.groups * s.inputs * s.outputs, 2, 0.5);
        let b = pseudo_random(s.groups * s.outputs, 3, 0.5);
        let r = pseudo_random(s.groups * s.rows * s.outputs, 4, 0.5);
        // With these fixed inputs no ReLU pre-activation lies within the FD step of its kink.
        for act in [Activation::Tanh, Activation::Relu, Activation::Identity] {
            let y = dense_forward(&x, &w, &b, s, act);
            let direct: f64 = y.iter().zip(&r).map(|(&y, &r)| y as f64 * r as f64).sum();
            assert!((direct - loss(&x, &w, &b, &r, act)).abs() < 1e-5);
            let grads = dense_backward(&x, &w, &y, &r, s, act, true);
            let check = |which: usize, got: &[f32]| {
                for i in 0..got.len() {
                    let eps = 1e-3;
                    let mut args = [x.clone(), w.clone(), b.clone()];
                    args[which][i] += eps;
                    let up = loss(&args[0], &args[1], &args[2], &r, act);
                    args[which][i] -= 2.0 * eps;
                    let down = loss(&args[0], &args[1], &args[2], &r, act);
                    let want = (up - down) / (2.0 * eps as f64);
                    assert!(
                        (got[i] as f64 - want).abs() < 1e-3,
                        "{act:?} arg {which} [{i}]: {} vs {want}",
                        got[i]
                    );
                }
            };
            check(0, grads.dx.as_deref().unwrap());
            check(1, &grads.dw);
            check(2, &grads.db);
        }
    }

    #[test]
    fn bf16_agrees_with_f32_to_bf16_precision() {
        let s = SHAPE;
        let x = pseudo_random(s.groups * s.rows * s.inputs, 5, 0.5);
        let w = pseudo_random(s.groups * s.inputs * s.outputs, 6, 0.5);
        let b = pseudo_random(s.groups * s.outputs, 7, 0.5);
        let low = |v: &[f32]| v.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>();
        let y32 = dense_forward(&x, &w, &b, s, Activation::Tanh);
        let y16 = dense_forward(&low(&x), &low(&w), &low(&b), s, Activation::Tanh);
        for (a, b) in y32.iter().zip(&y16) {
            assert!((a - b.to_f32()).abs() < 2e-2, "{a} vs {b}");
        }
        let g32 = dense_backward(&x, &w, &y32, &y32, s, Activation::Tanh, false);
        let g16 = dense_backward(&low(&x), &low(&w), &y16, &y16, s, Activation::Tanh, false);
        assert!(g16.dx.is_none());
        for (a, b) in g32.dw.iter().zip(&g16.dw) {
            assert!((a - b.to_f32()).abs() < 3e-2, "{a} vs {b}");
        }
    }
}
