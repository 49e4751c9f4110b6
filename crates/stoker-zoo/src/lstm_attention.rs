//! LSTM with additive temporal attention: a stack of LSTMs reads the window, attention weights
//! each step's hidden state (score_t = vᵀ·tanh(W·h_t), softmax over time), and the context
//! joined with the last hidden state feeds a linear head. Optional instance normalisation, a
//! linear skip path, a learned bias per lag on the scores, and a recurrence over each
//! variable's segments instead of the steps of all variables (see `LstmAttentionSpec`).

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use stoker_artifact::LstmAttentionSpec;

use crate::InputShape;
use crate::recurrent::StepLstm;
use stoker_runtime::Autocast;
use stoker_runtime::fused::{self, Activation};

mod export;

#[derive(Module, Debug)]
pub struct LstmAttention {
    layers: Vec<StepLstm>,
    score_w: Linear,
    score_v: Linear,
    /// [1, recurrent_len]: added to every window's scores (`position_bias`).
    position: Option<Param<Tensor<2>>>,
    dropout: Dropout,
    head: Linear,
    skip: Option<Linear>,
    /// Segment embedding [segment → hidden] when the recurrence runs over channel-independent
    /// segments (`segment`).
    embed: Option<Linear>,
    instance_norm: bool,
    /// Steps the recurrence reads: whole segments when segmented.
    recurrent_len: usize,
    /// Steps per segment; 1 without segments (the recurrence reads steps of all features).
    segment: usize,
    output_len: usize,
    targets: Vec<usize>,
}

/// Prediction [B, output_len × targets] and attention weights [B, recurrent_len].
pub struct Explained {
    pub output: Tensor<2>,
    pub attention: Tensor<2>,
}

impl LstmAttention {
    pub fn new(spec: &LstmAttentionSpec, shape: &InputShape, device: &Device) -> Self {
        let input_len = shape.window.input_len;
        let recurrent_len = match spec.recurrent_len {
            0 => input_len,
            r => r.min(input_len),
        };
        // A segment longer than the window is the window; the recurrence reads whole segments.
        let segment = spec.segment.clamp(1, recurrent_len);
        let recurrent_len = recurrent_len / segment * segment;
        let segmented = spec.segment > 0;
        let first_input = if segmented {
            spec.hidden
        } else {
            shape.features
        };
        let layers = (0..spec.layers)
            .map(|i| {
                let d_in = if i == 0 { first_input } else { spec.hidden };
                StepLstm::new(d_in, spec.hidden, device)
            })
            .collect();
        let head_outputs = if segmented {
            shape.window.output_len
        } else {
            shape.outputs()
        };
        Self {
            layers,
            score_w: LinearConfig::new(spec.hidden, spec.attention).init(device),
            score_v: LinearConfig::new(spec.attention, 1)
                .with_bias(false)
                .init(device),
            position: spec
                .position_bias
                .then(|| Param::from_tensor(Tensor::zeros([1, recurrent_len / segment], device))),
            dropout: DropoutConfig::new(spec.dropout).init(),
            head: LinearConfig::new(2 * spec.hidden, head_outputs).init(device),
            skip: spec
                .linear_skip
                .then(|| LinearConfig::new(input_len, shape.window.output_len).init(device)),
            embed: segmented.then(|| LinearConfig::new(segment, spec.hidden).init(device)),
            instance_norm: spec.instance_norm,
            recurrent_len,
            segment,
            output_len: shape.window.output_len,
            targets: shape.targets.clone(),
        }
    }

    pub fn forward(&self, x: Tensor<3>, ac: &Autocast) -> Tensor<2> {
        self.run(x, ac).0
    }

    /// Sets the linear skip to `fit` and the recurrent head to zero (see `ridge_init`).
    pub fn with_linear_start(mut self, fit: &crate::ridge::LinearFit) -> Self {
        let Some(skip) = self.skip.take() else {
            return self;
        };
        let device = skip.weight.device();
        let (s, l) = (self.output_len, fit.weight.len() / self.output_len);
        // burn's Linear holds its weight as [inputs, outputs].
        let mut weight = vec![0f32; l * s];
        for k in 0..s {
            for i in 0..l {
                weight[i * s + k] = fit.weight[k * l + i];
            }
        }
        let data = |v: Vec<f32>, shape: Vec<usize>| burn::tensor::TensorData::new(v, shape);
        let mut skip = skip;
        skip.weight = Param::from_tensor(Tensor::from_data(data(weight, vec![l, s]), &device));
        skip.bias = Some(Param::from_tensor(Tensor::from_data(
            data(fit.bias.clone(), vec![s]),
            &device,
        )));
        self.skip = Some(skip);
        let dims = self.head.weight.dims();
        self.head.weight = Param::from_tensor(Tensor::zeros(dims, &device));
        if let Some(bias) = &self.head.bias {
            let dims = bias.dims();
            self.head.bias = Some(Param::from_tensor(Tensor::zeros(dims, &device)));
        }
        self
    }

