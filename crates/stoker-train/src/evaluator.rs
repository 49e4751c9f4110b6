//! Validation: the model's mean squared error on the validation windows, without gradients;
//! in a distributed run each rank scores its share and the sums are added.

use std::cell::Cell;
use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::TensorReadError;
use stoker_artifact::{LossKind, PreparedData, WindowSpec};
use stoker_runtime::Autocast;
use stoker_runtime::batch::{fitting_batch, inputs_tensor, targets_tensor};
use stoker_zoo::{InputShape, Model};

use crate::error::{Error, Result};
use crate::loader::Loader;
use crate::team::Team;
use crate::trainer::TrainRequest;

pub(crate) struct Evaluator {
    /// Its own loader: a mid-epoch evaluation cannot share the training pass's workers.
    loader: Loader,
    /// This rank's share of the validation windows.
    windows: Vec<usize>,
    /// Every rank's together.
    total_windows: usize,
    window: WindowSpec,
    features: usize,
    /// The batch size that fits the device, halved when it did not.
    batch: Cell<usize>,
    device_name: String,
    /// The run's device (not its autodiff view), for a model without parameters.
    device: Device,
}

impl Evaluator {
    /// Evaluates on `windows` of `data` (this rank's share of `total_windows`), starting at
    /// predict's batch size.
    pub fn new(
        data: Arc<PreparedData>,
        windows: Vec<usize>,
        total_windows: usize,
        shape: &InputShape,
        req: &TrainRequest,
    ) -> Self {
        Self {
            loader: Loader::new(data, 1, req.config.train.prefetch),
            windows,
            total_windows,
            window: shape.window,
            features: shape.features,
            batch: Cell::new(req.config.predict.batch_size),
            device_name: req.device_name.clone(),
            device: req.device.clone(),
        }
    }

    /// How many windows an evaluation covers (every rank's).
    pub fn windows(&self) -> usize {
        self.total_windows
    }

    /// Mean squared error on normalised targets over the validation windows (every step and
    /// target; for ANC the error microphone's mean square), at the largest batch that fits.
    pub fn mse(&mut self, model: &Model, team: &Team) -> Result<f64> {
        let model = model.valid();
        let Self {
            loader,
            windows,
            total_windows,
            window,
            features,
            batch,
            device_name,
            device,
        } = self;
        let sum = fitting_batch(batch, "evaluation", |batch_size| {
            squared_error_sum(
                &model, loader, windows, *window, *features, batch_size, device,
            )
        })
        .map_err(|source| Error::Evaluation {
            device: device_name.clone(),
            source,
        })?;
        let mut sum = [sum];
        team.sum_f64(&mut sum);
        Ok(sum[0] / (*total_windows).max(1) as f64)
    }
}

/// The sum over `windows` of each window's mean squared error.
fn squared_error_sum(
    model: &Model,
    loader: &mut Loader,
    windows: &[usize],
    window: WindowSpec,
    features: usize,
    batch_size: usize,
    run_device: &Device,
) -> stoker_runtime::Result<f64> {
    let device = model
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(|| run_device.clone());
    let mut sum = Tensor::<1>::zeros([1], &device);
    for batch in loader.pass(windows.to_vec(), batch_size, window) {
        let x = inputs_tensor(
            batch.inputs,
            [batch.len, window.input_len, features],
            &device,
        );
        let y = targets_tensor(batch.targets, batch.len, &device);
        let mse = model.loss(x, y, LossKind::Mse, &Autocast::F32);
        sum = sum.clone() + mse * batch.len as f32;
    }
    let sum = sum.try_into_scalar::<f32>().map_err(|e| match e {
        TensorReadError::Execution(e) => stoker_runtime::Error::from_execution(e),
        other => stoker_runtime::Error::ReadBack(other.to_string()),
    })?;
    Ok(f64::from(sum))
}
