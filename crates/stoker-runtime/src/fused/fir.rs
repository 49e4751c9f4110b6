//! A bank of FIR filters over single-channel signals (`stoker_kernels::fir`): `conv1d` with
//! one input channel, stride 1, no padding, as the ANC model's band split and secondary path
//! use it.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Dispatch, Flex, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::module::conv1d;
use burn::tensor::ops::ConvOptions;
use stoker_kernels::fir::{FirShape, fir_backward, fir_forward};

use super::FusedOps;
use super::flex::{Host, contiguous, register, unpack};

/// x [B, 1, L] through every filter of w [C, 1, T] → [B, C, L − T + 1] (a cross-correlation,
/// as `conv1d`). One fused op on the CPU in f32; `conv1d` elsewhere.
pub fn fir(x: Tensor<3>, w: Tensor<3>) -> Tensor<3> {
    let one_channel = x.dims()[1] == 1 && w.dims()[1] == 1;
    let f32s = x.dtype() == DType::F32 && w.dtype() == DType::F32;
    if one_channel && f32s && super::applies(&x.device(), DType::F32) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fir(
            x.into_dispatch(),
            w.into_dispatch(),
        ));
    }
    conv1d(x, w, None, ConvOptions::new([1], [0], [1], 1))
}

fn shape_of(x: &FlexTensor, w: &FlexTensor) -> FirShape {
    let (xd, wd) = (x.layout().shape(), w.layout().shape());
    assert!(
        xd[1] == 1 && wd[1] == 1,
        "fir: x [B, 1, L] and w [C, 1, T] have one input channel"
    );
    FirShape {
        rows: xd[0],
        len: xd[2],
        channels: wd[0],
        taps: wd[2],
    }
}

fn forward(x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    let s = shape_of(x, w);
    let out = fir_forward(f32::slice(x), f32::slice(w), s);
    f32::tensor(out, [s.rows, s.channels, s.outputs()])
}

pub(super) fn forward_flex(x: FlexTensor, w: FlexTensor) -> FlexTensor {
    forward(&contiguous(x), &contiguous(w))
}

#[derive(Debug)]
struct FirBackward;

impl Backward<Flex, 2> for FirBackward {
    /// x and w, contiguous.
    type State = (FlexTensor, FlexTensor);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (inputs, dout, (x, w)) = unpack(ops, grads);
        let s = shape_of(&x, &w);
        let (dx, dw) = fir_backward(
            f32::slice(&x),
            f32::slice(&w),
            f32::slice(&dout),
            s,
            inputs.map(|node| node.is_some()),
        );
        let dx = dx.map(|dx| f32::tensor(dx, [s.rows, 1, s.len]));
        let dw = dw.map(|dw| f32::tensor(dw, [s.channels, 1, s.taps]));
        register(grads, inputs, [dx, dw]);
    }
}

pub(super) fn forward_autodiff<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    w: FloatTensor<Autodiff<Flex, C>>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let prep = FirBackward
        .prepare::<C>([x.node(), w.node()])
        .compute_bound()
        .stateful();
    let (x, w) = (
        contiguous(x.into_primitive()),
        contiguous(w.into_primitive()),
    );
    let out = forward(&x, &w);
    match prep {
        OpsKind::Tracked(prep) => prep.finish((x, w), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    /// The fused op and `conv1d` agree in value and in the gradients of both operands.
    #[test]
    fn fused_matches_conv1d_with_gradients() {
        let device = Device::flex().autodiff();
        let x = Tensor::<3>::random([3, 1, 90], Distribution::Default, &device).require_grad();
        let w = Tensor::<3>::random([2, 1, 17], Distribution::Default, &device).require_grad();
        let r = Tensor::<3>::random([3, 2, 74], Distribution::Default, &device);
        let fused = fir(x.clone(), w.clone());
        let plain = conv1d(
            x.clone(),
            w.clone(),
            None,
            ConvOptions::new([1], [0], [1], 1),
        );
        // The filter gradient sums 3 × 74 products: its values reach ~60.
        let tol = Tolerance::rel_abs(1e-5, 1e-5);
        fused
            .to_data()
            .assert_approx_eq::<f32>(&plain.to_data(), tol);
        let gf = (fused * r.clone()).sum().backward();
        let gp = (plain * r).sum().backward();
        for (what, t) in [("x", &x), ("w", &w)] {
            let (f, p) = (t.grad(&gf), t.grad(&gp));
            let f = f.unwrap_or_else(|| panic!("fused gradient of {what}"));
            f.to_data()
                .assert_approx_eq::<f32>(&p.expect("conv1d gradient").to_data(), tol);
        }
    }
}
