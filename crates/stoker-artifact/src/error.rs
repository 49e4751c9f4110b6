use std::path::PathBuf;

/// Everything that can go wrong reading or writing an artifact. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{path}: field `{field}`: found format version {found}, this build reads version {expected}; re-run the stage that writes it"
    )]
    Version {
        path: PathBuf,
        field: &'static str,
        found: u32,
        expected: u32,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl ArtifactError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = ArtifactError> = std::result::Result<T, E>;
