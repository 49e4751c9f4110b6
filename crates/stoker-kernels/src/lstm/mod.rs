//! A fused LSTM layer over a whole sequence, with its own backward.
//!
//! The layer is the one of `stoker-zoo`'s `StepLstm` (and PyTorch's `nn.LSTM`): gates i, f, g, o
//! stacked along the 4H axis, weights laid out as burn's `Linear` holds them (`wx` [D, 4H] with
//! a bias, `wh` [H, 4H] without), zero initial state. Per step t
//!
//! ```text
//! gates = x_t·wx + bias + h_{t−1}·wh,   i, f, o = σ(·), g = tanh(·)
//! c_t = f⊙c_{t−1} + i⊙g,                h_t = o⊙tanh(c_t)
//! ```
//!
//! Batch rows are independent through the recurrence, so each block of rows runs the whole
//! sequence on one thread: one parallel region a call, not a fork and join every step (which
//! cost 20–55 µs of a 100–180 µs step on the reference shape; against the per-step version,
//! medians of 8 paired rounds of `lstm_speed` on 2026-12-03: forward 1.4× faster in f32 and
//! bf16, forward + backward 1.2× in f32 and 1.4× in bf16).
//!
//! Forward: per step and per block of batch rows, the input and recurrent products into that
//! block's gate rows and then one fused, vectorised pass for the gate and cell arithmetic,
//! while those rows are in cache. Without a tape only one step's gates and two steps' cells are
//! kept.
//!
//! Backward: per step (in reverse) and per block of batch rows, the recurrent
//! gradient product, one fused pass writing the gate pre-activation gradients, the block's
//! share of dwx and dwh (accumulated per block, summed at the end) and its dx rows: the gate
//! gradients of only two steps are kept, and every product reads them while they are in cache.
//! Products with a transposed weight read a row-major copy of the transpose. In bf16 every
//! weight operand is packed for the kernel once a call ([`crate::gemm::PackedBf16`]), not once
//! a step and block. No allocation inside the step loops.
//!
//! With [`MatmulType::Bf16`] the matmul inputs (x, h, weights, gate gradients) are rounded to
//! bf16 and multiplied by [`crate::gemm::matmul_bf16`] with f32 accumulation; the gate and
//! cell arithmetic and the tape stay f32 (the bias gradient sums the f32 gate gradients, before
//! their rounding). The output h is the bf16 h_t the next step's product reads:
//! [`lstm_forward_bf16`] takes x and returns h in bf16, [`lstm_forward`] widens h back.
//!
//! The large buffers (tape, gate gradients, bf16 copies) are recycled through a small
//! process-wide pool: on the reference shape a fresh 50 MB buffer per call spent about a third
//! of the time in page faults. [`lstm_release_buffers`] empties the pool.

use half::bf16;

use crate::activation::{sigmoid, tanh};
use crate::gemm::{Mat, MatMut, transposed};
use crate::scalar::{Scalar, round_bf16};
use crate::size::expect_len;

/// The element type the layer's matrix products take their inputs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulType {
    F32,
    /// Inputs rounded to bf16, products accumulated in f32.
    Bf16,
}

/// One layer's parameters, laid out as burn's `Linear` holds them.
#[derive(Debug, Clone, Copy)]
pub struct LstmWeights<'a> {
    /// Input → gates, [d_in, 4·hidden] row-major.
    pub wx: &'a [f32],
    /// [4·hidden].
    pub bias: &'a [f32],
    /// Hidden → gates, [hidden, 4·hidden] row-major.
    pub wh: &'a [f32],
    pub d_in: usize,
    pub hidden: usize,
}

impl LstmWeights<'_> {
    /// Panics unless the weights have the layer's shapes (sizes computed without overflow).
    fn check(&self) {
        let (d, h) = (self.d_in, self.hidden);
        expect_len("lstm: wx must be [d_in, 4H]", self.wx.len(), &[d, 4, h]);
        expect_len("lstm: bias must be [4H]", self.bias.len(), &[4, h]);
        expect_len("lstm: wh must be [H, 4H]", self.wh.len(), &[h, 4, h]);
    }
}

/// What the backward needs, kept from the forward: the activated gates and the cell states, all
/// f32. The outputs h are not kept: the backward rebuilds them as o⊙tanh(c), which it computes
/// anyway. Dropping the tape returns its buffers to the pool.
#[derive(Clone)]
pub struct LstmTape {
    steps: usize,
    batch: usize,
    hidden: usize,
    /// σ(i), σ(f), tanh(g), σ(o): [T, B, 4H].
    gates: Buf<f32>,
    /// c_t: [T, B, H].
    cells: Buf<f32>,
}

impl std::fmt::Debug for LstmTape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LstmTape")
            .field("steps", &self.steps)
            .field("batch", &self.batch)
            .field("hidden", &self.hidden)
            .finish_non_exhaustive()
    }
}

