//! A model's parameters under the names and layouts of its PyTorch peer
//! (`bench/peers/models.py`), and back. Each architecture maps its own tensors (`export`
//! beside each model); this module holds what they share: the error type, the checked
//! name → tensor lookup used when loading, and the conversions of burn's layouts.
//!
//! Loading is as strict as PyTorch's `load_state_dict(strict=True)`: every tensor the model
//! needs must be there with its exact shape, and no other tensor may be.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::TensorData;
use stoker_artifact::{ArtifactError, NamedTensor};
use stoker_runtime::batch::try_to_host;

use crate::{Model, Network};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("tensor `{name}` is missing")]
    Missing { name: String },
    #[error("tensor `{name}` has shape {found:?}, the model needs {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}` is not a parameter of this model")]
    Unexpected { name: String },
    #[error("tensor `{name}` appears twice")]
    Duplicate { name: String },
    /// A tensor could not be read back from the device.
    #[error("reading `{name}` from the device: {source}")]
    Device {
        name: String,
        #[source]
        source: stoker_runtime::Error,
    },
    /// The weights file is unreadable or malformed (the error names it).
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// A tensor of `path` does not fit the model.
    #[error("{}: {source}", .path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<ExportError>,
    },
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

impl Model {
    /// Every parameter (and fixed buffer the peer registers) under its PyTorch name, in the
    /// peer's layout, sorted by name.
    pub fn pytorch_tensors(&self) -> Result<Vec<NamedTensor>> {
        let mut out = Tensors::default();
        match &self.net {
            Network::Cnn2d(m) => m.pytorch_tensors(&mut out)?,
            Network::LstmAttention(m) => m.pytorch_tensors(&mut out)?,
            Network::MultibandAnc(m) => m.pytorch_tensors(&mut out)?,
        }
        Ok(out.0.into_values().collect())
    }

    /// The inverse of [`Model::pytorch_tensors`]: this model (of the same spec) with its
    /// parameters replaced by `tensors`, which must match them name for name and shape for
    /// shape.
    pub fn load_pytorch_tensors(self, tensors: Vec<NamedTensor>) -> Result<Self> {
        let mut source = Tensors::from_vec(tensors)?;
        let net = match self.net {
            Network::Cnn2d(m) => Network::Cnn2d(m.load_pytorch(&mut source)?),
            Network::LstmAttention(m) => Network::LstmAttention(m.load_pytorch(&mut source)?),
            Network::MultibandAnc(m) => Network::MultibandAnc(m.load_pytorch(&mut source)?),
        };
        source.finish()?;
        Ok(Self { net, ..self })
    }

    /// Writes the PyTorch tensors to a safetensors file at `path` (atomically).
    pub fn save_pytorch_file(&self, path: &Path) -> Result<Vec<NamedTensor>> {
        let tensors = self.pytorch_tensors()?;
        stoker_artifact::export::write_safetensors(path, &tensors)?;
        Ok(tensors)
    }

    /// Loads a safetensors file written by [`Model::save_pytorch_file`] (or by PyTorch from
    /// the peer's `state_dict`); every error names the file.
    pub fn load_pytorch_file(self, path: &Path) -> Result<Self> {
        let tensors = stoker_artifact::export::read_safetensors(path)?;
        self.load_pytorch_tensors(tensors)
            .map_err(|e| ExportError::InFile {
                path: path.into(),
                source: Box::new(e),
            })
    }
}

/// Tensors by name: filled on export, consumed (and checked) on load.
#[derive(Default)]
pub(crate) struct Tensors(BTreeMap<String, NamedTensor>);

impl Tensors {
    fn from_vec(tensors: Vec<NamedTensor>) -> Result<Self> {
        let mut map = BTreeMap::new();
        for t in tensors {
            if let Some(t) = map.insert(t.name.clone(), t) {
                return Err(ExportError::Duplicate { name: t.name });
            }
        }
        Ok(Self(map))
    }

    pub(crate) fn put(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) {
        let t = NamedTensor::new(name, shape, data);
        self.0.insert(t.name.clone(), t);
    }

    /// A tensor's data as it is stored (`shape` row-major), on the host.
    pub(crate) fn put_tensor<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Result<()> {
        let shape = t.dims().to_vec();
        let data = host(name, t)?;
        self.put(name, shape, data);
        Ok(())
    }

    /// Removes the tensor `name`, which must have `shape`.
    pub(crate) fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self
            .0
            .remove(name)
            .ok_or_else(|| ExportError::Missing { name: name.into() })?;
        if t.shape != shape {
            return Err(ExportError::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                found: t.shape,
            });
        }
        Ok(t.data)
    }

    /// Replaces the value of `param` by the tensor `name` of the same shape.
    pub(crate) fn take_param<const D: usize>(
        &mut self,
        name: &str,
        param: Param<Tensor<D>>,
    ) -> Result<Param<Tensor<D>>> {
        let shape = param.val().dims();
        let data = self.take(name, &shape)?;
        Ok(param.map(|t| tensor(data, shape, &t.device())))
    }

    /// Whatever was not consumed is not a parameter of the model.
    fn finish(self) -> Result<()> {
        match self.0.into_keys().next() {
            Some(name) => Err(ExportError::Unexpected { name }),
            None => Ok(()),
        }
    }

    /// `nn.Linear` as `<prefix>.weight` [out, in] (burn stores [in, out]) and `<prefix>.bias`.
    pub(crate) fn put_linear(&mut self, prefix: &str, linear: &Linear) -> Result<()> {
        let name = format!("{prefix}.weight");
        let [inputs, outputs] = linear.weight.val().dims();
        let w = host(&name, linear.weight.val())?;
        self.put(name, vec![outputs, inputs], transpose(&w, inputs, outputs));
        if let Some(bias) = &linear.bias {
            self.put_tensor(&format!("{prefix}.bias"), bias.val())?;
        }
        Ok(())
    }

    pub(crate) fn take_linear(&mut self, prefix: &str, mut linear: Linear) -> Result<Linear> {
        let [inputs, outputs] = linear.weight.val().dims();
        let w = self.take(&format!("{prefix}.weight"), &[outputs, inputs])?;
        let w = transpose(&w, outputs, inputs);
        linear.weight = linear
            .weight
            .map(|t| tensor(w, [inputs, outputs], &t.device()));
        if let Some(bias) = linear.bias.take() {
            linear.bias = Some(self.take_param(&format!("{prefix}.bias"), bias)?);
        }
        Ok(linear)
    }
}

/// A [rows, cols] row-major matrix as [cols, rows].
pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| m[r * cols + c]))
        .collect()
}

pub(crate) fn host<const D: usize>(name: &str, t: Tensor<D>) -> Result<Vec<f32>> {
    try_to_host(t).map_err(|source| ExportError::Device {
        name: name.into(),
        source,
    })
}

pub(crate) fn tensor<const D: usize>(
    data: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [[1, 2, 3], [4, 5, 6]]
        assert_eq!(transpose(&m, 2, 3), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(transpose(&transpose(&m, 2, 3), 3, 2), m.to_vec());
    }
}
