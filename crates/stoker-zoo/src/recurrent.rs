//! An LSTM layer that keeps the sequence as one tensor per step. burn's `Lstm` slices every
//! step out of a [B, T, F] input and writes every output back with `slice_assign`; under
//! autodiff each of those builds a full [B, T, ·] gradient, so a layer costs O(T²) memory
//! traffic. Here a layer reads and returns `Vec<[B, ·]>`: the steps of the first layer come
//! from the (constant) input, later layers take the previous layer's steps as they are, and
//! the one `stack` for attention splits its gradient in a single pass.
//! Gates are one matmul for the input and one for the hidden state per step (i, f, g, o
//! stacked as in PyTorch), with PyTorch's initialisation U(−1/√H, 1/√H).

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use stoker_runtime::Autocast;

mod export;

#[derive(Module, Debug)]
pub struct StepLstm {
    input: Linear,
    hidden: Linear,
    hidden_size: usize,
}

impl StepLstm {
    pub fn new(d_input: usize, hidden_size: usize, device: &Device) -> Self {
        let k = 1.0 / (hidden_size as f64).sqrt();
        let init = Initializer::Uniform { min: -k, max: k };
        let linear = |d_in, bias| {
            LinearConfig::new(d_in, 4 * hidden_size)
                .with_bias(bias)
                .with_initializer(init.clone())
                .init(device)
        };
        Self {
            input: linear(d_input, true),
            hidden: linear(hidden_size, false),
            hidden_size,
        }
    }

    /// A whole sequence x [T, B, d_input] → hidden states [T, B, H] as one fused op with its
    /// own backward, where the device and dtype have it (`crate::fused`); None elsewhere.
    pub fn forward_fused(&self, x: Tensor<3>, ac: &Autocast) -> Option<Tensor<3>> {
        let bias = self.input.bias.as_ref()?.val();
        stoker_runtime::fused::lstm_sequence(
            &ac.low(x),
            &self.input.weight.val(),
            &bias,
            &self.hidden.weight.val(),
        )
    }

