//! f32 ↔ bf16 as one op on the host, through stoker-kernels' vectorised rounding (the same
//! round-to-nearest-even as `half`): burn's CPU cast converts element by element, and mixed
//! precision casts every weight and its gradient each step (about 1.5 % of an ANC bf16
//! training step).

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Dispatch, Flex, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use stoker_kernels::bf16;
use stoker_kernels::scalar::Scalar;

use super::FusedOps;
use super::flex::{Host, contiguous, register, unpack};

/// `t` cast to `dtype`, by the fused op where it applies (f32 ↔ bf16 on the CPU), else by
/// burn.
pub fn cast<const D: usize>(t: Tensor<D>, dtype: FloatDType) -> Tensor<D> {
    let (from, to) = (t.dtype(), DType::from(dtype));
    let device = t.device();
    if from != to && super::applies(&device, from) && super::applies(&device, to) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::cast_float(
            t.into_dispatch(),
            to == DType::BF16,
        ));
    }
    t.cast(dtype)
}

/// `x` (f32 or bf16) as bf16 when `to_bf16`, else as f32; itself when it already is.
fn convert(x: FlexTensor, to_bf16: bool) -> FlexTensor {
    let shape = x.layout().shape().clone();
    match (x.dtype(), to_bf16) {
        (DType::F32, true) => {
            let x = contiguous(x);
            let src = f32::slice(&x);
            let mut out = bf16::zeros(src.len());
            bf16::narrow_into(src, &mut out);
            bf16::tensor(out, shape)
        }
        (DType::BF16, false) => f32::tensor(bf16::widen(bf16::slice(&contiguous(x))), shape),
        _ => x,
    }
}

pub(super) fn forward_flex(x: FlexTensor, to_bf16: bool) -> FlexTensor {
    convert(x, to_bf16)
}

#[derive(Debug)]
struct CastBackward;

impl Backward<Flex, 1> for CastBackward {
    /// Whether the forward went to bf16: the gradient goes back the other way.
    type State = bool;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (inputs, dy, to_bf16) = unpack(ops, grads);
        register(grads, inputs, [Some(convert(dy, !to_bf16))]);
    }
}

pub(super) fn forward_autodiff<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    to_bf16: bool,
) -> FloatTensor<Autodiff<Flex, C>> {
    let prep = CastBackward
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful();
    let y = convert(x.into_primitive(), to_bf16);
    match prep {
        OpsKind::Tracked(prep) => prep.finish(to_bf16, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The fused cast and burn's agree bit for bit both ways, and so do the gradients that
    /// flow back through them to an f32 tensor.
    #[test]
    fn matches_burns_cast_with_gradients() {
        let device = Device::flex().autodiff();
        let x =
            Tensor::<2>::random([37, 19], Distribution::Normal(0.0, 3.0), &device).require_grad();
        let r =
            Tensor::<2>::random([37, 19], Distribution::Default, &device).cast(FloatDType::BF16);
        let fused = cast(x.clone(), FloatDType::BF16);
        let plain = x.clone().cast(FloatDType::BF16);
        assert_eq!(fused.dtype(), DType::BF16);
        assert_eq!(fused.to_data().as_bytes(), plain.to_data().as_bytes());
        let back = cast(fused.clone(), FloatDType::F32);
        assert_eq!(back.dtype(), DType::F32);
        assert_eq!(
            back.to_data().as_bytes(),
            plain.clone().cast(FloatDType::F32).to_data().as_bytes()
        );
        let gf = (fused * r.clone()).sum().backward();
        let gp = (plain * r).sum().backward();
        let (df, dp) = (x.grad(&gf).expect("fused"), x.grad(&gp).expect("plain"));
        assert_eq!(df.dtype(), DType::F32);
        assert_eq!(df.to_data().as_bytes(), dp.to_data().as_bytes());
    }
}
