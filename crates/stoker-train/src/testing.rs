//! Fixtures shared by the crate's unit tests.

use burn::optim::GradientsParams;
use burn::prelude::*;
use stoker_artifact::{LossKind, WindowSpec};
use stoker_runtime::Autocast;
use stoker_zoo::{InputShape, Model};

use crate::loader::HostBatch;
use crate::step::batch_gradients;

/// Two features, the first the target, predicted one step ahead from `input_len` steps: the
/// smallest input a model of the zoo builds on.
pub fn one_target_of_two(input_len: usize) -> InputShape {
    InputShape {
        window: WindowSpec {
            input_len,
            horizon: 1,
            output_len: 1,
            stride: 1,
        },
        features: 2,
        targets: vec![0],
        anc: None,
    }
}

/// The gradients and mean loss of `batch` as most tests want them: MSE in f32, one
/// micro-batch, no loss scale.
pub fn plain_gradients(
    model: &Model,
    batch: &HostBatch,
    shape: &InputShape,
    device: &Device,
) -> (GradientsParams, Tensor<1>) {
    batch_gradients(
        model,
        batch,
        shape.window,
        shape.features,
        1,
        LossKind::Mse,
        &Autocast::F32,
        1.0,
        device,
    )
}