    /// Per-step inputs [B, d_input] → per-step hidden states [B, H], from a zero state.
    /// Matmuls run in the autocast type, the gate and cell arithmetic in f32.
    pub fn forward(&self, steps: Vec<Tensor<2>>, ac: &Autocast) -> Vec<Tensor<2>> {
        let Some(first) = steps.first() else {
            return steps;
        };
        let [batch, _] = first.dims();
        let device = first.device();
        let h_size = self.hidden_size;
        let mut cell = Tensor::<2>::zeros([batch, h_size], &device);
        let mut h: Option<Tensor<2>> = None;
        let mut out = Vec::with_capacity(steps.len());
        for x in steps {
            let mut gates = self.input.forward(ac.low(x));
            if let Some(h) = h {
                gates = gates + self.hidden.forward(ac.low(h));
            }
            let [i, f, g, o] = ac.full(gates).chunk(4, 1).try_into().expect("four gates");
            cell = sigmoid(f) * cell + sigmoid(i) * g.tanh();
            let next = sigmoid(o) * cell.clone().tanh();
            out.push(next.clone());
            h = Some(next);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::TensorData;

    /// One step of the textbook LSTM equations, by hand, against the layer.
    #[test]
    fn matches_the_lstm_equations() {
        let device = Device::flex();
        let (b, d, h) = (2, 3, 2);
        let mut layer = StepLstm::new(d, h, &device);
        let wx: Vec<f32> = (0..d * 4 * h)
            .map(|k| ((k * 7 % 11) as f32 - 5.0) / 10.0)
            .collect();
        let wh: Vec<f32> = (0..h * 4 * h)
            .map(|k| ((k * 5 % 13) as f32 - 6.0) / 10.0)
            .collect();
        let bias: Vec<f32> = (0..4 * h).map(|k| (k as f32 - 3.0) / 10.0).collect();
        let matrix = |v: &[f32], rows: usize| {
            Param::from_tensor(Tensor::from_data(
                TensorData::new(v.to_vec(), [rows, 4 * h]),
                &device,
            ))
        };
        layer.input.weight = matrix(&wx, d);
        layer.hidden.weight = matrix(&wh, h);
        layer.input.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias.clone(), [4 * h]),
            &device,
        )));
        let xs: Vec<Vec<f32>> = (0..3)
            .map(|s| (0..b * d).map(|k| ((k + s) as f32 * 0.37).sin()).collect())
            .collect();
        let steps = xs
            .iter()
            .map(|x| Tensor::from_data(TensorData::new(x.clone(), [b, d]), &device))
            .collect();
        let got: Vec<Vec<f32>> = layer
            .forward(steps, &Autocast::F32)
            .into_iter()
            .map(|t| t.into_data().try_to_vec::<f32>().unwrap())
            .collect();
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        for n in 0..b {
            let (mut hs, mut cs) = (vec![0f32; h], vec![0f32; h]);
            for (s, x) in xs.iter().enumerate() {
                let gate = |j: usize| {
                    bias[j]
                        + (0..d)
                            .map(|k| x[n * d + k] * wx[k * 4 * h + j])
                            .sum::<f32>()
                        + (0..h).map(|k| hs[k] * wh[k * 4 * h + j]).sum::<f32>()
                };
                let pre: Vec<f32> = (0..4 * h).map(gate).collect();
                for u in 0..h {
                    let (i, f, g, o) = (pre[u], pre[h + u], pre[2 * h + u], pre[3 * h + u]);
                    cs[u] = sig(f) * cs[u] + sig(i) * g.tanh();
                    hs[u] = sig(o) * cs[u].tanh();
                    let ours = got[s][n * h + u];
                    assert!(
                        (ours - hs[u]).abs() < 1e-5,
                        "step {s} row {n} unit {u}: {ours} vs {}",
                        hs[u]
                    );
                }
            }
        }
    }

    /// The fused sequence op (CPU) and the per-step composition agree in value and gradients.
    #[test]
    fn fused_sequence_matches_step_composition() {
        use burn::tensor::{Distribution, Tolerance};
        let device = Device::flex().autodiff();
        let (t, b, d, h) = (6, 3, 4, 5);
        let layer = StepLstm::new(d, h, &device);
        let x = Tensor::<3>::random([t, b, d], Distribution::Default, &device).require_grad();
        let r = Tensor::<3>::random([t, b, h], Distribution::Default, &device);
        let fused = layer
            .forward_fused(x.clone(), &Autocast::F32)
            .expect("fused op on flex in f32");
        let steps = x.clone().iter_dim(0).map(|s| s.squeeze_dim(0)).collect();
        let composed = Tensor::stack(layer.forward(steps, &Autocast::F32), 0);
        fused
            .to_data()
            .assert_approx_eq::<f32>(&composed.to_data(), Tolerance::absolute(1e-5));
        let gf = (fused * r.clone()).sum().backward();
        let gc = (composed * r).sum().backward();
        let close = |a: Tensor<2>, b: Tensor<2>| {
            a.to_data()
                .assert_approx_eq::<f32>(&b.to_data(), Tolerance::absolute(1e-4))
        };
        x.grad(&gf)
            .unwrap()
            .to_data()
            .assert_approx_eq::<f32>(&x.grad(&gc).unwrap().to_data(), Tolerance::absolute(1e-4));
        close(
            layer.input.weight.val().grad(&gf).unwrap(),
            layer.input.weight.val().grad(&gc).unwrap(),
        );
        close(
            layer.hidden.weight.val().grad(&gf).unwrap(),
            layer.hidden.weight.val().grad(&gc).unwrap(),
        );
        let bias = layer.input.bias.as_ref().unwrap().val();
        bias.grad(&gf).unwrap().to_data().assert_approx_eq::<f32>(
            &bias.grad(&gc).unwrap().to_data(),
            Tolerance::absolute(1e-4),
        );
    }
}
