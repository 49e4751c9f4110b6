//! 2×2 max pooling with stride 2 as one op whose backward scatters through the saved argmax.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Dispatch, Flex, tensor::FloatTensor};
use burn::prelude::*;
use stoker_kernels::pool::{max_pool2x2_backward, max_pool2x2_forward};

use super::FusedOps;
use super::flex::{Host, by_dtype, contiguous, register, unpack};

/// [B, C, H, W] → [B, C, H/2, W/2]; None when the fused op does not apply here.
pub fn max_pool2x2(x: &Tensor<4>) -> Option<Tensor<4>> {
    super::applies(&x.device(), x.dtype()).then(|| {
        Tensor::from_dispatch(<Dispatch as FusedOps>::max_pool2x2(
            x.clone().into_dispatch(),
        ))
    })
}

/// The pooled output and the argmax of every window.
fn forward(x: &FlexTensor) -> (FlexTensor, Vec<u8>) {
    let dims = x.layout().shape().clone();
    let (planes, h, w) = (dims[0] * dims[1], dims[2], dims[3]);
    by_dtype!(x.dtype(), "max_pool2x2", |T| {
        let (y, arg) = max_pool2x2_forward(T::slice(x), planes, h, w);
        (T::tensor(y, [dims[0], dims[1], h / 2, w / 2]), arg)
    })
}

pub(super) fn forward_flex(x: FlexTensor) -> FlexTensor {
    forward(&contiguous(x)).0
}

#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    /// The input's dims and the argmax of every window.
    type State = ([usize; 4], Arc<Vec<u8>>);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (inputs, dy, (dims, arg)) = unpack(ops, grads);
        let (planes, h, w) = (dims[0] * dims[1], dims[2], dims[3]);
        let dx = by_dtype!(dy.dtype(), "max_pool2x2", |T| T::tensor(
            max_pool2x2_backward(T::slice(&dy), &arg, planes, h, w),
            dims,
        ));
        register(grads, inputs, [Some(dx)]);
    }
}

pub(super) fn forward_autodiff<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let prep = PoolBackward
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful();
    let x = contiguous(x.into_primitive());
    let d = x.layout().shape().clone();
    let (y, arg) = forward(&x);
    match prep {
        OpsKind::Tracked(prep) => prep.finish(([d[0], d[1], d[2], d[3]], Arc::new(arg)), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::{Distribution, Tolerance};

    /// Matches burn's MaxPool2d, value and gradient, on an odd width (the last column drops).
    #[test]
    fn fused_matches_burn_max_pool() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 3, 6, 7], Distribution::Default, &device).require_grad();
        let r = Tensor::<4>::random([2, 3, 3, 3], Distribution::Default, &device);
        let fused = max_pool2x2(&x).expect("fused on flex");
        let plain = MaxPool2dConfig::new([2, 2]).init().forward(x.clone());
        fused
            .to_data()
            .assert_approx_eq::<f32>(&plain.to_data(), Tolerance::absolute(0.0));
        let gf = (fused * r.clone()).sum().backward();
        let gp = (plain * r).sum().backward();
        x.grad(&gf)
            .unwrap()
            .to_data()
            .assert_approx_eq::<f32>(&x.grad(&gp).unwrap().to_data(), Tolerance::absolute(1e-6));
    }
}
