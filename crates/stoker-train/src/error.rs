//! What can go wrong in the train stage, each error naming the file, setting or device involved.

use std::path::PathBuf;

use stoker_artifact::ArtifactError;

/// An error of the prepare stage the sweep is handed (see [`crate::sweep::Prepare`]), kept
/// whole so its message and causes read as they did.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing an artifact (prepared data, metrics log, summary, state) failed.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// A directory or file could not be created, listed or read (`action`: "cannot create", …).
    #[error("{}: {action}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// Weights or optimizer state could not be written or loaded (`action`: "cannot load
    /// weights", …; `message`: burn's reason).
    #[error("{}: {action}: {message}", .path.display())]
    Checkpoint {
        path: PathBuf,
        action: &'static str,
        message: String,
    },
    /// The model cannot be built from its spec, or a best/last checkpoint cannot be written;
    /// the zoo's message names the model or the file.
    #[error(transparent)]
    Zoo(#[from] stoker_zoo::Error),
    /// The device cannot be opened, or its queued work failed (out of memory among others:
    /// see [`Error::is_out_of_memory`]).
    #[error(transparent)]
    Runtime(#[from] stoker_runtime::Error),
    /// `--resume` without a resumable run, or of a run on other data, settings or seed.
    #[error("{}: {message}", .path.display())]
    Resume { path: PathBuf, message: String },
    /// Settings the stage cannot run with: no windows for the window length, no candidate batch
    /// size, a malformed `--grid`, …
    #[error("{0}")]
    Settings(String),
    /// A config file that is not TOML, or a TOML value that cannot be written back.
    #[error("{}: not TOML", .path.display())]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// A sweep config that cannot be written back as TOML.
    #[error("cannot write TOML")]
    TomlWrite(#[from] toml::ser::Error),
    /// The device failed during a training step (`device`: its `--device` name).
    #[error("{device}")]
    Device {
        device: String,
        source: stoker_runtime::Error,
    },
    /// The validation pass failed (after halving its batch while the device ran out of memory).
    #[error("evaluation on {device}")]
    Evaluation {
        device: String,
        source: stoker_runtime::Error,
    },
    /// The loss stopped being a finite number. The run stops before anything records it, so
    /// the checkpoints written so far stay readable and `--resume` continues from the last one.
    #[error(
        "training diverged at epoch {epoch}, step {step}: the {what} is {value}; try a lower `train.lr`, `train.grad_clip = 1.0`, or `--precision f32`"
    )]
    Diverged {
        epoch: usize,
        step: u64,
        what: &'static str,
        value: f64,
    },
    /// The prepare stage, run by the sweep, failed.
    #[error(transparent)]
    Prepare(BoxError),
}

impl Error {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub(crate) fn checkpoint(
        path: impl Into<PathBuf>,
        action: &'static str,
        message: impl ToString,
    ) -> Self {
        Self::Checkpoint {
            path: path.into(),
            action,
            message: message.to_string(),
        }
    }

    /// `Err(Diverged)` unless `value` is finite.
    pub(crate) fn check_finite(
        value: f64,
        what: &'static str,
        epoch: usize,
        step: u64,
    ) -> Result<()> {
        if value.is_finite() {
            Ok(())
        } else {
            Err(Self::Diverged {
                epoch,
                step,
                what,
                value,
            })
        }
    }

    /// The device could not hold the work: a smaller batch may succeed.
    pub fn is_out_of_memory(&self) -> bool {
        match self {
            Self::Runtime(e)
            | Self::Device { source: e, .. }
            | Self::Evaluation { source: e, .. } => e.is_out_of_memory(),
            _ => false,
        }
    }
}
