//! What can go wrong in prepare, each error naming the file and the place in it.

use std::path::PathBuf;

use stoker_artifact::ArtifactError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input file does not exist.
    #[error("{}: no such file", .path.display())]
    NoSuchFile { path: PathBuf },
    /// A file could not be opened, read or written (`action`: "cannot open", …).
    #[error("{}: {action}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// A CSV or WAV file without any content.
    #[error("{}: empty file{detail}", .path.display())]
    EmptyFile { path: PathBuf, detail: String },
    /// A CSV record with the wrong number of fields.
    #[error(
        "{}: line {line}: expected {expected} fields, found {found} (truncated or malformed row)",
        .path.display()
    )]
    FieldCount {
        path: PathBuf,
        line: u64,
        expected: u64,
        found: u64,
    },
    /// A numeric cell that is neither a finite number nor a missing-value marker.
    #[error(
        "{}: line {line}, column `{column}`: `{cell}` is not a number (write NA for missing)",
        .path.display()
    )]
    NotANumber {
        path: PathBuf,
        line: u64,
        column: String,
        cell: String,
    },
    /// Any other defect of an input file; `message` names the line, column or sample.
    #[error("{}: {message}", .path.display())]
    Input { path: PathBuf, message: String },
    /// The task config asks for something prepare cannot do.
    #[error("config: {0}")]
    Config(String),
    /// Writing or reading back a Parquet shard failed.
    #[error("{}: {message}", .path.display())]
    Shard { path: PathBuf, message: String },
    /// The resampler refused the rates or failed.
    #[error("cannot resample from {from} Hz to {to} Hz: {message}")]
    Resample { from: u32, to: u32, message: String },
    /// A request the library cannot carry out (a synthetic series of no samples, …).
    #[error("{0}")]
    Request(String),
    /// Writing an artifact (window store, manifest, staging directory) failed.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

impl Error {
    pub(crate) fn input(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Input {
            path: path.into(),
            message: message.into(),
        }
    }

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

    /// This error as a defect of `path` (the file a derived failure comes from).
    pub(crate) fn in_file(self, path: impl Into<PathBuf>) -> Self {
        Self::input(path, self.to_string())
    }
}

/// A row whose timestamp has no calendar phases (a date chrono cannot represent), in `input`.
pub(crate) fn outside_calendar(input: &std::path::Path, timestamp: i64) -> Error {
    Error::input(
        input,
        format!("timestamp {timestamp} is outside the calendar"),
    )
}
