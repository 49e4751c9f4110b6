//! A band dense layer and the one-output layer after it as one op:
//! out = act(x·w + b)·v + c per group (`stoker_kernels::dense::dense_head_forward`), so the
//! hidden activations and their gradient never make a round trip through the batch between
//! the two layers.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Dispatch, Flex, tensor::FloatTensor};
use burn::nn::Linear;
use burn::prelude::*;
use stoker_kernels::dense::{DenseShape, dense_head_backward, dense_head_forward};

use super::flex::{Host, by_dtype, contiguous, register, unpack};
use super::{Activation, FusedOps, band_dense};

/// act(x·w + b)·v + c per group: x [G, N, K], w [G, K, M], b [G, 1, M], v [G, M, 1],
/// c [G, 1, 1] → [G, N, 1]. One fused op on the CPU; two band dense layers elsewhere.
pub fn band_dense_head(
    x: Tensor<3>,
    [w, b]: [Tensor<3>; 2],
    [v, c]: [Tensor<3>; 2],
    act: Activation,
) -> Tensor<3> {
    let dtype = x.dtype();
    if super::applies(&x.device(), dtype) && [&w, &b, &v, &c].iter().all(|t| t.dtype() == dtype) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::band_dense_head(
            x.into_dispatch(),
            w.into_dispatch(),
            b.into_dispatch(),
            v.into_dispatch(),
            c.into_dispatch(),
            act.code(),
        ));
    }
    band_dense(band_dense(x, w, b, act), v, c, Activation::Identity)
}

/// `head`(act(`layer`(x))) for x [N, in] → [N, 1]: burn's `Linear` with its activation and a
/// one-output `Linear` after it (with or without bias; attention scores have none) as one
/// fused op on the CPU. A hidden layer without bias composes burn ops.
pub fn linear_head(layer: &Linear, head: &Linear, x: Tensor<2>, act: Activation) -> Tensor<2> {
    let Some(bias) = &layer.bias else {
        return head.forward(super::linear(layer, x, act));
    };
    let [rows, inputs] = x.dims();
    let outputs = bias.dims()[0];
    let v = head.weight.val();
    assert_eq!(
        v.dims(),
        [outputs, 1],
        "linear_head: the head must map {outputs} → 1"
    );
    // No head bias: a constant zero, outside autodiff (nothing to learn there).
    let c = match &head.bias {
        Some(c) => c.val().reshape([1, 1, 1]),
        None => Tensor::zeros([1, 1, 1], (&v.device(), v.dtype())),
    };
    band_dense_head(
        x.reshape([1, rows, inputs]),
        [
            layer.weight.val().reshape([1, inputs, outputs]),
            bias.val().reshape([1, 1, outputs]),
        ],
        [v.reshape([1, outputs, 1]), c],
        act,
    )
    .reshape([rows, 1])
}

/// The operands made contiguous, and the layer's sizes read off x and w.
struct Operands {
    x: FlexTensor,
    w: FlexTensor,
    b: FlexTensor,
    v: FlexTensor,
    c: FlexTensor,
    shape: DenseShape,
}

impl Operands {
    fn new([x, w, b, v, c]: [FlexTensor; 5]) -> Self {
        let [x, w, b, v, c] = [x, w, b, v, c].map(contiguous);
        let (xs, ws) = (x.layout().shape(), w.layout().shape());
        assert_eq!(xs[0], ws[0], "band_dense_head: groups differ");
        assert_eq!(xs[2], ws[1], "band_dense_head: inner dimensions differ");
        let shape = DenseShape {
            groups: xs[0],
            rows: xs[1],
            inputs: xs[2],
            outputs: ws[2],
        };
        Self {
            x,
            w,
            b,
            v,
            c,
            shape,
        }
    }

    /// (h, out [G, N, 1]).
    fn forward(&self, act: Activation) -> (FlexTensor, FlexTensor) {
        let s = self.shape;
        by_dtype!(self.x.dtype(), "band_dense_head", |T| {
            let [x, w, b, v, c] = [&self.x, &self.w, &self.b, &self.v, &self.c].map(T::slice);
            let (h, out) = dense_head_forward(x, w, b, v, c, s, act);
            (
                T::tensor(h, [s.groups, s.rows, s.outputs]),
                T::tensor(out, [s.groups, s.rows, 1]),
            )
        })
    }
}

pub(super) fn forward_flex(operands: [FlexTensor; 5], act: Activation) -> FlexTensor {
    Operands::new(operands).forward(act).1
}

#[derive(Debug)]
struct HeadBackward;

