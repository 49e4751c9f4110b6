//! CPU kernels behind stoker's fused model ops. Plain slices in, plain slices out: no tensor
//! library here, so every kernel is tested and benchmarked on its own.
//!
//! Principal items:
//! - [`gemm::Mat`] / [`gemm::MatMut`]: checked matrix views (every element inside its slice),
//!   and the products on them, [`gemm::matmul_f32`] and [`gemm::matmul_bf16`];
//! - the fused layers with their backward: [`dense`], [`conv`], [`lstm`], [`pool`], and the
//!   one-pass optimiser step [`adam::adam_step`], attention pooling over a time-major
//!   sequence [`attend`], a bank of FIR filters over rows of samples [`fir`];
//! - [`matvec`]: batch-1 products on weights packed for streaming reads (a real-time
//!   controller's per-sample step);
//! - [`roof`]: this core's measured f32 FMA and bf16 dot peaks, for benchmarks' share-of-peak
//!   figures;
//! - [`scalar::Scalar`]: the element types (f32, bf16) the layers are generic over;
//! - [`cpu`]: which instruction sets the kernels use; `STOKER_KERNELS_PORTABLE=1` forces the
//!   portable paths.
//!
//! Every public entry checks its operands' lengths against the shape it is given and panics
//! with a message naming the operand on a mismatch, as slice indexing does.
//!
//! ```
//! use stoker_kernels::gemm::{Mat, MatMut, matmul_f32};
//!
//! // [2, 3] · [3, 1]
//! let (a, b) = ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 0.0, -1.0]);
//! let mut c = [0.0f32; 2];
//! matmul_f32(
//!     MatMut::row_major(&mut c, 2, 1),
//!     Mat::row_major(&a, 2, 3),
//!     Mat::row_major(&b, 3, 1),
//!     false,
//! );
//! assert_eq!(c, [-2.0, -2.0]);
//! ```

pub mod activation;
pub mod adam;
pub mod attend;
pub mod conv;
pub mod cpu;
pub mod dense;
pub mod fir;
pub mod gemm;
pub mod lstm;
pub mod matvec;
pub mod pool;
mod recycled;
pub mod roof;
pub mod scalar;
mod size;
#[doc(hidden)]
pub mod testing;

pub use half::bf16;
