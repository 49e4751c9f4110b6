//! Model specs: the data that names an architecture and its sizes. The zoo builds modules from
//! them; checkpoints record them so predict rebuilds exactly what train trained.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelSpec {
    /// A 2-D CNN over the [window, features] grid. The defaults are the reference architecture:
    /// Conv(1→32, 3×3) ReLU, Conv(32→64, 3×3) ReLU, MaxPool 2×2, Linear(→128) ReLU, Linear(→1).
    Cnn2d(Cnn2dSpec),
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
        }
    }
}
