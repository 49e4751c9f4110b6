//! Attention pooling over a time-major sequence as one op (`stoker_kernels::attend`): it reads
//! the recurrence's [T, B, H] output in place, where a batched product would first copy it to
//! [B, T, H].

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Dispatch, Flex, tensor::FloatTensor};
use burn::prelude::*;
use stoker_kernels::attend::{AttendShape, attend_backward, attend_forward};
use stoker_kernels::scalar::Scalar;

use super::FusedOps;
use super::flex::{Host, by_dtype, contiguous, register, unpack};

/// Σ_t a[b, t]·h[t, b, :]: weights a [B, T], h [T, B, H] (time-major) → [B, H]. One fused op
/// on the CPU; a batched product over h made batch-major elsewhere.
pub fn attend(a: Tensor<2>, h: Tensor<3>) -> Tensor<2> {
    let dtype = h.dtype();
    if super::applies(&h.device(), dtype) && a.dtype() == dtype {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::attend(
            a.into_dispatch(),
            h.into_dispatch(),
        ));
    }
    let [steps, batch, hidden] = h.dims();
    a.reshape([batch, 1, steps])
        .matmul(h.swap_dims(0, 1))
        .reshape([batch, hidden])
}

fn shape_of(a: &FlexTensor, h: &FlexTensor) -> AttendShape {
    let (ad, hd) = (a.layout().shape(), h.layout().shape());
    assert_eq!(
        (ad[0], ad[1]),
        (hd[1], hd[0]),
        "attend: a must be [batch, steps]"
    );
    AttendShape {
        steps: hd[0],
        batch: hd[1],
        hidden: hd[2],
    }
}

fn forward(a: &FlexTensor, h: &FlexTensor) -> FlexTensor {
    let s = shape_of(a, h);
    by_dtype!(h.dtype(), "attend", |T| {
        let out = attend_forward(T::slice(a), T::slice(h), s);
        T::tensor(T::narrow(out), [s.batch, s.hidden])
    })
}

pub(super) fn forward_flex(a: FlexTensor, h: FlexTensor) -> FlexTensor {
    forward(&contiguous(a), &contiguous(h))
}

#[derive(Debug)]
struct AttendBackward;

impl Backward<Flex, 2> for AttendBackward {
    /// a and h, contiguous.
    type State = (FlexTensor, FlexTensor);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (inputs, dout, (a, h)) = unpack(ops, grads);
        let s = shape_of(&a, &h);
        let values = by_dtype!(h.dtype(), "attend", |T| {
            let g = attend_backward(T::slice(&a), T::slice(&h), T::slice(&dout), s);
            [
                Some(T::tensor(T::narrow(g.da), [s.batch, s.steps])),
                Some(T::tensor(T::narrow(g.dh), [s.steps, s.batch, s.hidden])),
            ]
        });
        register(grads, inputs, values);
    }
}

pub(super) fn forward_autodiff<C: CheckpointStrategy>(
    a: FloatTensor<Autodiff<Flex, C>>,
    h: FloatTensor<Autodiff<Flex, C>>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let prep = AttendBackward
        .prepare::<C>([a.node(), h.node()])
        .compute_bound()
        .stateful();
    let (a, h) = (
        contiguous(a.into_primitive()),
        contiguous(h.into_primitive()),
    );
    let out = forward(&a, &h);
    match prep {
        OpsKind::Tracked(prep) => prep.finish((a, h), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    /// The fused op and the batched product over h made batch-major agree in value and in
    /// both gradients.
    #[test]
    fn fused_matches_the_batched_product_with_gradients() {
        let device = Device::flex().autodiff();
        let a = Tensor::<2>::random([4, 6], Distribution::Default, &device).require_grad();
        let h = Tensor::<3>::random([6, 4, 9], Distribution::Default, &device).require_grad();
        let r = Tensor::<2>::random([4, 9], Distribution::Default, &device);
        let fused = attend(a.clone(), h.clone());
        let plain = a
            .clone()
            .reshape([4, 1, 6])
            .matmul(h.clone().swap_dims(0, 1))
            .reshape([4, 9]);
        fused
            .to_data()
            .assert_approx_eq::<f32>(&plain.to_data(), Tolerance::absolute(1e-5));
        let gf = (fused * r.clone()).sum().backward();
        let gp = (plain * r).sum().backward();
        a.grad(&gf)
            .expect("fused gradient of a")
            .to_data()
            .assert_approx_eq::<f32>(&a.grad(&gp).unwrap().to_data(), Tolerance::absolute(1e-5));
        h.grad(&gf)
            .expect("fused gradient of h")
            .to_data()
            .assert_approx_eq::<f32>(&h.grad(&gp).unwrap().to_data(), Tolerance::absolute(1e-5));
    }
}
