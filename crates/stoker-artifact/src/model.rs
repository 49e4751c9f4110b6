//! Model specs: the data that names an architecture and its sizes. The zoo builds modules from
//! them; checkpoints record them so predict rebuilds exactly what train trained.

use serde::{Deserialize, Serialize};

use crate::family::TaskFamily;

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
    /// Active noise control: a fixed causal FIR filterbank splits the reference x into bands;
    /// one MLP per band maps the band's last `taps` samples to its share of the control sample
    /// y(n); the bands' outputs sum to y(n). Strictly causal.
    MultibandAnc(MultibandAncSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultibandAncSpec {
    /// Edges between consecutive bands in Hz: n edges make n + 1 bands.
    pub band_edges: Vec<f64>,
    /// Length of each band-split FIR (odd: linear phase, delay (n − 1) / 2 samples).
    pub filter_taps: usize,
    /// Band samples each network reads (x(n − taps + 1) … x(n) of its band).
    pub taps: usize,
    pub hidden: usize,
    /// Hidden layers per band network.
    pub layers: usize,
    /// Taps of a linear FIR on the full-band reference beside the band networks (0 = none):
    /// the networks then learn what linear control misses.
    pub linear_taps: usize,
    /// Start the linear FIR at the offline least-squares controller (fitted on the train
    /// split) and the band networks' output layers at zero.
    pub least_squares_init: bool,
}

impl Default for MultibandAncSpec {
    fn default() -> Self {
        Self {
            band_edges: vec![500.0, 2000.0],
            filter_taps: 129,
            taps: 256,
            hidden: 384,
            layers: 1,
            linear_taps: 0,
            least_squares_init: false,
        }
    }
}

impl MultibandAncSpec {
    /// Reference samples y(n) depends on: x(n − receptive_field + 1) … x(n).
    pub fn receptive_field(&self) -> usize {
        self.band_receptive_field().max(self.linear_taps)
    }

    /// Reference samples the band networks read (through the filterbank).
    pub fn band_receptive_field(&self) -> usize {
        self.taps + self.filter_taps - 1
    }

    pub fn bands(&self) -> usize {
        self.band_edges.len() + 1
    }
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
            ModelSpec::MultibandAnc(_) => "multiband-anc",
        }
    }

    /// Whether this architecture forecasts or controls.
    pub fn family(&self) -> TaskFamily {
        match self {
            ModelSpec::Cnn2d(_) | ModelSpec::LstmAttention(_) => TaskFamily::Forecast,
            ModelSpec::MultibandAnc(_) => TaskFamily::Control,
        }
    }
}
