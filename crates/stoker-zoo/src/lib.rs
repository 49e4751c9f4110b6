//! # stoker-zoo — the models
//!
//! The network definitions and nothing of the machinery they run on (devices, precision, fused
//! ops and batches are stoker-runtime's; signal processing is stoker-dsp's). [`Model`] wraps
//! every network the trainer and predictor know ([`Network`]), built from the [`ModelSpec`] of
//! a task config and the [`InputShape`] of the prepared data; [`checkpoint`] saves and loads
//! one; [`export`] maps its parameters to the names and layouts of its PyTorch peer
//! (`bench/peers/models.py`) and back, each model's mapping in an `export` module beside it.
//! Adding a model means a module file here, a variant in `ModelSpec` (stoker-artifact), its
//! export mapping and one arm per match.
//!
//! Principal types: [`Model`] (forward, loss, warm start), [`Network`] (the architectures:
//! [`Cnn2d`], [`LstmAttention`], [`MultibandAnc`]), [`InputShape`], [`Error`].
//!
//! ```
//! use burn::prelude::*;
//! use stoker_artifact::{Cnn2dSpec, ModelSpec, WindowSpec};
//! use stoker_zoo::{InputShape, Model};
//!
//! let device = Device::flex();
//! let window = WindowSpec { input_len: 24, horizon: 1, output_len: 1, stride: 1 };
//! let shape = InputShape { window, features: 11, targets: vec![0], anc: None };
//! let model = Model::new(&ModelSpec::Cnn2d(Cnn2dSpec::default()), &shape, &device)?;
//! let y = model.forward(Tensor::zeros([4, 24, 11], &device));
//! assert_eq!(y.dims(), [4, 1]);
//! # Ok::<(), stoker_zoo::Error>(())
//! ```

pub mod checkpoint;
pub mod cnn2d;
pub mod error;
pub mod export;
pub mod lstm_attention;
pub mod multiband_anc;
pub mod recurrent;
pub mod ridge;

use burn::nn::loss::{HuberLossConfig, MseLoss, Reduction};
use burn::optim::GradientsParams;
use burn::prelude::*;
use stoker_artifact::{AncSignals, LossKind, ModelSpec, WindowSpec};
use stoker_runtime::Autocast;

pub use cnn2d::Cnn2d;
pub use error::{Error, Result};
pub use export::ExportError;
pub use lstm_attention::LstmAttention;
pub use multiband_anc::{AncWeights, DenseWeights, MultibandAnc};

/// What a model sees and predicts: windows of `features` columns, and which columns are targets;
/// for ANC also the acoustic plant the loss simulates.
#[derive(Debug, Clone, PartialEq)]
pub struct InputShape {
    pub window: WindowSpec,
    pub features: usize,
    pub targets: Vec<usize>,
    pub anc: Option<AncSignals>,
}

impl InputShape {
    /// The shape of prepared data seen through `window`.
    pub fn of(manifest: &stoker_artifact::DatasetManifest, window: WindowSpec) -> Self {
        Self {
            window,
            features: manifest.features.len(),
            targets: manifest.targets.clone(),
            anc: manifest.anc.clone(),
        }
    }

    /// Width of a prediction: `output_len` steps × targets, step-major.
    pub fn outputs(&self) -> usize {
        self.window.output_len * self.targets.len()
    }
}

/// The architectures: forecasters, and the ANC controller (a network that controls rather
/// than forecasts, see [`stoker_artifact::TaskFamily`]).
// One model exists per run: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    Cnn2d(Cnn2d),
    LstmAttention(LstmAttention),
    MultibandAnc(MultibandAnc),
}

impl Network {
    pub fn forward(&self, x: Tensor<3>, ac: &Autocast) -> Tensor<2> {
        match self {
            Network::Cnn2d(m) => m.forward(x, ac),
            Network::LstmAttention(m) => m.forward(x, ac),
            Network::MultibandAnc(m) => m.forward(x, ac),
        }
    }
}

/// A network plus, when the spec asks for it, the persistence skip: the output is added to the
/// last observed (normalised) value of each target.
#[derive(Module, Debug)]
pub struct Model {
    pub net: Network,
    targets: Vec<usize>,
    output_len: usize,
    residual: bool,
}

