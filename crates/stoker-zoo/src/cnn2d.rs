//! CNN2D: the input window is treated as a one-channel image of [time, features].

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use stoker_artifact::Cnn2dSpec;

use crate::InputShape;
use crate::precision::Autocast;

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
            h = self.activation.forward(conv.forward(h));
        }
        let h = self.pool.forward(h).flatten::<2>(1, 3);
        let h = self
            .activation
            .forward(self.hidden.forward(self.dropout.forward(h)));
        ac.full(self.head.forward(h))
    }
}
