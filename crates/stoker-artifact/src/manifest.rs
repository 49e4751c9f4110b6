//! The dataset manifest: everything train and predict need to know about prepared data.

use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::error::{ArtifactError, Result};
use crate::family::TaskFamily;

pub const MANIFEST_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetManifest {
    pub format_version: u32,
    /// Source kind, as in the config (`pm25`, …).
    pub source_kind: String,
    pub sources: Vec<SourceFile>,
    /// Columns of the window store, in order.
    pub features: Vec<Feature>,
    /// Indices into `features` of the predicted columns.
    pub targets: Vec<usize>,
    /// Unit of the targets in metrics: raw units (`µg/m³`) or `normalised`.
    pub target_unit: String,
    pub metric_scale: MetricScale,
    pub window: WindowSpec,
    pub splits: Splits,
    pub rows: usize,
    /// Row timestamps are seconds since the Unix epoch, stored in the window store.
    pub time_step_seconds: i64,
    pub store_file: String,
    pub shards: Vec<ShardRef>,
    pub quality: QualityReport,
    /// Gap filling: runs of at most this many missing cells were interpolated. Recorded so new
    /// data applied to a trained model is filled by the same rule; absent in manifests written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gap: Option<usize>,
    /// The acoustic setup of an ANC dataset (columns x, d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anc: Option<AncSignals>,
}

/// What train and predict need to know about an ANC recording besides its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AncSignals {
    pub sample_rate: u32,
    /// Rate of the recording before resampling.
    pub source_rate: u32,
    /// Secondary path S at `sample_rate`: the error microphone hears e = d − S * g(y).
    pub secondary_path: Vec<f32>,
    pub primary_taps: usize,
    /// Loudspeaker saturation η: g(y) = tanh(η·y)/η on normalised y (0 = linear).
    pub saturation: f64,
    /// x and d are stored divided by these (their train-split RMS); y is in units of d's.
    pub reference_rms: f64,
    pub disturbance_rms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub kind: FeatureKind,
    /// Stored value = (raw − mean) / std, fitted on the train split only.
    pub mean: f64,
    pub std: f64,
}

impl Feature {
    /// The stored value of a raw one.
    pub fn normalize(&self, raw: f64) -> f64 {
        (raw - self.mean) / self.std
    }

    pub fn denormalize(&self, value: f64) -> f64 {
        value * self.std + self.mean
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureKind {
    Numeric,
    /// 1 when the categorical column equals `category`, else 0 (not normalised).
    OneHot {
        column: String,
        category: String,
    },
    /// A sin or cos of a calendar phase (not normalised).
    Calendar,
}

/// Whether metrics are reported in the targets' raw units or on the normalised scale (the
/// convention of the ETT literature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricScale {
    Raw,
    Normalised,
}

/// How rows become (input, target) windows: inputs are rows `s .. s+input_len`; the targets are
/// the target columns of the `output_len` rows from `s + input_len - 1 + horizon` on.
/// A horizon ≤ 0 makes the targets concurrent with the last input rows: ANC's disturbance d(n)
/// is heard at the same instant as the reference x(n) the controller reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    pub input_len: usize,
    pub horizon: isize,
    #[serde(default = "one")]
    pub output_len: usize,
    /// Rows between consecutive window starts (1 = every row): ANC's training chunks tile the
    /// signal instead of overlapping almost entirely.
    #[serde(default = "one")]
    pub stride: usize,
}

fn one() -> usize {
    1
}

impl WindowSpec {
    /// Checks a window read from a file: every length at least 1, the first target row not
    /// before the first input row (`input_len − 1 + horizon` ≥ 0) and the span within half the
    /// address range, so that `lead`, `span` and `target_rows` hold for any start a store can
    /// have (a store's rows take more than 4 bytes each).
    pub fn check(&self) -> std::result::Result<(), String> {
        for (key, value) in [
            ("input_len", self.input_len),
            ("output_len", self.output_len),
            ("stride", self.stride),
        ] {
            if value == 0 {
                return Err(format!("`window.{key}` must be > 0"));
            }
        }
        (self.input_len - 1)
            .checked_add_signed(self.horizon)
            .and_then(|lead| lead.checked_add(self.output_len))
            .filter(|&end| end.max(self.input_len) <= isize::MAX as usize)
            .map(drop)
            .ok_or_else(|| {
                format!(
                    "`window.horizon` {} does not fit `window.input_len` {} and `output_len` {}",
                    self.horizon, self.input_len, self.output_len
                )
            })
    }

