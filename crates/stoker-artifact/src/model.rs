//! Model specs: the data that names an architecture and its sizes. The zoo builds modules from
//! them; checkpoints record them so predict rebuilds exactly what train trained.

use serde::{Deserialize, Serialize};

use crate::diff::{Difference, differences};
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
    /// A learned bias per attended step (per lag) added to the attention scores: attention can
    /// then pick a lag whatever the content there, and its profile says which lags the
    /// forecast reads (without it the scores see content only, and learn position poorly).
    pub position_bias: bool,
    /// Channel-independent segments (0 = off): each target variable's last `recurrent_len`
    /// steps are cut into segments of this many steps, each segment embedded as one input
    /// (linear map and ReLU), and the LSTM and attention run over segments per variable, its
    /// head forecasting that variable alone. The recurrence then takes `segment` times fewer
    /// steps and cannot overfit to cross-variable coincidences.
    pub segment: usize,
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
            position_bias: false,
            segment: 0,
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

/// The largest width, length or tap count a spec may hold: far beyond any stoker model, and
/// small enough that building one from a damaged file cannot ask for terabytes (the filter bank
/// and linear taps of an ANC model are allocated as they are built).
pub const MAX_SIZE: usize = 1 << 20;

/// Most FIR taps per band of an ANC filter bank (4 s at 16 kHz) and most band edges: the bank is
/// designed in full when the model is built.
pub const MAX_FILTER_TAPS: usize = (1 << 16) + 1;
pub const MAX_BAND_EDGES: usize = 64;

impl ModelSpec {
    /// What training starts from when the model is warm-started at its linear part alone (the
    /// learned parts' heads at zero), so that the starting validation loss is the linear part's:
    /// `None` for a model that starts from random weights.
    pub fn linear_start(&self) -> Option<&'static str> {
        match self {
            ModelSpec::LstmAttention(m) if m.ridge_init && m.linear_skip => {
                Some("the linear skip's ridge fit")
            }
            ModelSpec::MultibandAnc(m) if m.least_squares_init && m.linear_taps > 0 => {
                Some("the least-squares linear FIR")
            }
            _ => None,
        }
    }

    /// Checks the values a model can be built from, whether they come from a config or from a
    /// checkpoint's metadata; the error names the key (`model.hidden`).
    pub fn validate(&self) -> Result<(), String> {
        let (sizes, dropout): (Vec<(&str, usize, usize)>, f64) = match self {
            ModelSpec::Cnn2d(m) => {
                let mut sizes = vec![("hidden", m.hidden, 1), ("channels", m.channels.len(), 0)];
                sizes.extend(m.channels.iter().map(|&c| ("channels", c, 1)));
                (sizes, m.dropout)
            }
            ModelSpec::LstmAttention(m) => (
                vec![
                    ("hidden", m.hidden, 1),
                    ("layers", m.layers, 1),
                    ("attention", m.attention, 1),
                    ("recurrent_len", m.recurrent_len, 0),
                    ("segment", m.segment, 0),
                ],
                m.dropout,
            ),
            ModelSpec::MultibandAnc(m) => {
                if m.filter_taps < 3
                    || m.filter_taps.is_multiple_of(2)
                    || m.filter_taps > MAX_FILTER_TAPS
                {
                    return Err(format!(
                        "`model.filter_taps` must be odd and ≥ 3 (a linear-phase FIR with an integer delay) and ≤ {MAX_FILTER_TAPS}, got {}",
                        m.filter_taps
                    ));
                }
                if m.band_edges.len() > MAX_BAND_EDGES {
                    return Err(format!(
                        "`model.band_edges` holds {} edges, at most {MAX_BAND_EDGES} are allowed",
                        m.band_edges.len()
                    ));
                }
                (
                    vec![
                        ("taps", m.taps, 1),
                        ("hidden", m.hidden, 1),
                        ("layers", m.layers, 0),
                        ("linear_taps", m.linear_taps, 0),
                    ],
                    0.0,
                )
            }
        };
        for (key, value, min) in sizes {
            if !(min..=MAX_SIZE).contains(&value) {
                return Err(format!(
                    "`model.{key}` must be in {min}…{MAX_SIZE}, got {value}"
                ));
            }
        }
        // burn's dropout accepts [0, 1) and panics on anything else.
        if !(0.0..1.0).contains(&dropout) {
            return Err(format!(
                "`model.dropout` must be a finite number in [0, 1), got {dropout}"
            ));
        }
        Ok(())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ModelSpec::Cnn2d(_) => "cnn2d",
            ModelSpec::LstmAttention(_) => "lstm-attention",
            ModelSpec::MultibandAnc(_) => "multiband-anc",
        }
    }

    /// The settings (`model.hidden`, …) in which `other` differs from this spec.
    pub fn differences(&self, other: &ModelSpec) -> Vec<Difference> {
        let json = |m: &ModelSpec| serde_json::to_value(m).expect("model specs serialise to JSON");
        differences("model", &json(self), &json(other))
    }

    /// Whether this architecture forecasts or controls.
    pub fn family(&self) -> TaskFamily {
        match self {
            ModelSpec::Cnn2d(_) | ModelSpec::LstmAttention(_) => TaskFamily::Forecast,
            ModelSpec::MultibandAnc(_) => TaskFamily::Control,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_setting_and_both_values() {
        let a = ModelSpec::Cnn2d(Cnn2dSpec::default());
        let b = ModelSpec::Cnn2d(Cnn2dSpec {
            hidden: 64,
            ..Cnn2dSpec::default()
        });
        assert_eq!(
            a.differences(&b),
            [Difference::new("model.hidden", 128, 64)]
        );
        assert!(a.differences(&a).is_empty());
        a.validate().unwrap();
        let lstm = ModelSpec::LstmAttention(LstmAttentionSpec::default());
        assert_eq!(
            a.differences(&lstm),
            [Difference::new("model.kind", "cnn2d", "lstm-attention")]
        );
    }

    #[test]
    fn specs_that_cannot_be_built_are_refused_naming_the_key() {
        let cases = [
            (
                ModelSpec::Cnn2d(Cnn2dSpec {
                    dropout: 1.0,
                    ..Cnn2dSpec::default()
                }),
                "`model.dropout`",
            ),
            (
                ModelSpec::Cnn2d(Cnn2dSpec {
                    dropout: f64::NAN,
                    ..Cnn2dSpec::default()
                }),
                "`model.dropout`",
            ),
            (
                ModelSpec::Cnn2d(Cnn2dSpec {
                    channels: vec![4, 0],
                    ..Cnn2dSpec::default()
                }),
                "`model.channels`",
            ),
            (
                ModelSpec::LstmAttention(LstmAttentionSpec {
                    hidden: MAX_SIZE + 1,
                    ..LstmAttentionSpec::default()
                }),
                "`model.hidden`",
            ),
            (
                ModelSpec::MultibandAnc(MultibandAncSpec {
                    filter_taps: (1 << 40) + 1,
                    ..MultibandAncSpec::default()
                }),
                "`model.filter_taps`",
            ),
            (
                ModelSpec::MultibandAnc(MultibandAncSpec {
                    linear_taps: 1 << 40,
                    ..MultibandAncSpec::default()
                }),
                "`model.linear_taps`",
            ),
        ];
        for (spec, key) in cases {
            let msg = spec.validate().unwrap_err();
            assert!(msg.contains(key), "{msg}");
        }
        ModelSpec::MultibandAnc(MultibandAncSpec::default())
            .validate()
            .unwrap();
        ModelSpec::LstmAttention(LstmAttentionSpec::default())
            .validate()
            .unwrap();
    }
}
