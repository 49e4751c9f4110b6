//! Adam's update as one pass per parameter (stoker-kernels), for the trainer's optimizer.

use burn::backend::Dispatch;
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::DType;
use stoker_kernels::adam::AdamStep;

use super::FusedOps;
use super::flex::{Host, contiguous};

/// Whether `adam_step` serves these tensors: all f32, on the CPU device.
pub fn adam_applies<const D: usize>(tensors: [&Tensor<D>; 4]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
        && super::applies(&tensors[0].device(), DType::F32)
}

/// (param, moment_1, moment_2) after one Adam step from `grad`, updated in place when the
/// caller hands over the only reference to each. Only where `adam_applies`.
pub fn adam_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (p, m, v) = <Dispatch as FusedOps>::adam_step(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        step,
    );
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}

/// Updates in place where a buffer is not shared (a shared one is copied first).
pub(super) fn step_flex(
    param: FlexTensor,
    grad: FlexTensor,
    moment_1: FlexTensor,
    moment_2: FlexTensor,
    step: AdamStep,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (mut p, g, mut m, mut v) = (
        contiguous(param),
        contiguous(grad),
        contiguous(moment_1),
        contiguous(moment_2),
    );
    let n = p.layout().shape().num_elements();
    stoker_kernels::adam::adam_step(
        &mut p.storage_mut::<f32>()[..n],
        f32::slice(&g),
        &mut m.storage_mut::<f32>()[..n],
        &mut v.storage_mut::<f32>()[..n],
        step,
    );
    (p, m, v)
}