impl Model {
    /// The network `spec` names, shaped for `shape`; a control model needs the data's plant.
    pub fn new(spec: &ModelSpec, shape: &InputShape, device: &Device) -> Result<Self> {
        let (net, residual) = match spec {
            ModelSpec::Cnn2d(s) => (Network::Cnn2d(Cnn2d::new(s, shape, device)), s.residual),
            ModelSpec::LstmAttention(s) => (
                Network::LstmAttention(LstmAttention::new(s, shape, device)),
                false,
            ),
            ModelSpec::MultibandAnc(s) => {
                let plant = shape
                    .anc
                    .as_ref()
                    .ok_or(Error::MissingPlant { kind: spec.kind() })?;
                (
                    Network::MultibandAnc(MultibandAnc::new(s, plant, device)?),
                    false,
                )
            }
        };
        Ok(Self {
            net,
            targets: shape.targets.clone(),
            output_len: shape.window.output_len,
            residual,
        })
    }

    /// [B, L, F] normalised inputs → [B, output_len × targets] normalised predictions.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        self.forward_with(x, &Autocast::F32)
    }

    /// `forward` under a precision policy: weights cast once per call, output in f32.
    pub fn forward_with(&self, x: Tensor<3>, ac: &Autocast) -> Tensor<2> {
        let last = self.residual.then(|| self.last_targets(&x));
        let y = ac.weights(self.net.clone()).forward(x, ac);
        match last {
            Some(last) => y + last,
            None => y,
        }
    }

    /// The training objective on one batch, a scalar: the configured loss between forecast and
    /// targets; for ANC the mean square of what the error microphone hears (`targets` is the
    /// disturbance d).
    pub fn loss(
        &self,
        x: Tensor<3>,
        targets: Tensor<2>,
        kind: LossKind,
        ac: &Autocast,
    ) -> Tensor<1> {
        let output = self.forward_with(x, ac);
        let (pred, target) = match &self.net {
            Network::MultibandAnc(m) => {
                let e = m.residual(output, targets);
                (e.clone(), e.zeros_like())
            }
            _ => (output, targets),
        };
        match kind {
            LossKind::Mse => MseLoss::new().forward(pred, target, Reduction::Mean),
            LossKind::Huber => {
                HuberLossConfig::new(1.0)
                    .init()
                    .forward(pred, target, Reduction::Mean)
            }
        }
    }

    /// Data-dependent initialisation before training (the LSTM's `ridge_init`, fitted on the
    /// windows at `starts`); other models are returned unchanged.
    pub fn warm_start(
        self,
        spec: &ModelSpec,
        store: &stoker_artifact::WindowStore,
        starts: &[usize],
        window: WindowSpec,
    ) -> Self {
        let net = match (spec, self.net) {
            (ModelSpec::MultibandAnc(s), Network::MultibandAnc(m))
                if s.least_squares_init && s.linear_taps > 0 && !starts.is_empty() =>
            {
                let controller = anc_least_squares(&m, store, starts, window, s.linear_taps);
                Network::MultibandAnc(m.with_linear_start(&controller))
            }
            (ModelSpec::LstmAttention(s), Network::LstmAttention(m))
                if s.ridge_init && s.linear_skip =>
            {
                let fit = ridge::fit(store, starts, window, &self.targets, 1.0);
                Network::LstmAttention(m.with_linear_start(&fit))
            }
            (_, net) => net,
        };
        Self { net, ..self }
    }

    /// Attention weights over the input steps [B, steps], for models that have them.
    /// `forward` plus the attention weights of models that have them, from one forward pass.
    pub fn forward_explained(&self, x: Tensor<3>) -> (Tensor<2>, Option<Tensor<2>>) {
        match &self.net {
            Network::LstmAttention(m) if !self.residual => {
                let e = m.explain(x, &Autocast::F32);
                (e.output, Some(e.attention))
            }
            _ => (self.forward(x), None),
        }
    }

    /// The forecast of the network's linear part alone (`[B, output_len × targets]`, as
    /// `forward`), for networks that have one beside their learned parts: the LSTM-attention's
    /// skip (its ridge start), plus persistence when the model is residual. `None` otherwise.
    pub fn linear_only(&self, x: Tensor<3>) -> Option<Tensor<2>> {
        let Network::LstmAttention(m) = &self.net else {
            return None;
        };
        let last = self.residual.then(|| self.last_targets(&x));
        let y = m.linear_only(x)?;
        Some(match last {
            Some(last) => y + last,
            None => y,
        })
    }

    /// Moves the gradients of the network's linear part (the LSTM-attention's skip, the ANC's
    /// linear FIR) out of `grads` into their own set, empty for networks without one (see
    /// `TrainConfig::linear_lr_scale`).
    pub fn take_linear_grads(&self, grads: &mut GradientsParams) -> GradientsParams {
        match &self.net {
            Network::LstmAttention(m) => m.take_skip_grads(grads),
            Network::MultibandAnc(m) => m.take_linear_grads(grads),
            Network::Cnn2d(_) => GradientsParams::new(),
        }
    }

    /// The last input value of each target, repeated over the output steps.
    fn last_targets(&self, x: &Tensor<3>) -> Tensor<2> {
        let [batch, len, _] = x.dims();
        let v = self.targets.len();
        let idx = Tensor::<1, Int>::from_data(
            burn::tensor::TensorData::new(self.targets.iter().map(|&t| t as i64).collect(), [v]),
            &x.device(),
        );
        x.clone()
            .slice([0..batch, len - 1..len])
            .select(2, idx)
            .repeat_dim(1, self.output_len)
            .reshape([batch, self.output_len * v])
    }
}

