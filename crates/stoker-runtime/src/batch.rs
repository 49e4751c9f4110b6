//! Host batches → device tensors, results back, and batch sizes that fit the device.

use std::cell::Cell;

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::error::{Error, Result, is_out_of_memory};

/// A [B, L, F] input batch from a row-major host buffer.
pub fn inputs_tensor(data: Vec<f32>, shape: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// A [B, outputs] target batch.
pub fn targets_tensor(data: Vec<f32>, batch: usize, device: &Device) -> Tensor<2> {
    let outputs = data.len() / batch;
    Tensor::from_data(TensorData::new(data, [batch, outputs]), device)
}

/// Reads a tensor back to the host as f32; whatever failed on the device on the way (GPU
/// backends report queued work's failures here) is the error, out of memory recognised.
pub fn try_to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_data()
        .map_err(Error::from_execution)?
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::ReadBack(format!("{e:?}")))
}

/// Runs `pass` with `batch` windows per step, halving while the device cannot hold one batch
/// (an error whose chain holds [`Error::OutOfMemory`]); the size that worked stays in `batch`
/// for the next pass. Only for passes whose result does not depend on the batch size:
/// evaluation and prediction. `E` is any error that shows its chain of sources, such as
/// [`Error`] or `anyhow::Error`.
pub fn fitting_batch<T, E>(
    batch: &Cell<usize>,
    what: &str,
    mut pass: impl FnMut(usize) -> std::result::Result<T, E>,
) -> std::result::Result<T, E>
where
    E: AsRef<dyn std::error::Error + Send + Sync + 'static>,
{
    loop {
        let size = batch.get();
        match pass(size) {
            Err(e) if size > 1 && is_out_of_memory(e.as_ref()) => {
                eprintln!(
                    "note: {what} at batch {size} does not fit the device; retrying at {}",
                    size / 2
                );
                batch.set(size / 2);
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_std::ExecutionError;

    /// How cubecl's allocation failure reaches us through burn (see [`Error::from_execution`]).
    fn allocation_failure(bytes: usize) -> Error {
        ExecutionError::with_context(format!("can't allocate buffer of size: {bytes}")).into()
    }

    #[test]
    fn batch_halves_on_allocation_failures_only() {
        let batch = Cell::new(2048);
        let passes = Cell::new(0);
        let result = fitting_batch(&batch, "test", |b| {
            passes.set(passes.get() + 1);
            if b > 600 {
                Err(allocation_failure(b * 65536))
            } else {
                Ok(b)
            }
        });
        assert_eq!(result.unwrap(), 512);
        assert_eq!((batch.get(), passes.get()), (512, 3));
        // Kept for the next pass; other failures are not retried.
        let other = fitting_batch(&batch, "test", |_| -> Result<()> {
            Err(ExecutionError::with_context("device lost").into())
        });
        assert!(other.is_err() && batch.get() == 512);
    }

    #[test]
    fn a_poisoned_device_is_not_out_of_memory() {
        let e: Error = ExecutionError::device_poisoned("out of device memory allocating 8").into();
        assert!(!e.is_out_of_memory());
    }

    #[test]
    fn out_of_memory_is_found_under_context() {
        #[derive(Debug, thiserror::Error)]
        #[error("evaluation")]
        struct Context(#[source] Error);
        let wrapped = Context(allocation_failure(1 << 30));
        assert!(is_out_of_memory(&wrapped));
        assert!(!is_out_of_memory(&Context(Error::Device("lost".into()))));
    }
}
