//! # stoker-runtime — the machinery the models run on
//!
//! Everything between the model definitions (stoker-zoo) and the host kernels
//! (stoker-kernels) that is not itself a model: which device a run uses, in which precision it
//! computes, the fused CPU ops that replace chains of small burn ops, and how host batches
//! become device tensors and come back. The zoo and the stages build on it; it knows no model
//! and no training loop.
//!
//! Principal items:
//! - [`device`]: `--device` names → burn's [`Device`](burn::prelude::Device) ([`device::open`]),
//!   the fusion switch, [`device::sync`];
//! - [`Autocast`]: the mixed-precision policy every model applies the same way;
//! - [`fused`]: the `FusedOps` burn backend extension (dense, LSTM, conv, pooling, Adam) and
//!   the wrappers that use it where it applies and compose burn ops elsewhere;
//! - [`batch`]: host buffers ↔ tensors ([`batch::inputs_tensor`], [`batch::try_to_host`]) and
//!   [`batch::fitting_batch`], which halves a batch the device cannot hold;
//! - [`Error`]: what these can fail with, out of memory recognised as [`Error::OutOfMemory`].
//!
//! ```
//! use std::cell::Cell;
//! use stoker_runtime::batch::{fitting_batch, inputs_tensor, try_to_host};
//! use stoker_runtime::{Autocast, device};
//!
//! let device = device::open("cpu", true)?;
//! let ac = Autocast::F32;
//! let batch = Cell::new(4);
//! let sums = fitting_batch(&batch, "example", |b| {
//!     let x = inputs_tensor(vec![1.0; b * 3 * 2], [b, 3, 2], &device);
//!     try_to_host(ac.full(x).sum_dim(1))
//! })?;
//! assert_eq!(sums, vec![3.0; 4 * 2]);
//! # Ok::<(), stoker_runtime::Error>(())
//! ```

pub mod batch;
pub mod device;
pub mod error;
pub mod fused;
pub mod precision;

pub use error::{Error, Result};
pub use precision::Autocast;