    pub fn first_target_row(&self, start: usize) -> usize {
        (start + self.input_len - 1)
            .checked_add_signed(self.horizon)
            .expect("horizon reaches before the window's first row")
    }

    pub fn target_rows(&self, start: usize) -> Range<usize> {
        let first = self.first_target_row(start);
        first..first + self.output_len
    }

    /// Rows from a window's start to its last input or target row, whichever is later.
    pub fn span(&self) -> usize {
        self.input_len
            .max(self.first_target_row(0) + self.output_len)
    }

    /// Rows before the first target row of a window (negative horizons make it shorter than
    /// the input).
    pub fn lead(&self) -> usize {
        self.first_target_row(0)
    }
}

/// Row ranges of each split. A window belongs to the split holding its target row; its inputs
/// may reach back into the previous split, as they would in deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    pub train: Range<usize>,
    pub val: Range<usize>,
    pub test: Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl Splits {
    pub fn rows(&self, split: Split) -> Range<usize> {
        match split {
            Split::Train => self.train.clone(),
            Split::Val => self.val.clone(),
            Split::Test => self.test.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRef {
    pub file: String,
    pub rows: usize,
}

/// What prepare found and did about missing data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityReport {
    /// Cells missing in the raw input, per column name.
    pub missing_cells: Vec<(String, usize)>,
    /// Cells filled by interpolation (inputs only, never targets).
    pub interpolated_cells: usize,
    /// Rows whose target is unobserved: no window predicts them.
    pub unobserved_targets: usize,
    /// Windows per split after skipping those with missing inputs or target.
    pub windows: Vec<(String, usize)>,
}

impl DatasetManifest {
    pub fn load(dir: &Path) -> Result<Self> {
        atomic::read_versioned_json(&dir.join(MANIFEST_FILE), MANIFEST_VERSION)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        atomic::write_json(&dir.join(MANIFEST_FILE), self)
    }

    /// Control when the data is an ANC recording (it carries the acoustic setup), else
    /// forecast.
    pub fn family(&self) -> TaskFamily {
        match self.anc {
            Some(_) => TaskFamily::Control,
            None => TaskFamily::Forecast,
        }
    }

    pub fn target_features(&self) -> impl Iterator<Item = &Feature> {
        self.targets.iter().map(|&i| &self.features[i])
    }
}

/// SHA-256 of a file, hex-encoded, streamed so large inputs are fine.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| ArtifactError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ArtifactError::io(path, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex(&hasher.finalize()), total))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_format_version_names_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            r#"{"format_version": 99, "whatever": 1}"#,
        )
        .unwrap();
        let msg = DatasetManifest::load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("manifest.json"), "{msg}");
        assert!(
            msg.contains("format_version") && msg.contains("99"),
            "{msg}"
        );
    }

    #[test]
    fn target_row_follows_horizon() {
        let w = WindowSpec {
            input_len: 24,
            horizon: 1,
            output_len: 1,
            stride: 1,
        };
        assert_eq!(w.target_rows(0), 24..25);
        let multi = WindowSpec {
            output_len: 96,
            ..w
        };
        assert_eq!(multi.target_rows(2), 26..122);
        assert_eq!(multi.span(), 120);
        // Concurrent targets: the last 8 input rows.
        let concurrent = WindowSpec {
            input_len: 20,
            horizon: -7,
            output_len: 8,
            stride: 8,
        };
        assert_eq!(concurrent.target_rows(3), 15..23);
        assert_eq!(concurrent.span(), 20);
    }
}