impl Backward<Flex, 5> for HeadBackward {
    /// x, w, v, the hidden activations h, the sizes and the activation.
    type State = (
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
        DenseShape,
        Activation,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 5>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (inputs, dout, (x, w, v, h, s, act)) = unpack(ops, grads);
        let need_dx = inputs[0].is_some();
        let values = by_dtype!(x.dtype(), "band_dense_head", |T| {
            let [x, w, v, h, dout] = [&x, &w, &v, &h, &dout].map(T::slice);
            let g = dense_head_backward(x, w, v, h, dout, s, act, need_dx);
            [
                g.dx.map(|dx| T::tensor(dx, [s.groups, s.rows, s.inputs])),
                Some(T::tensor(g.dw, [s.groups, s.inputs, s.outputs])),
                Some(T::tensor(g.db, [s.groups, 1, s.outputs])),
                Some(T::tensor(g.dv, [s.groups, s.outputs, 1])),
                Some(T::tensor(g.dc, [s.groups, 1, 1])),
            ]
        });
        register(grads, inputs, values);
    }
}

pub(super) fn forward_autodiff<C: CheckpointStrategy>(
    operands: [FloatTensor<Autodiff<Flex, C>>; 5],
    act: Activation,
) -> FloatTensor<Autodiff<Flex, C>> {
    let prep = HeadBackward
        .prepare::<C>(operands.each_ref().map(|t| t.node()))
        .compute_bound()
        .stateful();
    let o = Operands::new(operands.map(|t| t.into_primitive()));
    let (h, out) = o.forward(act);
    match prep {
        OpsKind::Tracked(prep) => prep.finish((o.x, o.w, o.v, h, o.shape, act), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    /// The fused op and two band dense layers agree in value and in every gradient.
    #[test]
    fn fused_matches_two_layers_with_gradients() {
        let device = Device::flex().autodiff();
        let t = |dims: [usize; 3]| {
            Tensor::<3>::random(dims, Distribution::Default, &device).require_grad()
        };
        let (x, w, b) = (t([3, 9, 5]), t([3, 5, 4]), t([3, 1, 4]));
        let (v, c) = (t([3, 4, 1]), t([3, 1, 1]));
        let r = Tensor::<3>::random([3, 9, 1], Distribution::Default, &device);
        let fused = band_dense_head(
            x.clone(),
            [w.clone(), b.clone()],
            [v.clone(), c.clone()],
            Activation::Tanh,
        );
        let hidden = band_dense(x.clone(), w.clone(), b.clone(), Activation::Tanh);
        let plain = band_dense(hidden, v.clone(), c.clone(), Activation::Identity);
        fused
            .to_data()
            .assert_approx_eq::<f32>(&plain.to_data(), Tolerance::absolute(1e-5));
        let gf = (fused * r.clone()).sum().backward();
        let gp = (plain * r).sum().backward();
        for t in [&x, &w, &b, &v, &c] {
            t.grad(&gf)
                .expect("fused gradient")
                .to_data()
                .assert_approx_eq::<f32>(
                    &t.grad(&gp).expect("two-layer gradient").to_data(),
                    Tolerance::absolute(1e-4),
                );
        }
    }

    /// `linear_head` and burn's two `Linear`s (the head without bias, as attention scores
    /// are) agree in value and in the gradients of the input and every parameter.
    #[test]
    fn linear_head_matches_two_linears_with_gradients() {
        use burn::nn::LinearConfig;
        let device = Device::flex().autodiff();
        device.seed(3);
        let layer = LinearConfig::new(6, 5).init(&device);
        let head = LinearConfig::new(5, 1).with_bias(false).init(&device);
        let x = Tensor::<2>::random([11, 6], Distribution::Default, &device).require_grad();
        let r = Tensor::<2>::random([11, 1], Distribution::Default, &device);
        let fused = linear_head(&layer, &head, x.clone(), Activation::Tanh);
        let plain = head.forward(layer.forward(x.clone()).tanh());
        fused
            .to_data()
            .assert_approx_eq::<f32>(&plain.to_data(), Tolerance::absolute(1e-5));
        let gf = (fused * r.clone()).sum().backward();
        let gp = (plain * r).sum().backward();
        let bias = layer.bias.as_ref().expect("a bias");
        let pairs = [
            (x.grad(&gf), x.grad(&gp)),
            (layer.weight.grad(&gf), layer.weight.grad(&gp)),
            (
                bias.grad(&gf).map(|g| g.reshape([1, 5])),
                bias.grad(&gp).map(|g| g.reshape([1, 5])),
            ),
            (head.weight.grad(&gf), head.weight.grad(&gp)),
        ];
        for (k, (f, p)) in pairs.into_iter().enumerate() {
            f.unwrap_or_else(|| panic!("fused gradient {k}"))
                .to_data()
                .assert_approx_eq::<f32>(
                    &p.expect("composed gradient").to_data(),
                    Tolerance::absolute(1e-4),
                );
        }
    }
}
