//! # stoker-zoo — the models
//!
//! [`Model`] wraps every network the trainer and predictor know ([`Forecaster`]), built from the
//! [`ModelSpec`] of a task config and the [`InputShape`] of the prepared data. Adding a model
//! means a module file here, a variant in `ModelSpec` (stoker-artifact) and one arm per match.
//!
//! ```
//! use burn::prelude::*;
//! use stoker_artifact::{Cnn2dSpec, ModelSpec};
//! use stoker_zoo::{InputShape, Model};
//!
//! let device = Device::flex();
//! let shape = InputShape { input_len: 24, features: 11, target: 0 };
//! let model = Model::new(&ModelSpec::Cnn2d(Cnn2dSpec::default()), shape, &device);
//! let y = model.forward(Tensor::zeros([4, 24, 11], &device));
//! assert_eq!(y.dims(), [4, 1]);
//! ```

pub mod batch;
pub mod checkpoint;
pub mod cnn2d;
pub mod device;

use burn::prelude::*;
use stoker_artifact::ModelSpec;

pub use cnn2d::Cnn2d;

/// What a model sees: windows of `input_len` rows × `features`, and which feature is the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputShape {
    pub input_len: usize,
    pub features: usize,
    pub target: usize,
}

#[derive(Module, Debug)]
pub enum Forecaster {
    Cnn2d(Cnn2d),
}

/// A model plus, when the spec asks for it, the persistence skip: the output is added to the
/// last observed (normalised) target value.
#[derive(Module, Debug)]
pub struct Model {
    pub net: Forecaster,
    target: usize,
    residual: bool,
}

impl Forecaster {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        match self {
            Forecaster::Cnn2d(m) => m.forward(x),
        }
    }
}

impl Model {
    pub fn new(spec: &ModelSpec, shape: InputShape, device: &Device) -> Self {
        let (net, residual) = match spec {
            ModelSpec::Cnn2d(s) => (Forecaster::Cnn2d(Cnn2d::new(s, shape, device)), s.residual),
        };
        Self {
            net,
            target: shape.target,
            residual,
        }
    }

    /// [B, L, F] normalised inputs → [B, 1] normalised target.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [batch, len, _] = x.dims();
        let last = self.residual.then(|| {
            x.clone()
                .slice([0..batch, len - 1..len, self.target..self.target + 1])
                .reshape([batch, 1])
        });
        let y = self.net.forward(x);
        match last {
            Some(last) => y + last,
            None => y,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stoker_artifact::Cnn2dSpec;

    const SHAPE: InputShape = InputShape {
        input_len: 24,
        features: 11,
        target: 0,
    };

    #[test]
    fn reference_cnn2d_has_the_reference_parameter_count() {
        let reference = Model::new(
            &ModelSpec::Cnn2d(Cnn2dSpec::default()),
            SHAPE,
            &Device::flex(),
        );
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
        let model = Model::new(&spec, SHAPE, &device);
        let x = Tensor::<3>::random([2, 24, 11], burn::tensor::Distribution::Default, &device);
        let skip = (model.forward(x.clone()) - model.net.forward(x.clone())).into_data();
        let last = x.slice([0..2, 23..24, 0..1]).reshape([2, 1]).into_data();
        skip.assert_approx_eq::<f32>(&last, burn::tensor::Tolerance::default());
    }
}
