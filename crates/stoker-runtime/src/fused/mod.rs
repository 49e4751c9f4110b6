//! Fused CPU ops: a layer's whole forward and its hand-written backward run as one op on the
//! host (stoker-kernels), where burn's CPU backend would run a dozen small ops, each through
//! autodiff, with bf16 widened to f32 before every matmul. They apply on the `flex` device in
//! f32 and bf16; on every other device and dtype the models compose burn ops as before, so the
//! GPU paths are unchanged.

mod adam;
mod attend;
mod cast;
mod conv;
mod dense;
mod dense_head;
mod fir;
mod flex;
mod layer;
mod lstm;
mod pool;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::FlexTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, DispatchDevice, Flex, backend_extension, tensor::FloatTensor,
};
use burn::prelude::*;
use burn::tensor::DType;

pub use adam::{adam_applies, adam_step};
pub use attend::attend;
pub use cast::cast;
pub use conv::conv2d;
pub use dense::{band_dense, linear};
pub use dense_head::{band_dense_head, linear_head};
pub use fir::fir;
pub use lstm::lstm_sequence;
pub use pool::max_pool2x2;
pub use stoker_kernels::adam::AdamStep;
pub use stoker_kernels::dense::Activation;

/// The ops stoker implements itself on the CPU backend, with autodiff.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: burn::backend::Backend {
    /// act(x·w + b) per group: x [G, N, K], w [G, K, M], b [G, 1, M] → [G, N, M].
    fn band_dense(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        activation: u8,
    ) -> FloatTensor<Self>;

    /// act(x·w + b)·v + c per group: x [G, N, K], w [G, K, M], b [G, 1, M], v [G, M, 1],
    /// c [G, 1, 1] → [G, N, 1].
    fn band_dense_head(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        v: FloatTensor<Self>,
        c: FloatTensor<Self>,
        activation: u8,
    ) -> FloatTensor<Self>;

    /// An LSTM over a sequence from a zero state: x [T, B, D], wx [D, 4H], bias [4H],
    /// wh [H, 4H] → h [T, B, H].
    fn lstm_sequence(
        x: FloatTensor<Self>,
        wx: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        wh: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Σ_t a[b, t]·h[t, b, :]: a [B, T], h [T, B, H] → [B, H].
    fn attend(a: FloatTensor<Self>, h: FloatTensor<Self>) -> FloatTensor<Self>;

    /// relu?(conv2d(x, w) + b), stride 1, zero padding: x [B, C, H, W], w [Cout, C, KH, KW],
    /// b [Cout] → [B, Cout, H + 2·pad_h − KH + 1, W + 2·pad_w − KW + 1].
    fn conv2d(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        pad_h: usize,
        pad_w: usize,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// 2×2 max pooling, stride 2: [B, C, H, W] → [B, C, H/2, W/2].
    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// One Adam step, f32: (param, moment_1, moment_2) updated from `grad`.
    fn adam_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// x (f32 or bf16) as bf16 when `to_bf16`, else as f32.
    fn cast_float(x: FloatTensor<Self>, to_bf16: bool) -> FloatTensor<Self>;

    /// x [B, 1, L] through every filter of w [C, 1, T] → [B, C, L − T + 1], f32.
    fn fir(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Whether the fused ops serve tensors of `dtype` on `device`.
pub fn applies(device: &Device, dtype: DType) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    ) && matches!(dtype, DType::F32 | DType::BF16)
}

impl FusedOps for Flex {
    fn band_dense(x: FlexTensor, w: FlexTensor, b: FlexTensor, activation: u8) -> FlexTensor {
        dense::forward_flex(x, w, b, Activation::from_code(activation))
    }

    fn band_dense_head(
        x: FlexTensor,
        w: FlexTensor,
        b: FlexTensor,
        v: FlexTensor,
        c: FlexTensor,
        activation: u8,
    ) -> FlexTensor {
        dense_head::forward_flex([x, w, b, v, c], Activation::from_code(activation))
    }

    fn lstm_sequence(
        x: FlexTensor,
        wx: FlexTensor,
        bias: FlexTensor,
        wh: FlexTensor,
    ) -> FlexTensor {
        lstm::forward_flex(x, wx, bias, wh)
    }

    fn attend(a: FlexTensor, h: FlexTensor) -> FlexTensor {
        attend::forward_flex(a, h)
    }

    fn conv2d(
        x: FlexTensor,
        w: FlexTensor,
        b: FlexTensor,
        pad_h: usize,
        pad_w: usize,
        relu: bool,
    ) -> FlexTensor {
        conv::forward_flex(x, w, b, [pad_h, pad_w], relu)
    }

    fn max_pool2x2(x: FlexTensor) -> FlexTensor {
        pool::forward_flex(x)
    }

    fn adam_step(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        step: AdamStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        adam::step_flex(param, grad, moment_1, moment_2, step)
    }

    fn cast_float(x: FlexTensor, to_bf16: bool) -> FlexTensor {
        cast::forward_flex(x, to_bf16)
    }

    fn fir(x: FlexTensor, w: FlexTensor) -> FlexTensor {
        fir::forward_flex(x, w)
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn band_dense(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        activation: u8,
    ) -> FloatTensor<Self> {
        dense::forward_autodiff::<C>(x, w, b, Activation::from_code(activation))
    }

    fn band_dense_head(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        v: FloatTensor<Self>,
        c: FloatTensor<Self>,
        activation: u8,
    ) -> FloatTensor<Self> {
        dense_head::forward_autodiff::<C>([x, w, b, v, c], Activation::from_code(activation))
    }

    fn lstm_sequence(
        x: FloatTensor<Self>,
        wx: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        wh: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        lstm::forward_autodiff::<C>(x, wx, bias, wh)
    }

    fn attend(a: FloatTensor<Self>, h: FloatTensor<Self>) -> FloatTensor<Self> {
        attend::forward_autodiff::<C>(a, h)
    }

    fn conv2d(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        pad_h: usize,
        pad_w: usize,
        relu: bool,
    ) -> FloatTensor<Self> {
        conv::forward_autodiff::<C>(x, w, b, [pad_h, pad_w], relu)
    }

    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        pool::forward_autodiff::<C>(x)
    }

    /// Optimizers step the inner (untracked) tensors; this serves a caller holding tracked
    /// ones, whose update is never differentiated.
    fn adam_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (p, m, v) = adam::step_flex(
            Self::inner(param),
            Self::inner(grad),
            Self::inner(moment_1),
            Self::inner(moment_2),
            step,
        );
        (
            Self::from_inner(p),
            Self::from_inner(m),
            Self::from_inner(v),
        )
    }

    fn cast_float(x: FloatTensor<Self>, to_bf16: bool) -> FloatTensor<Self> {
        cast::forward_autodiff::<C>(x, to_bf16)
    }

    fn fir(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        fir::forward_autodiff::<C>(x, w)
    }
}
