//! What the fused conv2d and band dense ops share: y = act(x ⊛ w + b) from one forward kernel
//! call, and (dx, dw, db) from one backward kernel call that reads x, w, y and dy.

use std::fmt::Debug;
use std::marker::PhantomData;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex, tensor::FloatTensor};
use burn::tensor::Shape;

use super::flex::{Host, by_dtype, contiguous, register, unpack};

/// (dx when the backward was asked for it, dw, db).
pub(super) type LayerGradients<T> = (Option<Vec<T>>, Vec<T>, Vec<T>);

/// A layer's sizes and activation, read off its operands: all its kernels need besides them.
pub(super) trait Layer: Copy + Send + Debug + 'static {
    /// The op's name in messages.
    const OP: &'static str;

    fn forward<T: Host>(self, x_w_b: [&[T]; 3]) -> Vec<T>;

    fn backward<T: Host>(self, x_w_y_dy: [&[T]; 4], need_dx: bool) -> LayerGradients<T>;

    fn output_dims(self) -> Shape;

    /// The dims of x, w and b, which their gradients take.
    fn operand_dims(self) -> [Shape; 3];
}

/// y from contiguous operands.
fn forward<L: Layer>(layer: L, x: &FlexTensor, w: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    by_dtype!(x.dtype(), L::OP, |T| T::tensor(
        layer.forward([T::slice(x), T::slice(w), T::slice(b)]),
        layer.output_dims(),
    ))
}

/// The op without autodiff; `layer_of` reads the layer off the contiguous x and w.
pub(super) fn forward_flex<L: Layer>(
    x: FlexTensor,
    w: FlexTensor,
    b: FlexTensor,
    layer_of: impl FnOnce(&FlexTensor, &FlexTensor) -> L,
) -> FlexTensor {
    let (x, w, b) = (contiguous(x), contiguous(w), contiguous(b));
    forward(layer_of(&x, &w), &x, &w, &b)
}

#[derive(Debug)]
struct LayerBackward<L>(PhantomData<L>);

impl<L: Layer> Backward<Flex, 3> for LayerBackward<L> {
    /// Input, weight, output (the activation's derivative reads it) and the layer.
    type State = (FlexTensor, FlexTensor, FlexTensor, L);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (inputs, dy, (x, w, y, layer)) = unpack(ops, grads);
        let need_dx = inputs[0].is_some();
        let [x_dims, w_dims, b_dims] = layer.operand_dims();
        let values = by_dtype!(x.dtype(), L::OP, |T| {
            let operands = [&x, &w, &y, &dy].map(T::slice);
            let (dx, dw, db) = layer.backward(operands, need_dx);
            [
                dx.map(|v| T::tensor(v, x_dims)),
                Some(T::tensor(dw, w_dims)),
                Some(T::tensor(db, b_dims)),
            ]
        });
        register(grads, inputs, values);
    }
}

/// The op with autodiff; `layer_of` reads the layer off the contiguous x and w.
pub(super) fn forward_autodiff<L: Layer, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    w: FloatTensor<Autodiff<Flex, C>>,
    b: FloatTensor<Autodiff<Flex, C>>,
    layer_of: impl FnOnce(&FlexTensor, &FlexTensor) -> L,
) -> FloatTensor<Autodiff<Flex, C>> {
    let prep = LayerBackward::<L>(PhantomData)
        .prepare::<C>([x.node(), w.node(), b.node()])
        .compute_bound()
        .stateful();
    let (xp, wp, bp) = (
        contiguous(x.into_primitive()),
        contiguous(w.into_primitive()),
        contiguous(b.into_primitive()),
    );
    let layer = layer_of(&xp, &wp);
    let y = forward(layer, &xp, &wp, &bp);
    match prep {
        OpsKind::Tracked(prep) => prep.finish((xp, wp, y.clone(), layer), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}
