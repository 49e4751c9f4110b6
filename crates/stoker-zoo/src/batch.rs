//! Host batches → device tensors.

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
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("float tensors convert to f32")
}
