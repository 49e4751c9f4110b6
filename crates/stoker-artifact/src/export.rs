//! The export of a trained model for other frameworks: `export/model.safetensors` holds every
//! parameter under the PyTorch peer's names and layouts (f32, little-endian, sorted by name, so
//! the same model always gives the same bytes) and `export/model.json` ([`ExportMeta`]) says
//! what the tensors are for: the model and window spec, the input features with their train
//! normalisation, the targets and the checkpoint they came from.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, serialize, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::error::{ArtifactError, Result};
use crate::manifest::{AncSignals, MetricScale, WindowSpec};
use crate::model::ModelSpec;

pub const EXPORT_VERSION: u32 = 1;
pub const EXPORT_WEIGHTS_FILE: &str = "model.safetensors";
pub const EXPORT_META_FILE: &str = "model.json";

/// One parameter (or fixed buffer) under its PyTorch name, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl NamedTensor {
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            name: name.into(),
            shape,
            data,
        }
    }
}

/// `model.json`: everything a program needs besides the tensors to use the export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportMeta {
    pub format_version: u32,
    /// The weights file's format and name, relative to this file.
    pub format: String,
    pub weights: String,
    pub model: ModelSpec,
    pub window: WindowSpec,
    /// The model's input columns in order, with the train split's normalisation:
    /// input = (raw − mean) / std.
    pub features: Vec<ExportFeature>,
    /// Indices into `features` of the predicted columns; outputs are step-major.
    pub targets: Vec<usize>,
    /// Whether the manifest's metrics (and predictions) are in raw units or normalised.
    pub metric_scale: MetricScale,
    pub target_unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anc: Option<AncSignals>,
    pub checkpoint: ExportSource,
    /// Every tensor of the weights file, by name.
    pub tensors: Vec<TensorShape>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportFeature {
    pub name: String,
    pub mean: f64,
    pub std: f64,
}

/// The checkpoint an export was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportSource {
    /// `best` or `last`.
    pub name: String,
    pub epoch: usize,
    pub step: u64,
    pub val_loss: f64,
    pub manifest_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorShape {
    pub name: String,
    pub shape: Vec<usize>,
}

impl ExportMeta {
    pub fn save(&self, path: &Path) -> Result<()> {
        atomic::write_json(path, self)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let meta: Self = atomic::read_json(path)?;
        if meta.format_version != EXPORT_VERSION {
            return Err(ArtifactError::Version {
                path: path.into(),
                field: "format_version",
                found: meta.format_version,
                expected: EXPORT_VERSION,
            });
        }
        Ok(meta)
    }
}

/// The safetensors bytes of `tensors`: f32 little-endian, the header sorted by name.
pub fn safetensors_bytes(path: &Path, tensors: &[NamedTensor]) -> Result<Vec<u8>> {
    let invalid = |message: String| ArtifactError::invalid(path, message);
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, t.shape.clone(), b)
            .map_err(|e| invalid(format!("tensor `{}`: {e}", t.name)))?;
        views.push((t.name.as_str(), view));
    }
    // PyTorch's own safetensors files say "pt"; one key keeps the header's bytes deterministic.
    let info = HashMap::from([("format".to_string(), "pt".to_string())]);
    serialize(views, Some(info)).map_err(|e| invalid(e.to_string()))
}

/// Writes `tensors` to `path` atomically; duplicate names and data that does not fill its shape
/// are refused.
pub fn write_safetensors(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let mut names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(ArtifactError::invalid(
            path,
            format!("tensor `{}` appears twice", w[0]),
        ));
    }
    atomic::write_bytes(path, &safetensors_bytes(path, tensors)?)
}

/// Every tensor of a safetensors file, sorted by name; a truncated or malformed file, or a
/// tensor that is not f32, is an error naming the file (and the tensor).
pub fn read_safetensors(path: &Path) -> Result<Vec<NamedTensor>> {
    let bytes = std::fs::read(path).map_err(|e| ArtifactError::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| ArtifactError::invalid(path, format!("not a valid safetensors file: {e}")))?;
    let mut tensors: Vec<NamedTensor> = file
        .iter()
        .map(|(name, view)| {
            if view.dtype() != Dtype::F32 {
                return Err(ArtifactError::invalid(
                    path,
                    format!("tensor `{name}`: dtype {:?}, expected F32", view.dtype()),
                ));
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok(NamedTensor::new(name, view.shape().to_vec(), data))
        })
        .collect::<Result<_>>()?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<NamedTensor> {
        vec![
            NamedTensor::new(
                "net.2.weight",
                vec![2, 3],
                vec![1.0, -2.0, 3.5, 0.0, 1e-7, 9.0],
            ),
            NamedTensor::new("a.bias", vec![2], vec![0.25, -0.5]),
        ]
    }

    #[test]
    fn round_trips_sorted_by_name_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EXPORT_WEIGHTS_FILE);
        write_safetensors(&path, &sample()).unwrap();
        let mut expected = sample();
        expected.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(read_safetensors(&path).unwrap(), expected);
        let first = std::fs::read(&path).unwrap();
        let mut reversed = sample();
        reversed.reverse();
        write_safetensors(&path, &reversed).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);
    }

    #[test]
    fn bad_files_and_tensors_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let twice = vec![sample()[1].clone(), sample()[1].clone()];
        let e = write_safetensors(&path, &twice).unwrap_err().to_string();
        assert!(
            e.contains("w.safetensors") && e.contains("`a.bias` appears twice"),
            "{e}"
        );
        let short = vec![NamedTensor::new("x", vec![3], vec![1.0])];
        let e = write_safetensors(&path, &short).unwrap_err().to_string();
        assert!(e.contains("w.safetensors") && e.contains("`x`"), "{e}");

        write_safetensors(&path, &sample()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for (what, damaged) in [
            ("truncated", bytes[..bytes.len() - 3].to_vec()),
            ("header cut", bytes[..20].to_vec()),
            ("empty", Vec::new()),
            ("header length", {
                let mut b = bytes.clone();
                b[0] ^= 0x40;
                b
            }),
        ] {
            std::fs::write(&path, &damaged).unwrap();
            let e = read_safetensors(&path).unwrap_err().to_string();
            assert!(e.contains("w.safetensors"), "{what}: {e}");
        }
    }
}
