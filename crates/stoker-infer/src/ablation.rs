//! The ablation every forecast reports for models with a linear part beside learned ones (the
//! LSTM-attention's skip, started at the ridge fit): the linear part alone on the same windows,
//! so `mse − linear_only_mse` is what the recurrence and the attention add.

use burn::module::Module;
use stoker_artifact::{PreparedData, WindowSpec};
use stoker_runtime::batch::try_to_host;
use stoker_zoo::Model;

use crate::error::{Error, Result};
use crate::predictor::{errors, to_metric_scale, window_batch};

/// (MSE, MAE) of the linear part alone against `truth` (metric scale), or `None` when the
/// model has no linear part.
pub(crate) fn linear_only_errors(
    model: &Model,
    data: &PreparedData,
    spec: WindowSpec,
    windows: &[usize],
    batch_size: usize,
    truth: &[f32],
) -> Result<Option<(f64, f64)>> {
    let device = model.devices().into_iter().next().ok_or(Error::NoDevice)?;
    let mut linear = Vec::with_capacity(truth.len());
    for chunk in windows.chunks(batch_size.max(1)) {
        let Some(y) = model.linear_only(window_batch(&data.store, spec, chunk, &device)) else {
            return Ok(None);
        };
        linear.extend(try_to_host(y)?);
    }
    to_metric_scale(data, &mut linear);
    Ok(Some(errors(truth, &linear)))
}