impl LstmTape {
    pub fn steps(&self) -> usize {
        self.steps
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Activated gates [T, B, 4H], i, f, g, o along the last axis.
    pub fn gates(&self) -> &[f32] {
        &self.gates
    }

    /// Cell states [T, B, H].
    pub fn cells(&self) -> &[f32] {
        &self.cells
    }
}

/// Gradients of the loss with respect to the layer's input and parameters.
#[derive(Debug, Clone)]
pub struct LstmGrads {
    /// [T, B, D].
    pub dx: Vec<f32>,
    /// [D, 4H].
    pub dwx: Vec<f32>,
    /// [4H].
    pub dbias: Vec<f32>,
    /// [H, 4H].
    pub dwh: Vec<f32>,
}

/// A layer's output h, [steps, batch, hidden]: a pooled buffer, returned to the pool on drop
/// (a caller that only reads it, say to round it to bf16, spares the next call a fresh
/// allocation and its page faults), or taken with `into_vec`.
pub struct LstmOutput(Buf<f32>);

impl LstmOutput {
    pub fn into_vec(self) -> Vec<f32> {
        self.0.into_vec()
    }
}

impl std::ops::Deref for LstmOutput {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

/// Runs the layer over `x` ([steps, batch, d_in], time-major, contiguous) from a zero state and
/// returns every step's output h ([steps, batch, hidden], time-major), with the tape for
/// [`lstm_backward`] when `keep_tape`. With [`MatmulType::Bf16`] h is rounded to bf16 (the
/// next step's product reads it so), then widened.
pub fn lstm_forward(
    x: &[f32],
    steps: usize,
    batch: usize,
    w: &LstmWeights,
    ty: MatmulType,
    keep_tape: bool,
) -> (LstmOutput, Option<LstmTape>) {
    match ty {
        MatmulType::F32 => {
            let (h, tape) = forward::<f32>(x, steps, batch, w, keep_tape, None);
            (LstmOutput(h), tape)
        }
        MatmulType::Bf16 => {
            let (h, tape) = forward::<bf16>(&bf16::lower(x), steps, batch, w, keep_tape, None);
            let mut wide = Buf::<f32>::take(h.len());
            bf16::widen_into(&h, &mut wide);
            (LstmOutput(wide), tape)
        }
    }
}

/// [`lstm_forward`] with bf16 products for a caller that holds x in bf16 and wants h in bf16:
/// no widening of x for the kernels to round it back, no f32 copy of h.
pub fn lstm_forward_bf16(
    x: &[bf16],
    steps: usize,
    batch: usize,
    w: &LstmWeights,
    keep_tape: bool,
) -> (Vec<bf16>, Option<LstmTape>) {
    let (h, tape) = forward::<bf16>(x, steps, batch, w, keep_tape, None);
    (h.into_vec(), tape)
}

/// The backward of [`lstm_forward`]: `dh` is the gradient of the loss with respect to every
/// step's output h_t ([steps, batch, hidden]); `x`, `w` and `ty` are the forward's.
pub fn lstm_backward(
    x: &[f32],
    dh: &[f32],
    tape: &LstmTape,
    w: &LstmWeights,
    ty: MatmulType,
) -> LstmGrads {
    match ty {
        MatmulType::F32 => backward::<f32>(x, dh, tape, w, None),
        MatmulType::Bf16 => backward::<bf16>(&bf16::lower(x), dh, tape, w, None),
    }
}

/// The backward of [`lstm_forward_bf16`], from its bf16 input.
pub fn lstm_backward_bf16(x: &[bf16], dh: &[f32], tape: &LstmTape, w: &LstmWeights) -> LstmGrads {
    backward::<bf16>(x, dh, tape, w, None)
}

/// Frees the buffers the layer keeps for reuse between calls.
pub fn lstm_release_buffers() {
    f32::pool()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    bf16::pool()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
}
/// A matmul input type (f32 as is, or bf16), with what the layer needs beyond [`Scalar`].
trait Elem: Scalar {
    fn from_f32(v: f32) -> Self;
    /// `src` in this type: borrowed for f32, converted (into a pooled buffer) for bf16.
    fn lower(src: &[f32]) -> Lowered<'_, Self>;
}

enum Lowered<'a, E: Poolable> {
    Borrowed(&'a [E]),
    Owned(Buf<E>),
}

impl<E: Poolable> std::ops::Deref for Lowered<'_, E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        match self {
            Self::Borrowed(s) => s,
            Self::Owned(b) => b,
        }
    }
}

impl Elem for f32 {
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
    fn lower(src: &[f32]) -> Lowered<'_, Self> {
        Lowered::Borrowed(src)
    }
}

impl Elem for bf16 {
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        round_bf16(v)
    }
    fn lower(src: &[f32]) -> Lowered<'_, Self> {
        let mut out = Buf::take(src.len());
        convert(src, &mut out);
        Lowered::Owned(out)
    }
}

