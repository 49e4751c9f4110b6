//! Host batches → device tensors, results back, and batch sizes that fit the device.

use std::cell::Cell;

use anyhow::anyhow;
use burn::prelude::*;
use burn::tensor::TensorData;

/// A [B, L, F] input batch from a row-major host buffer.
pub fn inputs_tensor(data: Vec<f32>, shape: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// A [B, outputs] target batch.
pub fn targets_tensor(data: Vec<f32>, batch: usize, device: &Device) -> Tensor<2> {
    let outputs = data.len() / batch;
    Tensor::from_data(TensorData::new(data, [batch, outputs]), device)
}

/// Reads a tensor back to the host as f32.
pub fn to_host(t: Tensor<2>) -> Vec<f32> {
    try_to_host(t).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Reads a tensor back to the host as f32; whatever failed on the device on the way (GPU
/// backends report queued work's failures here) is the error.
pub fn try_to_host(t: Tensor<2>) -> anyhow::Result<Vec<f32>> {
    t.try_into_data()
        .map_err(|e| anyhow!("{e}"))?
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow!("{e:?}"))
}

/// An allocation the device cannot make: a GPU's per-buffer limit (128 MiB on lavapipe and in
/// WebGPU's defaults) or its memory. burn exposes it only in its message.
fn is_out_of_memory(e: &anyhow::Error) -> bool {
    let message = format!("{e:#}");
    message.contains("can't allocate buffer") || message.contains("out of device memory")
}

/// Runs `pass` with `batch` windows per step, halving while the device cannot hold one batch;
/// the size that worked stays in `batch` for the next pass. Only for passes whose result does
/// not depend on the batch size: evaluation and prediction.
pub fn fitting_batch<T>(
    batch: &Cell<usize>,
    what: &str,
    mut pass: impl FnMut(usize) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    loop {
        let size = batch.get();
        match pass(size) {
            Err(e) if size > 1 && is_out_of_memory(&e) => {
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

    #[test]
    fn batch_halves_on_allocation_failures_only() {
        let batch = Cell::new(2048);
        let passes = Cell::new(0);
        let result = fitting_batch(&batch, "test", |b| {
            passes.set(passes.get() + 1);
            if b > 600 {
                Err(anyhow!(
                    "Caused by:\n  can't allocate buffer of size: {}",
                    b * 65536
                ))
            } else {
                Ok(b)
            }
        });
        assert_eq!(result.unwrap(), 512);
        assert_eq!((batch.get(), passes.get()), (512, 3));
        // Kept for the next pass; other failures are not retried.
        let other = fitting_batch(&batch, "test", |_| -> anyhow::Result<()> {
            Err(anyhow!("device lost"))
        });
        assert!(other.is_err() && batch.get() == 512);
    }
}
