//! A 3×3-style conv2d layer (stride 1, zero padding) with its ReLU as one fused op: im2col and
//! one matmul per image forward, the weight and input gradients likewise in the backward.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Dispatch, Flex, tensor::FloatTensor};
use burn::prelude::*;
use stoker_kernels::conv::{ConvShape, conv2d_backward, conv2d_forward};

use super::FusedOps;
use super::flex::Host;
use super::layer::{self, Layer, LayerGradients};

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

/// A conv2d layer's sizes and whether ReLU is fused.
#[derive(Debug, Clone, Copy)]
struct Conv {
    shape: ConvShape,
    relu: bool,
}

impl Layer for Conv {
    const OP: &'static str = "conv2d";

    fn forward<T: Host>(self, [x, w, b]: [&[T]; 3]) -> Vec<T> {
        conv2d_forward(x, w, b, self.shape, self.relu)
    }

    fn backward<T: Host>(self, [x, w, y, dy]: [&[T]; 4], need_dx: bool) -> LayerGradients<T> {
        let g = conv2d_backward(x, w, y, dy, self.shape, self.relu, need_dx);
        (g.dx, g.dw, g.db)
    }

    fn output_dims(self) -> Shape {
        let s = self.shape;
        [s.batch, s.out_channels, s.out_height(), s.out_width()].into()
    }

    fn operand_dims(self) -> [Shape; 3] {
        let s = self.shape;
        [
            [s.batch, s.channels, s.height, s.width].into(),
            [s.out_channels, s.channels, s.kernel[0], s.kernel[1]].into(),
            [s.out_channels].into(),
        ]
    }
}

pub(super) fn forward_flex(
    x: FlexTensor,
    w: FlexTensor,
    b: FlexTensor,
    padding: [usize; 2],
    relu: bool,
) -> FlexTensor {
    layer::forward_flex(x, w, b, |x, w| Conv {
        shape: shape_of(x, w, padding),
        relu,
    })
}

pub(super) fn forward_autodiff<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    w: FloatTensor<Autodiff<Flex, C>>,
    b: FloatTensor<Autodiff<Flex, C>>,
    padding: [usize; 2],
    relu: bool,
) -> FloatTensor<Autodiff<Flex, C>> {
    layer::forward_autodiff::<_, C>(x, w, b, |x, w| Conv {
        shape: shape_of(x, w, padding),
        relu,
    })
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
