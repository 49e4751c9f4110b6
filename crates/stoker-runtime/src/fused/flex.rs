//! Moving flex tensors to and from the host slices the kernels take, and handing gradients
//! back to autodiff.

use burn::backend::Flex;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::Ops;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{DType, Shape};
use burn_std::Bytes;
use stoker_kernels::bf16;
use stoker_kernels::scalar::Scalar;

/// The tensor itself when it is already contiguous from offset 0, else a contiguous copy.
pub fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        t
    } else {
        t.to_contiguous()
    }
}

/// An element type the fused ops compute in, with its flex dtype.
pub trait Host: Scalar + bytemuck::Pod + burn::tensor::Element {
    const DTYPE: DType;

    /// The values of a contiguous tensor of this dtype. The ops call it only on tensors made
    /// contiguous and dispatched on their dtype (`by_dtype!`), where it cannot fail.
    fn slice(t: &FlexTensor) -> &[Self] {
        t.as_slice::<Self>()
            .expect("invariant: a contiguous tensor of the op's dtype")
    }

    fn tensor(values: Vec<Self>, shape: impl Into<Shape>) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(values),
            Layout::contiguous(shape.into()),
            Self::DTYPE,
        )
    }
}

impl Host for f32 {
    const DTYPE: DType = DType::F32;
}

impl Host for bf16 {
    const DTYPE: DType = DType::BF16;
}

/// Runs `$body` with `$t` the host type of `$dtype` (f32 or bf16); other dtypes never reach
/// the fused ops: every public entry point checks `super::applies` and its operands' dtypes
/// first, and returns `None` or composes burn ops instead.
macro_rules! by_dtype {
    ($dtype:expr, $op:expr, |$t:ident| $body:expr) => {
        match $dtype {
            burn::tensor::DType::F32 => {
                type $t = f32;
                $body
            }
            burn::tensor::DType::BF16 => {
                type $t = stoker_kernels::bf16;
                $body
            }
            other => unreachable!("{}: dtype {other:?} never reaches the fused ops", $op),
        }
    };
}
pub(crate) use by_dtype;

/// What every fused op's backward starts from: its inputs' nodes (None where not tracked), the
/// gradient of its output (contiguous) and the state its forward saved.
pub fn unpack<S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
) -> ([Option<NodeId>; N], FlexTensor, S) {
    let dout = contiguous(grads.consume::<Flex>(&ops.node));
    (ops.parents.map(|p| p.map(|node| node.id)), dout, ops.state)
}

/// Hands each computed gradient to the input it belongs to (inputs without a node are not
/// tracked and get none).
pub fn register<const N: usize>(
    grads: &mut Gradients,
    inputs: [Option<NodeId>; N],
    values: [Option<FlexTensor>; N],
) {
    for (input, value) in inputs.into_iter().zip(values) {
        if let (Some(id), Some(value)) = (input, value) {
            grads.register::<Flex>(id, value);
        }
    }
}
