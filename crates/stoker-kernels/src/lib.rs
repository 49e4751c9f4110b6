//! CPU kernels behind stoker's fused model ops. Plain slices in, plain slices out: no tensor
//! library here, so every kernel is tested and benchmarked on its own.

pub mod activation;
pub mod adam;
pub mod conv;
pub mod dense;
pub mod gemm;
pub mod lstm;
pub mod pool;
pub mod scalar;
#[doc(hidden)]
pub mod testing;

pub use half::bf16;