    /// The recurrent stack over [B, T, F] → time-major [T, B, H], each layer one fused op
    /// (CPU).
    fn recurrent_fused(&self, x: Tensor<3>, ac: &Autocast) -> Option<Tensor<3>> {
        let mut seq = x.swap_dims(0, 1);
        for layer in &self.layers {
            seq = layer.forward_fused(seq, ac)?;
        }
        Some(seq)
    }

    /// The recurrent stack with one tensor per step (see `recurrent`), time-major [T, B, H]:
    /// every other device.
    fn recurrent_steps(&self, x: Tensor<3>, ac: &Autocast) -> Tensor<3> {
        let mut seq: Vec<Tensor<2>> = x.iter_dim(1).map(|step| step.squeeze_dim(1)).collect();
        for layer in &self.layers {
            seq = layer.forward(seq, ac);
        }
        Tensor::stack(seq, 0)
    }

    /// [B, L, F] → prediction and attention weights per input step [B, recurrent_len].
    pub fn explain(&self, x: Tensor<3>, ac: &Autocast) -> Explained {
        let batch = x.dims()[0];
        let (output, attention) = self.run(x, ac);
        let attention = match self.embed {
            Some(_) => self.per_step(attention, batch, self.targets.len()),
            None => attention,
        };
        Explained { output, attention }
    }

    /// [B, L, F] → prediction and the attention weights over what the recurrence read: steps
    /// [B, recurrent_len], or segments per variable [B·V, segments]. Normalisation and the
    /// softmax run in f32; the LSTMs, the attention projections and the linear maps in the
    /// autocast type.
    fn run(&self, x: Tensor<3>, ac: &Autocast) -> (Tensor<2>, Tensor<2>) {
        let [batch, len, features] = x.dims();
        let targets = self.target_index(&x.device());
        let (x, scale) = self.normalise(x);
        let x = ac.low(x);
        let window = len - self.recurrent_len..len;
        let v = self.targets.len();
        let (mut y, attention) = match &self.embed {
            None => {
                let recurrent = x.clone().slice([0..batch, window, 0..features]);
                let (y, attention) = self.attend(recurrent, ac);
                (y.reshape([batch, self.output_len, v]), attention)
            }
            Some(embed) => {
                // Each target variable on its own: [B, T, V] → [B·V, segments, segment].
                let segments = self.recurrent_len / self.segment;
                let series = x
                    .clone()
                    .select(2, targets.clone())
                    .slice([0..batch, window, 0..v])
                    .swap_dims(1, 2)
                    .reshape([batch * v * segments, self.segment]);
                let hidden = embed.weight.dims()[1];
                let embedded = fused::linear(embed, series, Activation::Relu).reshape([
                    batch * v,
                    segments,
                    hidden,
                ]);
                let (y, attention) = self.attend(embedded, ac);
                let y = y.reshape([batch, v, self.output_len]).swap_dims(1, 2);
                (y, attention)
            }
        };
        if let Some(skip) = self.skip_forward(x, &targets) {
            y = y + skip;
        }
        (self.denormalise(ac.full(y), scale, targets), attention)
    }

