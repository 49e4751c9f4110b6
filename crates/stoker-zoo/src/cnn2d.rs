//! CNN2D: the input window is treated as a one-channel image of [time, features].

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use stoker_artifact::Cnn2dSpec;

use crate::InputShape;
use stoker_runtime::Autocast;
use stoker_runtime::fused::{self, Activation};

mod export;

#[derive(Module, Debug)]
pub struct Cnn2d {
    convs: Vec<Conv2d>,
    pool: MaxPool2d,
    dropout: Dropout,
    hidden: Linear,
    head: Linear,
    activation: Relu,
}

impl Cnn2d {
    pub fn new(spec: &Cnn2dSpec, shape: &InputShape, device: &Device) -> Self {
        let mut in_channels = 1;
        let convs = spec
            .channels
            .iter()
            .map(|&out| {
                let conv = Conv2dConfig::new([in_channels, out], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device);
                in_channels = out;
                conv
            })
            .collect();
        let flat = in_channels * (shape.window.input_len / 2) * (shape.features / 2);
        Self {
            convs,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dropout: DropoutConfig::new(spec.dropout).init(),
            hidden: LinearConfig::new(flat, spec.hidden).init(device),
            head: LinearConfig::new(spec.hidden, shape.outputs()).init(device),
            activation: Relu::new(),
        }
    }

    /// [B, L, F] → [B, outputs]; with mixed precision the weights are already cast and every
    /// op here runs in the low type.
    pub fn forward(&self, x: Tensor<3>, ac: &Autocast) -> Tensor<2> {
        let [batch, len, features] = x.dims();
        let mut h = ac.low(x).reshape([batch, 1, len, features]);
        for conv in &self.convs {
            h = match fused_conv_relu(conv, &h) {
                Some(y) => y,
                None => self.activation.forward(conv.forward(h)),
            };
        }
        let h = self.pooled(h).flatten::<2>(1, 3);
        let h = self.dropout.forward(h);
        let h = fused::linear(&self.hidden, h, Activation::Relu);
        ac.full(self.head.forward(h))
    }

    fn pooled(&self, h: Tensor<4>) -> Tensor<4> {
        let p = &self.pool;
        let fusable = p.kernel_size == [2, 2]
            && p.stride == [2, 2]
            && p.dilation == [1, 1]
            && !p.ceil_mode
            && matches!(
                p.padding,
                PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
            );
        match fusable.then(|| fused::max_pool2x2(&h)).flatten() {
            Some(y) => y,
            None => self.pool.forward(h),
        }
    }
}

/// relu(conv(x)) as one fused op where it applies (CPU; stride 1, symmetric zero padding).
fn fused_conv_relu(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    let PaddingConfig2d::Explicit(top, left, bottom, right) = conv.padding else {
        return None;
    };
    let plain = conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1;
    if !(plain && top == bottom && left == right) {
        return None;
    }
    let bias = conv.bias.as_ref()?.val();
    fused::conv2d(x, &conv.weight.val(), &bias, [top, left], true)
}