/// Calls `$body` compiled for AVX-512 when the CPU has every feature that build enables
/// (`cpu::avx512_wide`), else for AVX2 and FMA (`cpu::avx2_fma`), else the baseline build of it
/// (the pattern of `activation::multiversion!`, for generic functions). Without the FMA build
/// an AVX2 CPU would run the baseline, where every `mul_add` is a call to `fmaf` (through a
/// function pointer chosen at run time), so the loops stay scalar.
macro_rules! dispatch {
    ($body:ident::<$e:ty>($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if $crate::cpu::avx512_wide() {
                // SAFETY: `avx512_wide` detected every feature `wide` is compiled for.
                return unsafe { $body::wide::<$e>($($arg),*) };
            }
            if $crate::cpu::avx2_fma() {
                // SAFETY: `avx2_fma` detected every feature `avx2` is compiled for.
                return unsafe { $body::avx2::<$e>($($arg),*) };
            }
        }
        $body::base::<$e>($($arg),*)
    }};
}

/// Defines `$name::base` (inlined body), `$name::wide` (the same, for AVX-512) and
/// `$name::avx2` (for AVX2 and FMA).
macro_rules! versions {
    (fn $name:ident<$e:ident: Elem>($($arg:ident: $ty:ty),*) $body:block) => {
        mod $name {
            use super::*;

            #[inline(always)]
            pub(super) fn base<$e: Elem>($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
            pub(super) unsafe fn wide<$e: Elem>($($arg: $ty),*) {
                base::<$e>($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn avx2<$e: Elem>($($arg: $ty),*) {
                base::<$e>($($arg),*)
            }
        }
    };
}

versions! {
    fn convert_impl<E: Elem>(src: &[f32], dst: &mut [E]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = E::from_f32(s);
        }
    }
}

fn convert<E: Elem>(src: &[f32], dst: &mut [E]) {
    assert_eq!(src.len(), dst.len());
    dispatch!(convert_impl::<E>(src, dst))
}

/// Lanes per block of the fused passes: one AVX-512 vector of f32. The passes load each block
/// into local arrays, compute on those and store them back, so the compiler needs no aliasing
/// proofs between the many slices to vectorise.
const LANES: usize = 16;

/// `s[at..at + width]` into a block (zero-padded when `width < LANES`).
#[inline(always)]
fn load(s: &[f32], at: usize, width: usize) -> [f32; LANES] {
    if width == LANES {
        s[at..at + LANES].try_into().expect("a full block")
    } else {
        let mut block = [0f32; LANES];
        block[..width].copy_from_slice(&s[at..at + width]);
        block
    }
}

/// The first `width` lanes of `block` into `s[at..]`, lowered to `E`.
#[inline(always)]
fn store<E: Elem>(s: &mut [E], at: usize, width: usize, block: &[f32; LANES]) {
    let mut low = [E::default(); LANES];
    for (l, &v) in low.iter_mut().zip(block) {
        *l = E::from_f32(v);
    }
    if width == LANES {
        s[at..at + LANES].copy_from_slice(&low);
    } else {
        s[at..at + width].copy_from_slice(&low[..width]);
    }
}

/// Row boundaries of `parts` blocks of `batch` rows (at most one block a row, at least one).
fn row_blocks(batch: usize, parts: usize) -> Vec<usize> {
    let parts = parts.clamp(1, batch.max(1));
    (0..=parts).map(|p| batch * p / parts).collect()
}

/// Per block of rows (`bounds`: row boundaries), its rows of every slot of a
/// [slots, batch, width] buffer.
fn block_rows<'a, T>(
    buf: &'a mut [T],
    batch: usize,
    width: usize,
    bounds: &[usize],
) -> Vec<Vec<&'a mut [T]>> {
    let mut blocks: Vec<Vec<&mut [T]>> = bounds.windows(2).map(|_| Vec::new()).collect();
    for slot in buf.chunks_exact_mut(batch * width) {
        let mut rest = slot;
        for (block, r) in blocks.iter_mut().zip(bounds.windows(2)) {
            let (rows, tail) = std::mem::take(&mut rest).split_at_mut((r[1] - r[0]) * width);
            block.push(rows);
            rest = tail;
        }
    }
    blocks
}

/// Runs every block on the rayon threads, the last on the calling thread: batch rows are
/// independent through the recurrence, so a whole sequence is one parallel region.
fn run_blocks<B: Send>(mut blocks: Vec<B>, run: &(impl Fn(B) + Sync)) {
    let Some(last) = blocks.pop() else { return };
    rayon::scope(|scope| {
        for block in blocks {
            scope.spawn(move |_| run(block));
        }
        run(last);
    });
}

/// How many blocks the fused passes split `batch` rows of `hidden` units into.
fn default_parts(batch: usize, hidden: usize) -> usize {
    // Below ~16k units a block costs less than waking a thread.
    if batch * hidden < 1 << 14 {
        1
    } else {
        rayon::current_num_threads().clamp(1, batch)
    }
}

mod backward;
mod forward;
#[cfg(test)]
mod tests;

use crate::recycled::{Buf, Poolable};
use backward::backward;
use forward::forward;