    /// The recurrence and attention over [N, T, D] → the head's [N, outputs] and the attention
    /// weights [N, T].
    fn attend(&self, recurrent: Tensor<3>, ac: &Autocast) -> (Tensor<2>, Tensor<2>) {
        let batch = recurrent.dims()[0];
        // Time-major, as the recurrence produces it: the scores read its rows in place, with
        // no copy of [B, T, H] out of a transposed view.
        let h = match self.recurrent_fused(recurrent.clone(), ac) {
            Some(h) => h,
            None => self.recurrent_steps(recurrent, ac),
        };
        let h = ac.low(h);
        let [steps, _, hidden] = h.dims();
        let last = h
            .clone()
            .slice([steps - 1..steps, 0..batch, 0..hidden])
            .reshape([batch, hidden]);
        // v·tanh(W·h + b) as one op: the [T·B, attention] projection never leaves the kernel.
        let scores = fused::linear_head(
            &self.score_w,
            &self.score_v,
            h.clone().reshape([steps * batch, hidden]),
            Activation::Tanh,
        )
        .reshape([steps, batch])
        .swap_dims(0, 1);
        // In f32, the bias too: under bf16-mixed the parameters arrive cast to bf16.
        let scores = match &self.position {
            Some(bias) => ac.full(scores) + ac.full(bias.val()),
            None => ac.full(scores),
        };
        let attention = softmax(scores, 1);
        // Summed in f32 from h as the recurrence laid it out (one fused op on the CPU), not an
        // elementwise product and a sum over [B, T, H] in bf16: burn's bf16 elementwise ops
        // are slow here.
        let context = fused::attend(ac.low(attention.clone()), h);
        let joined = self.dropout.forward(Tensor::cat(vec![context, last], 1));
        (self.head.forward(joined), attention)
    }

    /// Segment weights [B·V, segments] → weights per input step [B, recurrent_len]: the
    /// variables' mean, each segment's weight shared evenly by its steps (rows still sum to 1).
    fn per_step(&self, attention: Tensor<2>, batch: usize, v: usize) -> Tensor<2> {
        let segments = self.recurrent_len / self.segment;
        attention
            .reshape([batch, v, segments])
            .mean_dim(1)
            .reshape([batch, segments, 1])
            .repeat_dim(2, self.segment)
            .reshape([batch, self.recurrent_len])
            / self.segment as f32
    }

    /// The linear skip alone, the recurrent and attention parts off ([B, L, F] → [B,
    /// output_len × targets], f32): what the network forecasts from its linear part only, to
    /// measure what the rest adds. `None` without a skip.
    pub fn linear_only(&self, x: Tensor<3>) -> Option<Tensor<2>> {
        let targets = self.target_index(&x.device());
        let (x, scale) = self.normalise(x);
        let y = self.skip_forward(x, &targets)?;
        Some(self.denormalise(y, scale, targets))
    }

    /// Moves the linear skip's gradients out of `grads` into their own set (empty without a
    /// skip), for the optimizer to step them at their own learning rate.
    pub fn take_skip_grads(&self, grads: &mut GradientsParams) -> GradientsParams {
        let mut taken = GradientsParams::new();
        if let Some(skip) = &self.skip {
            crate::move_grad(&skip.weight, grads, &mut taken);
            if let Some(bias) = &skip.bias {
                crate::move_grad(bias, grads, &mut taken);
            }
        }
        taken
    }

    fn target_index(&self, device: &Device) -> Tensor<1, Int> {
        Tensor::from_data(
            burn::tensor::TensorData::new(
                self.targets.iter().map(|&t| t as i64).collect(),
                [self.targets.len()],
            ),
            device,
        )
    }

    /// Instance normalisation when configured: each window by its own mean and std per feature.
    fn normalise(&self, x: Tensor<3>) -> (Tensor<3>, Option<(Tensor<3>, Tensor<3>)>) {
        if !self.instance_norm {
            return (x, None);
        }
        let mean = x.clone().mean_dim(1);
        let std = (x.clone().var(1) + 1e-5).sqrt();
        ((x - mean.clone()) / std.clone(), Some((mean, std)))
    }

    /// [B, output_len, targets] back to the data's scale, flattened to [B, output_len × targets].
    fn denormalise(
        &self,
        y: Tensor<3>,
        scale: Option<(Tensor<3>, Tensor<3>)>,
        targets: Tensor<1, Int>,
    ) -> Tensor<2> {
        let [batch, _, v] = y.dims();
        let y = match scale {
            Some((mean, std)) => y * std.select(2, targets.clone()) + mean.select(2, targets),
            None => y,
        };
        y.reshape([batch, self.output_len * v])
    }

    /// The skip's [B, output_len, targets]: channel-independent, the same map from the input
    /// window to the outputs per target.
    fn skip_forward(&self, x: Tensor<3>, targets: &Tensor<1, Int>) -> Option<Tensor<3>> {
        let skip = self.skip.as_ref()?;
        let series = x.select(2, targets.clone()).swap_dims(1, 2);
        Some(skip.forward(series).swap_dims(1, 2))
    }
}
