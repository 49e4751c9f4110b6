//! Model specs: the data that names an architecture and its sizes. The zoo builds modules from
//! them; checkpoints record them so predict rebuilds exactly what train trained.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelSpec {
    /// A 2-D CNN over the [window, features] grid. The defaults are the reference architecture:
    /// Conv(1→32, 3×3) ReLU, Conv(32→64, 3×3) ReLU, MaxPool 2×2, Linear(→128) ReLU, Linear(→1).
    Cnn2d(Cnn2dSpec),
    /// Stacked LSTM over the window, additive temporal attention
    /// (score_t = vᵀ·tanh(W·h_t), softmax over time), context ⊕ last hidden state → linear head
    /// to output_len × targets. Defaults are the reference shape: hidden 128, 2 layers.
    LstmAttention(LstmAttentionSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LstmAttentionSpec {
    pub hidden: usize,
    pub layers: usize,
    /// Width of the attention projection W.
    pub attention: usize,
    /// Per-window, per-variable standardisation of the inputs, undone on the outputs
    /// (instance normalisation): removes level shifts between train and test periods.
    pub instance_norm: bool,
    /// A channel-independent linear map from the input window to the output steps, added to the
    /// network's output: the recurrent path then learns what a linear forecast misses.
    pub linear_skip: bool,
    /// The recurrent path reads only the last `recurrent_len` steps (0 = the whole window), so
    /// a long window can feed the linear path without slowing the LSTM.
    pub recurrent_len: usize,
    pub dropout: f64,
    /// Start the linear skip at its closed-form ridge fit on the train split and the recurrent
    /// head at zero: training begins from the best linear forecast and learns the residual.
    pub ridge_init: bool,
}

impl Default for LstmAttentionSpec {
    fn default() -> Self {
        Self {
            hidden: 128,
            layers: 2,
            attention: 64,
            instance_norm: false,
            linear_skip: false,
            recurrent_len: 0,
            dropout: 0.0,
            ridge_init: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cnn2dSpec {
    /// Output channels of each 3×3 convolution, in order.
    pub channels: Vec<usize>,
    /// Width of the hidden dense layer.
    pub hidden: usize,
    /// Dropout before the dense layers (0 = off).
    pub dropout: f64,
    /// Predict the change from the last observed target value instead of the value itself:
    /// the network starts from persistence and learns the correction.
    pub residual: bool,
}

impl Default for Cnn2dSpec {
    fn default() -> Self {
        Self {
            channels: vec![32, 64],
            hidden: 128,
            dropout: 0.0,
            residual: false,
        }
    }
}

impl ModelSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            ModelSpec::Cnn2d(_) => "cnn2d",
            ModelSpec::LstmAttention(_) => "lstm-attention",
        }
    }
}
