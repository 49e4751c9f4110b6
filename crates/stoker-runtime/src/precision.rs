//! Mixed precision, one mechanism for every model: f32 master weights are cast to the low type
//! for the forward (the cast is differentiable, so gradients reach the f32 masters), the models
//! cast activations to the low type before matmul / conv / LSTM ops and back to f32 before
//! softmax, normalisation and the loss.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;
use stoker_artifact::Precision;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autocast {
    low: Option<FloatDType>,
}

impl Autocast {
    pub const F32: Self = Self { low: None };

    pub fn new(precision: Precision) -> Self {
        Self {
            low: match precision {
                Precision::F32 => None,
                Precision::Bf16Mixed => Some(FloatDType::BF16),
                Precision::F16Mixed => Some(FloatDType::F16),
            },
        }
    }

    /// The policy `precision` asks for, or f32 with a message when `device` cannot compute in
    /// the low type (wgpu adapters without shader-f16, WGSL without bf16).
    pub fn for_device(precision: Precision, device: &Device) -> Self {
        let wanted = Self::new(precision);
        match wanted.low {
            Some(dtype) if !device.supports_dtype(dtype) => {
                eprintln!(
                    "note: the device does not support {dtype:?}: {} falls back to f32",
                    precision.name()
                );
                Self::F32
            }
            _ => wanted,
        }
    }

    pub fn is_mixed(&self) -> bool {
        self.low.is_some()
    }

    /// An activation entering a matmul / conv / recurrent op.
    pub fn low<const D: usize>(&self, t: Tensor<D>) -> Tensor<D> {
        match self.low {
            Some(dtype) => crate::fused::cast(t, dtype),
            None => t,
        }
    }

    /// An activation leaving for a precision-sensitive op (softmax, normalisation, loss).
    pub fn full<const D: usize>(&self, t: Tensor<D>) -> Tensor<D> {
        match self.low {
            Some(_) => crate::fused::cast(t, FloatDType::F32),
            None => t,
        }
    }

    /// The module with every float parameter cast to the low type (differentiably).
    pub fn weights<M: Module>(&self, module: M) -> M {
        struct Cast(FloatDType);
        impl ModuleMapper for Cast {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let dtype = self.0;
                param.map(|t| crate::fused::cast(t, dtype))
            }
        }
        match self.low {
            Some(dtype) => module.map(&mut Cast(dtype)),
            None => module,
        }
    }
}