/// The offline least-squares causal FIR controller of `taps` taps over the rows the training
/// windows' losses cover (columns x, d of the store).
fn anc_least_squares(
    model: &MultibandAnc,
    store: &stoker_artifact::WindowStore,
    starts: &[usize],
    window: WindowSpec,
    taps: usize,
) -> Vec<f32> {
    let end = starts.last().map_or(0, |&s| s + window.span());
    let first = starts.first().map_or(0, |&s| window.first_target_row(s));
    let (x, d) = (store.column(0, 0..end), store.column(1, 0..end));
    stoker_dsp::least_squares_fir(&x, &d, &model.secondary_path(), taps, first..end)
}

/// Moves `param`'s gradient, when `from` has one, to `to`.
fn move_grad<const D: usize>(
    param: &burn::module::Param<Tensor<D>>,
    from: &mut GradientsParams,
    to: &mut GradientsParams,
) {
    if let Some(g) = from.remove::<D>(param.id) {
        to.register(param.id, g);
    }
}

/// A tensor's values on the host, for tests (a failed read-back fails the test).
#[cfg(test)]
pub(crate) fn test_host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    stoker_runtime::batch::try_to_host(t).expect("read back")
}

#[cfg(test)]
mod tests {
    use super::*;
    use stoker_artifact::Cnn2dSpec;

    fn shape() -> InputShape {
        InputShape {
            window: WindowSpec {
                input_len: 24,
                horizon: 1,
                output_len: 1,
                stride: 1,
            },
            features: 11,
            targets: vec![0],
            anc: None,
        }
    }

    #[test]
    fn reference_cnn2d_has_the_reference_parameter_count() {
        let reference = Model::new(
            &ModelSpec::Cnn2d(Cnn2dSpec::default()),
            &shape(),
            &Device::flex(),
        )
        .unwrap();
        // conv1 320 + conv2 18 496 + dense (64·12·5 → 128) 491 648 + head 129.
        assert_eq!(reference.num_params(), 320 + 18_496 + 491_648 + 129);
    }

    #[test]
    fn residual_adds_the_last_observed_target() {
        let device = Device::flex();
        let spec = ModelSpec::Cnn2d(Cnn2dSpec {
            residual: true,
            ..Cnn2dSpec::default()
        });
        let model = Model::new(&spec, &shape(), &device).unwrap();
        let x = Tensor::<3>::random([2, 24, 11], burn::tensor::Distribution::Default, &device);
        let skip =
            (model.forward(x.clone()) - model.net.forward(x.clone(), &Autocast::F32)).into_data();
        let last = x.slice([0..2, 23..24, 0..1]).reshape([2, 1]).into_data();
        skip.assert_approx_eq::<f32>(&last, burn::tensor::Tolerance::default());
    }

