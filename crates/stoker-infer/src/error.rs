//! What can go wrong in predict, each error naming the artifact it concerns.

use std::path::PathBuf;

use stoker_artifact::ArtifactError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the prepared data or writing an output artifact failed.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The checkpoint could not be loaded (missing, unreadable, or for another model).
    #[error(transparent)]
    Checkpoint(Box<dyn std::error::Error + Send + Sync>),
    /// The checkpoint was trained on other prepared data than the one at hand.
    #[error(
        "{}: trained on other prepared data than {} (manifest hash differs): re-run train",
        .checkpoint.display(),
        .manifest.display()
    )]
    StaleCheckpoint {
        checkpoint: PathBuf,
        manifest: PathBuf,
    },
    /// The checkpoint's input or target columns are not the prepared data's.
    #[error("{}: made for {found}, but the prepared data has {expected}", .checkpoint.display())]
    ShapeMismatch {
        checkpoint: PathBuf,
        expected: String,
        found: String,
    },
    /// `predict --batch-size 0` (or a library caller's zero): no batch could ever be formed.
    #[error("--batch-size must be > 0")]
    BatchSize,
    /// The applied input was applied with other training data than the checkpoint's.
    #[error(
        "{}: trained on other prepared data than {} was applied with (manifest hash differs): apply it with the data this checkpoint was trained on, or re-run train",
        .checkpoint.display(),
        .file.display()
    )]
    InputMismatch { checkpoint: PathBuf, file: PathBuf },
    /// History given to [`TrainedModel::forecast`](crate::TrainedModel::forecast) that it
    /// cannot read.
    #[error("history: {0}")]
    History(String),
    /// A forecast asked of a model that does not forecast.
    #[error("not a forecasting model (pm25, ett)")]
    NotForecaster,
    /// The applied file is shorter than the model's input window.
    #[error(
        "{}: {found} rows of history, the model's window needs {needed}: give at least {needed} rows",
        .file.display()
    )]
    ShortHistory {
        file: PathBuf,
        needed: usize,
        found: usize,
    },
    /// An input of the last window is missing after gap filling (`row` counts data rows from 1).
    #[error(
        "{}: row {row} ({time}), column `{column}`: missing after gap filling, inside the last window (rows {window}); the forecast needs every input of its window",
        .file.display()
    )]
    MissingInWindow {
        file: PathBuf,
        row: usize,
        time: String,
        column: String,
        window: String,
    },
    /// `--all-windows` found no window whose inputs are all present.
    #[error("{}: no {needed} consecutive rows with every input present", .file.display())]
    NoInputWindows { file: PathBuf, needed: usize },
    /// The test split holds no complete window of the model's shape.
    #[error("{}: no test windows for this model's window", .data_dir.display())]
    NoTestWindows { data_dir: PathBuf },
    /// ANC prediction was asked of a checkpoint that is not an ANC model.
    #[error("the checkpoint is not an ANC model")]
    NotAnc,
    /// The prepared data lacks the acoustic setup an ANC model needs.
    #[error("the prepared data has no ANC setup: re-run prepare with an anc source")]
    NoAncSetup,
    /// The model has no parameters, so no device to run on.
    #[error("the model has no parameters, so no device to run on")]
    NoDevice,
    /// Computing on the device failed (out of memory is recognised by its type).
    #[error(transparent)]
    Device(#[from] stoker_runtime::Error),
    /// `--stream-block 0`.
    #[error("--stream-block must be > 0")]
    StreamBlock,
    /// The controller's weights do not fit together (a damaged or hand-made model).
    #[error("streaming controller: {0}")]
    StreamShape(String),
    /// The model's tensors could not be mapped to the PyTorch peer's (export).
    #[error(transparent)]
    Export(#[from] stoker_zoo::ExportError),
    /// An output file (WAV, plot) could not be written.
    #[error("{}: {message}", .path.display())]
    Output { path: PathBuf, message: String },
}

/// The error [`stoker_runtime::batch::fitting_batch`] inspects: the device's own error where
/// there is one, so an allocation failure is recognised by its type.
impl AsRef<dyn std::error::Error + Send + Sync + 'static> for Error {
    fn as_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            Error::Device(e) => e,
            other => other,
        }
    }
}
