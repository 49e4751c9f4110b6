//! An LSTM layer over a whole sequence as one fused op with its own backward: the input
//! projections and the weight gradients are one matmul each per sequence, the recurrence one
//! matmul per step, the gate arithmetic one vectorised pass per step (stoker-kernels).

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Dispatch, Flex, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::DType;
use stoker_kernels::bf16;
use stoker_kernels::lstm::{
    LstmGrads, LstmTape, LstmWeights, MatmulType, lstm_backward, lstm_backward_bf16, lstm_forward,
    lstm_forward_bf16,
};
use stoker_kernels::scalar::Scalar;

use super::FusedOps;
use super::flex::{Host, contiguous, register, unpack};

/// x [T, B, D] (time-major) through an LSTM from a zero state → h [T, B, H]; `wx` [D, 4H],
/// `bias` [4H], `wh` [H, 4H], gates i, f, g, o. None when the fused op does not apply here.
pub fn lstm_sequence(
    x: &Tensor<3>,
    wx: &Tensor<2>,
    bias: &Tensor<1>,
    wh: &Tensor<2>,
) -> Option<Tensor<3>> {
    let dtype = x.dtype();
    let same = [wx.dtype(), bias.dtype(), wh.dtype()]
        .iter()
        .all(|&d| d == dtype);
    if !(same && super::applies(&x.device(), dtype)) {
        return None;
    }
    Some(Tensor::from_dispatch(
        <Dispatch as FusedOps>::lstm_sequence(
            x.clone().into_dispatch(),
            wx.clone().into_dispatch(),
            bias.clone().into_dispatch(),
            wh.clone().into_dispatch(),
        ),
    ))
}

/// The operands on the host: x as given (bf16 stays bf16 for the kernels' bf16 products), the
/// weights in f32 (bf16 values widen exactly; the kernels round them back).
#[derive(Debug)]
struct Operands {
    /// [T, B, D], contiguous, f32 or bf16.
    x: FlexTensor,
    wx: Vec<f32>,
    bias: Vec<f32>,
    wh: Vec<f32>,
    steps: usize,
    batch: usize,
    d_in: usize,
    hidden: usize,
    dtype: DType,
}

impl Operands {
    fn new(x: FlexTensor, wx: FlexTensor, bias: FlexTensor, wh: FlexTensor) -> Self {
        let dims = x.layout().shape().clone();
        let (wx_dims, wh_dims) = (wx.layout().shape().clone(), wh.layout().shape().clone());
        assert_eq!(wx_dims[0], dims[2], "lstm: input width differs from wx");
        assert_eq!(wh_dims[1], 4 * wh_dims[0], "lstm: wh must be [H, 4H]");
        Self {
            dtype: x.dtype(),
            x: contiguous(x),
            wx: widen(wx),
            bias: widen(bias),
            wh: widen(wh),
            steps: dims[0],
            batch: dims[1],
            d_in: dims[2],
            hidden: wh_dims[0],
        }
    }

    fn weights(&self) -> LstmWeights<'_> {
        LstmWeights {
            wx: &self.wx,
            bias: &self.bias,
            wh: &self.wh,
            d_in: self.d_in,
            hidden: self.hidden,
        }
    }

    /// A result in the operands' dtype.
    fn tensor(&self, values: Vec<f32>, shape: &[usize]) -> FlexTensor {
        match self.dtype {
            DType::BF16 => bf16::tensor(bf16::narrow(values), shape.to_vec()),
            _ => f32::tensor(values, shape.to_vec()),
        }
    }

    fn forward(&self, keep_tape: bool) -> (FlexTensor, Option<LstmTape>) {
        let (w, shape) = (self.weights(), [self.steps, self.batch, self.hidden]);
        if self.dtype == DType::BF16 {
            let x = bf16::slice(&self.x);
            let (h, tape) = lstm_forward_bf16(x, self.steps, self.batch, &w, keep_tape);
            return (bf16::tensor(h, shape), tape);
        }
        let x = f32::slice(&self.x);
        let (h, tape) = lstm_forward(x, self.steps, self.batch, &w, MatmulType::F32, keep_tape);
        (f32::tensor(h.into_vec(), shape), tape)
    }

    fn backward(&self, dh: &[f32], tape: &LstmTape) -> LstmGrads {
        let w = self.weights();
        if self.dtype == DType::BF16 {
            return lstm_backward_bf16(bf16::slice(&self.x), dh, tape, &w);
        }
        lstm_backward(f32::slice(&self.x), dh, tape, &w, MatmulType::F32)
    }
}

fn widen(t: FlexTensor) -> Vec<f32> {
    let t = contiguous(t);
    match t.dtype() {
        DType::F32 => f32::slice(&t).to_vec(),
        DType::BF16 => bf16::widen(bf16::slice(&t)),
        // `lstm_sequence` admits f32 and bf16 only (`super::applies`).
        other => unreachable!("lstm: dtype {other:?} never reaches the fused op"),
    }
}

pub(super) fn forward_flex(
    x: FlexTensor,
    wx: FlexTensor,
    bias: FlexTensor,
    wh: FlexTensor,
) -> FlexTensor {
    Operands::new(x, wx, bias, wh).forward(false).0
}

#[derive(Debug, Clone)]
struct LstmBackward;

/// What the backward reads; shared, not copied, when autodiff clones its state.
#[derive(Debug, Clone)]
struct Saved(Arc<(Operands, LstmTape)>);

impl Backward<Flex, 4> for LstmBackward {
    type State = Saved;

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (inputs, dh, saved) = unpack(ops, grads);
        let dh = widen(dh);
        let (o, tape) = &*saved.0;
        let g = o.backward(&dh, tape);
        let four = 4 * o.hidden;
        let values = [
            o.tensor(g.dx, &[o.steps, o.batch, o.d_in]),
            o.tensor(g.dwx, &[o.d_in, four]),
            o.tensor(g.dbias, &[four]),
            o.tensor(g.dwh, &[o.hidden, four]),
        ];
        register(grads, inputs, values.map(Some));
    }
}

pub(super) fn forward_autodiff<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    wx: FloatTensor<Autodiff<Flex, C>>,
    bias: FloatTensor<Autodiff<Flex, C>>,
    wh: FloatTensor<Autodiff<Flex, C>>,
) -> FloatTensor<Autodiff<Flex, C>> {
    {
        let nodes = [x.node(), wx.node(), bias.node(), wh.node()];
        let operands = Operands::new(
            x.into_primitive(),
            wx.into_primitive(),
            bias.into_primitive(),
            wh.into_primitive(),
        );
        match LstmBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (h, tape) = operands.forward(true);
                let tape = tape.expect("the forward keeps its tape when asked");
                prep.finish(Saved(Arc::new((operands, tape))), h)
            }
            OpsKind::UnTracked(prep) => prep.finish(operands.forward(false).0),
        }
    }
}