    /// `loss = "huber"` (the PM2.5 config's) is quadratic below one normalised unit of error
    /// and linear above it; `mse` is the mean square: both checked against the forecast itself.
    #[test]
    fn huber_and_mse_losses_follow_their_definitions_on_the_forecast() {
        let device = Device::flex();
        let model = Model::new(&ModelSpec::Cnn2d(Cnn2dSpec::default()), &shape(), &device).unwrap();
        let x = Tensor::<3>::random([4, 24, 11], burn::tensor::Distribution::Default, &device);
        let forecast: Vec<f32> = model.forward(x.clone()).into_data().try_to_vec().unwrap();
        // Errors of 0.3 and 2.5 units: one on each side of delta = 1.
        let offsets = [0.3f32, -2.5, 2.5, -0.3];
        let targets: Vec<f32> = forecast.iter().zip(offsets).map(|(f, o)| f + o).collect();
        let y = Tensor::<2>::from_data(burn::tensor::TensorData::new(targets, [4, 1]), &device);
        let loss = |kind| -> f32 {
            model
                .loss(x.clone(), y.clone(), kind, &Autocast::F32)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()[0]
        };
        let huber = |e: f32| {
            if e.abs() <= 1.0 {
                0.5 * e * e
            } else {
                e.abs() - 0.5
            }
        };
        let want_huber = offsets.iter().map(|&e| huber(e)).sum::<f32>() / 4.0;
        let want_mse = offsets.iter().map(|e| e * e).sum::<f32>() / 4.0;
        assert!(
            (loss(LossKind::Huber) - want_huber).abs() < 1e-4,
            "{} vs {want_huber}",
            loss(LossKind::Huber)
        );
        assert!(
            (loss(LossKind::Mse) - want_mse).abs() < 1e-4,
            "{} vs {want_mse}",
            loss(LossKind::Mse)
        );
    }

    fn lstm(instance_norm: bool) -> (Model, InputShape) {
        lstm_over(instance_norm, 0)
    }

    /// `segment` > 0: the recurrence over channel-independent segments of that length, with a
    /// score bias per segment (as the ETTh1 config).
    fn lstm_over(instance_norm: bool, segment: usize) -> (Model, InputShape) {
        let shape = InputShape {
            window: WindowSpec {
                input_len: 16,
                horizon: 1,
                output_len: 4,
                stride: 1,
            },
            features: 3,
            targets: vec![0, 1, 2],
            anc: None,
        };
        let spec = ModelSpec::LstmAttention(stoker_artifact::LstmAttentionSpec {
            hidden: 8,
            layers: 2,
            attention: 4,
            instance_norm,
            linear_skip: true,
            segment,
            position_bias: segment > 0,
            ..Default::default()
        });
        (Model::new(&spec, &shape, &Device::flex()).unwrap(), shape)
    }

    #[test]
    fn attention_weights_of_every_window_sum_to_one() {
        // Segments of 5 over 16 steps: the recurrence reads the last 15, three segments.
        for (segment, attended) in [(0, 16), (5, 15)] {
            let (model, shape) = lstm_over(false, segment);
            let x = Tensor::<3>::random(
                [5, 16, 3],
                burn::tensor::Distribution::Default,
                &Device::flex(),
            );
            assert_eq!(model.forward(x.clone()).dims(), [5, shape.outputs()]);
            let (output, weights) = model.forward_explained(x.clone());
            let weights = weights.expect("the LSTM has attention");
            output.into_data().assert_approx_eq::<f32>(
                &model.forward(x).into_data(),
                burn::tensor::Tolerance::default(),
            );
            assert_eq!(weights.dims(), [5, attended]);
            let sums: Vec<f32> = test_host(weights.clone().sum_dim(1));
            assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
            assert!(test_host(weights).iter().all(|&w| w > 0.0));
        }
    }

