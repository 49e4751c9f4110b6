//! The grouped dense layer with its activation (the ANC band networks) as one fused op.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Dispatch, Flex, tensor::FloatTensor};
use burn::nn::Linear;
use burn::prelude::*;
use stoker_kernels::dense::{Activation, DenseShape, dense_backward, dense_forward};

use super::FusedOps;
use super::flex::Host;
use super::layer::{self, Layer, LayerGradients};

/// act(x·w + b) per group: x [G, N, K], w [G, K, M], b [G, 1, M] → [G, N, M]. Fused on the CPU
/// backend; composed from burn ops elsewhere.
pub fn band_dense(x: Tensor<3>, w: Tensor<3>, b: Tensor<3>, act: Activation) -> Tensor<3> {
    if super::applies(&x.device(), x.dtype()) && x.dtype() == w.dtype() && w.dtype() == b.dtype() {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::band_dense(
            x.into_dispatch(),
            w.into_dispatch(),
            b.into_dispatch(),
            act.code(),
        ));
    }
    activate(x.matmul(w) + b, act)
}

/// `act` composed from burn ops, for devices and layers the fused op does not serve.
fn activate<const D: usize>(z: Tensor<D>, act: Activation) -> Tensor<D> {
    match act {
        Activation::Tanh => z.tanh(),
        Activation::Relu => burn::tensor::activation::relu(z),
        Activation::Identity => z,
    }
}

/// act(`layer`(x)) for x [N, in] → [N, out]: burn's `Linear` and its activation as one fused
/// op on the CPU (a layer without bias composes burn ops).
pub fn linear(layer: &Linear, x: Tensor<2>, act: Activation) -> Tensor<2> {
    let Some(bias) = &layer.bias else {
        return activate(layer.forward(x), act);
    };
    let [rows, inputs] = x.dims();
    let outputs = bias.dims()[0];
    band_dense(
        x.reshape([1, rows, inputs]),
        layer.weight.val().reshape([1, inputs, outputs]),
        bias.val().reshape([1, 1, outputs]),
        act,
    )
    .reshape([rows, outputs])
}

fn shape_of(x: &FlexTensor, w: &FlexTensor) -> DenseShape {
    let xs = x.layout().shape();
    let ws = w.layout().shape();
    assert_eq!(xs[0], ws[0], "band_dense: groups differ");
    assert_eq!(xs[2], ws[1], "band_dense: inner dimensions differ");
    DenseShape {
        groups: xs[0],
        rows: xs[1],
        inputs: xs[2],
        outputs: ws[2],
    }
}

/// A band dense layer's sizes and activation.
#[derive(Debug, Clone, Copy)]
struct Dense {
    shape: DenseShape,
    act: Activation,
}

impl Layer for Dense {
    const OP: &'static str = "band_dense";

    fn forward<T: Host>(self, [x, w, b]: [&[T]; 3]) -> Vec<T> {
        dense_forward(x, w, b, self.shape, self.act)
    }

    fn backward<T: Host>(self, [x, w, y, dy]: [&[T]; 4], need_dx: bool) -> LayerGradients<T> {
        let g = dense_backward(x, w, y, dy, self.shape, self.act, need_dx);
        (g.dx, g.dw, g.db)
    }

    fn output_dims(self) -> Shape {
        let s = self.shape;
        [s.groups, s.rows, s.outputs].into()
    }

    fn operand_dims(self) -> [Shape; 3] {
        let s = self.shape;
        [
            [s.groups, s.rows, s.inputs].into(),
            [s.groups, s.inputs, s.outputs].into(),
            [s.groups, 1, s.outputs].into(),
        ]
    }
}

pub(super) fn forward_flex(
    x: FlexTensor,
    w: FlexTensor,
    b: FlexTensor,
    act: Activation,
) -> FlexTensor {
    layer::forward_flex(x, w, b, |x, w| Dense {
        shape: shape_of(x, w),
        act,
    })
}

pub(super) fn forward_autodiff<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    w: FloatTensor<Autodiff<Flex, C>>,
    b: FloatTensor<Autodiff<Flex, C>>,
    act: Activation,
) -> FloatTensor<Autodiff<Flex, C>> {
    layer::forward_autodiff::<_, C>(x, w, b, |x, w| Dense {
        shape: shape_of(x, w),
        act,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    fn composed(x: Tensor<3>, w: Tensor<3>, b: Tensor<3>) -> Tensor<3> {
        (x.matmul(w) + b).tanh()
    }

    /// The fused op and burn's composition agree in value and in every gradient.
    #[test]
    fn fused_matches_composed_ops_with_gradients() {
        let device = Device::flex().autodiff();
        let x = Tensor::<3>::random([3, 9, 5], Distribution::Default, &device).require_grad();
        let w = Tensor::<3>::random([3, 5, 4], Distribution::Default, &device).require_grad();
        let b = Tensor::<3>::random([3, 1, 4], Distribution::Default, &device).require_grad();
        let r = Tensor::<3>::random([3, 9, 4], Distribution::Default, &device);
        let fused = band_dense(x.clone(), w.clone(), b.clone(), Activation::Tanh);
        let plain = composed(x.clone(), w.clone(), b.clone());
        fused
            .to_data()
            .assert_approx_eq::<f32>(&plain.to_data(), Tolerance::absolute(1e-5));
        let gf = (fused * r.clone()).sum().backward();
        let gp = (plain * r).sum().backward();
        for t in [&x, &w, &b] {
            t.grad(&gf)
                .expect("fused gradient")
                .to_data()
                .assert_approx_eq::<f32>(
                    &t.grad(&gp).expect("composed gradient").to_data(),
                    Tolerance::absolute(1e-4),
                );
        }
    }
}
