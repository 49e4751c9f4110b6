//! A 3×3-style conv2d layer (stride 1, zero padding) with its ReLU as one fused op: im2col and
//! one matmul per image forward, the weight and input gradients likewise in the backward.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Dispatch, Flex, tensor::FloatTensor};
use burn::prelude::*;
use stoker_kernels::conv::{ConvShape, conv2d_backward, conv2d_forward};

use super::FusedOps;
use super::flex::{Host, by_dtype, contiguous, register};

/// relu?(conv2d(x, w) + b): x [B, C, H, W], w [Cout, C, KH, KW], b [Cout], stride 1, zero
/// `padding` [ph, pw]. None when the fused op does not apply here.
pub fn conv2d(
    x: &Tensor<4>,
    w: &Tensor<4>,
    b: &Tensor<1>,
    padding: [usize; 2],
    relu: bool,
) -> Option<Tensor<4>> {
    let dtype = x.dtype();
    if !(w.dtype() == dtype && b.dtype() == dtype && super::applies(&x.device(), dtype)) {
        return None;
    }
    Some(Tensor::from_dispatch(<Dispatch as FusedOps>::conv2d(
        x.clone().into_dispatch(),
        w.clone().into_dispatch(),
        b.clone().into_dispatch(),
        padding[0],
        padding[1],
        relu,
    )))
}

fn shape_of(x: &FlexTensor, w: &FlexTensor, padding: [usize; 2]) -> ConvShape {
    let xs = x.layout().shape();
    let ws = w.layout().shape();
    assert_eq!(
        xs[1], ws[1],
        "conv2d: input channels differ from the weight's"
    );
    ConvShape {
        batch: xs[0],
        channels: xs[1],
        height: xs[2],
        width: xs[3],
        out_channels: ws[0],
        kernel: [ws[2], ws[3]],
        padding,
    }
}

fn forward(x: &FlexTensor, w: &FlexTensor, b: &FlexTensor, s: ConvShape, relu: bool) -> FlexTensor {
    by_dtype!(x.dtype(), "conv2d", |T| T::tensor(
        conv2d_forward(T::slice(x), T::slice(w), T::slice(b), s, relu),
        [s.batch, s.out_channels, s.out_height(), s.out_width()],
    ))
}

pub(super) fn forward_flex(
    x: FlexTensor,
    w: FlexTensor,
    b: FlexTensor,
    padding: [usize; 2],
    relu: bool,
) -> FlexTensor {
    let (x, w, b) = (contiguous(x), contiguous(w), contiguous(b));
    let s = shape_of(&x, &w, padding);
    forward(&x, &w, &b, s, relu)
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    /// Input, weight, output (the ReLU mask reads it), shape and whether ReLU is fused.
    type State = (FlexTensor, FlexTensor, FlexTensor, ConvShape, bool);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let inputs = ops.parents.map(|p| p.map(|node| node.id));
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, w, y, s, relu) = ops.state;
        let need_dx = inputs[0].is_some();
        let values = by_dtype!(x.dtype(), "conv2d", |T| {
            let g = conv2d_backward(
                T::slice(&x),
                T::slice(&w),
                T::slice(&y),
                T::slice(&dy),
                s,
                relu,
                need_dx,
            );
            [
                g.dx.map(|v| T::tensor(v, [s.batch, s.channels, s.height, s.width])),
                Some(T::tensor(
                    g.dw,
                    [s.out_channels, s.channels, s.kernel[0], s.kernel[1]],
                )),
                Some(T::tensor(g.db, [s.out_channels])),
            ]
        });
        register(grads, inputs, values);
    }
}

pub(super) fn forward_autodiff<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    w: FloatTensor<Autodiff<Flex, C>>,
    b: FloatTensor<Autodiff<Flex, C>>,
    padding: [usize; 2],
    relu: bool,
) -> FloatTensor<Autodiff<Flex, C>> {
    let prep = ConvBackward
        .prepare::<C>([x.node(), w.node(), b.node()])
        .compute_bound()
        .stateful();
    let (xp, wp, bp) = (
        contiguous(x.into_primitive()),
        contiguous(w.into_primitive()),
        contiguous(b.into_primitive()),
    );
    let s = shape_of(&xp, &wp, padding);
    let y = forward(&xp, &wp, &bp, s, relu);
    match prep {
        OpsKind::Tracked(prep) => prep.finish((xp, wp, y.clone(), s, relu), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d as burn_conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Distribution, Tolerance};

    /// The fused op and burn's conv2d + relu agree in value and in every gradient.
    #[test]
    fn fused_matches_burn_conv_with_gradients() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 3, 6, 5], Distribution::Default, &device).require_grad();
        let w = Tensor::<4>::random([4, 3, 3, 3], Distribution::Default, &device).require_grad();
        let b = Tensor::<1>::random([4], Distribution::Default, &device).require_grad();
        let r = Tensor::<4>::random([2, 4, 6, 5], Distribution::Default, &device);
        let fused = conv2d(&x, &w, &b, [1, 1], true).expect("fused on flex");
        let plain = burn::tensor::activation::relu(burn_conv2d(
            x.clone(),
            w.clone(),
            Some(b.clone()),
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        ));
        fused
            .to_data()
            .assert_approx_eq::<f32>(&plain.to_data(), Tolerance::absolute(1e-5));
        let gf = (fused * r.clone()).sum().backward();
        let gp = (plain * r).sum().backward();
        let tol = Tolerance::absolute(1e-4);
        let grad = |t: &Tensor<4>, g| t.grad(g).expect("gradient").to_data();
        grad(&x, &gf).assert_approx_eq::<f32>(&grad(&x, &gp), tol);
        grad(&w, &gf).assert_approx_eq::<f32>(&grad(&w, &gp), tol);
        b.grad(&gf)
            .unwrap()
            .to_data()
            .assert_approx_eq::<f32>(&b.grad(&gp).unwrap().to_data(), tol);
    }
}