    #[test]
    fn over_segments_each_variable_is_forecast_from_its_own_series() {
        let device = Device::flex();
        let (model, shape) = lstm_over(true, 4);
        let x = Tensor::<3>::random([2, 16, 3], burn::tensor::Distribution::Default, &device);
        // Variable 1's series replaced: only its forecasts (every third output) may move.
        let other = Tensor::<3>::random([2, 16, 1], burn::tensor::Distribution::Default, &device);
        let moved = x.clone().slice_assign([0..2, 0..16, 1..2], other);
        let (y, y_moved) = (test_host(model.forward(x)), test_host(model.forward(moved)));
        let v = shape.targets.len();
        for (i, (a, b)) in y.iter().zip(&y_moved).enumerate() {
            if i % v == 1 {
                assert!((a - b).abs() > 0.0, "output {i} ignores its own series");
            } else {
                assert!((a - b).abs() < 1e-6, "output {i} reads another variable");
            }
        }
    }

    #[test]
    fn the_linear_part_alone_is_the_whole_forecast_at_the_ridge_start() {
        let device = Device::flex();
        for (instance_norm, segment) in [(false, 0), (true, 0), (true, 4)] {
            let (model, shape) = lstm_over(instance_norm, segment);
            let x = Tensor::<3>::random([3, 16, 3], burn::tensor::Distribution::Default, &device);
            let linear = model
                .linear_only(x.clone())
                .expect("the LSTM has a linear skip");
            assert_eq!(linear.dims(), [3, shape.outputs()]);
            // Random heads: the learned parts add something, so the two differ.
            assert_ne!(
                test_host(linear.clone()),
                test_host(model.forward(x.clone()))
            );
            // At the ridge start the recurrent head is zero: the forecast is the skip's alone.
            let fit = ridge::LinearFit {
                weight: (0..4 * 16)
                    .map(|i| ((i * 7 % 13) as f32 - 6.0) / 20.0)
                    .collect(),
                bias: vec![0.1, -0.2, 0.3, 0.0],
            };
            let Network::LstmAttention(net) = model.net.clone() else {
                unreachable!("lstm() builds an LSTM-attention model")
            };
            let started = Model {
                net: Network::LstmAttention(net.with_linear_start(&fit)),
                ..model
            };
            started
                .linear_only(x.clone())
                .unwrap()
                .into_data()
                .assert_approx_eq::<f32>(
                    &started.forward(x).into_data(),
                    burn::tensor::Tolerance::absolute(1e-6),
                );
        }
    }

    #[test]
    fn instance_norm_makes_the_forecast_follow_level_and_scale() {
        let (model, _) = lstm(true);
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 16, 3], burn::tensor::Distribution::Default, &device);
        let y = model.forward(x.clone());
        let moved = model.forward(x * 3.0 + 10.0);
        (y * 3.0 + 10.0)
            .into_data()
            .assert_approx_eq::<f32>(&moved.into_data(), burn::tensor::Tolerance::absolute(1e-3));
    }

    #[test]
    fn bf16_mixed_forward_tracks_f32_and_trains_the_f32_masters() {
        let device = Device::flex().autodiff();
        let ac = Autocast::new(stoker_artifact::Precision::Bf16Mixed);
        let cnn = Model::new(&ModelSpec::Cnn2d(Cnn2dSpec::default()), &shape(), &device).unwrap();
        let (lstm, lstm_shape) = lstm(true);
        let (segmented, segmented_shape) = lstm_over(true, 4);
        for (model, shape) in [
            (cnn, shape()),
            (lstm.train(), lstm_shape),
            (segmented.train(), segmented_shape),
        ] {
            let x = Tensor::<3>::random(
                [4, shape.window.input_len, shape.features],
                burn::tensor::Distribution::Default,
                &device,
            );
            let full = model.forward(x.clone());
            let mixed = model.forward_with(x, &ac);
            assert_eq!(mixed.dtype(), burn::tensor::DType::F32);
            let (f, m) = (test_host(full.clone()), test_host(mixed.clone()));
            // An untrained model's outputs can be ~1e-3, a small difference of much larger
            // terms whose bf16 rounding the difference keeps: hence the floor under the scale
            // (an output that ignored its input would still be off by its whole size).
            let scale = f.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-2);
            let worst = f
                .iter()
                .zip(&m)
                .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
            assert!(
                worst <= 0.05 * scale,
                "bf16 output off by {worst} (scale {scale})"
            );
            let grads = mixed.square().mean().backward();
            let grads = burn::optim::GradientsParams::from_grads(grads, &model);
            assert!(
                !grads.is_empty(),
                "gradients must reach the f32 master weights"
            );
        }
    }
}
