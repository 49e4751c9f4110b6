//! The runtime's errors: what a device, its configuration or a read-back can fail with.

use burn_std::ExecutionError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An allocation the device cannot make: a GPU's per-buffer limit (128 MiB on lavapipe and
    /// in WebGPU's defaults) or its memory. Retrying with less work can succeed.
    #[error("out of device memory: {0}")]
    OutOfMemory(String),
    /// Queued work failed on the device for another reason (a lost or poisoned device, a
    /// kernel that failed).
    #[error("device failed: {0}")]
    Device(String),
    /// A tensor read back as another element type than asked for.
    #[error("reading a tensor back: {0}")]
    ReadBack(String),
    /// `--device` named no device stoker knows.
    #[error("--device {name}: unknown device (this build supports: {supported})")]
    UnknownDevice { name: String, supported: String },
    /// `--device` named a backend this build was compiled without.
    #[error("--device {0}: this build lacks the `{0}` feature; rebuild with `--features {0}`")]
    MissingFeature(&'static str),
    /// burn's configuration could not be rewritten (`--no-fusion`).
    #[error("burn config: {0}")]
    BurnConfig(String),
    /// `--no-fusion` came after burn had read its configuration.
    #[error("--no-fusion: burn's configuration was already read; set it before using a device")]
    ConfigAlreadyRead,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, Error::OutOfMemory(_))
    }

    /// Classifies a failure burn reports from the device.
    ///
    /// burn 0.22 has no typed out-of-memory signal: cubecl's typed `IoError::OutOfMemory` and
    /// `IoError::BufferTooBig` reach us flattened into `ExecutionError::WithContext`'s reason
    /// string (burn-cubecl's `server_err`), so that reason, and only it, is matched here, once.
    /// A poisoned device is never out of memory: retrying on it cannot succeed.
    pub fn from_execution(e: ExecutionError) -> Self {
        let reason = e.reason();
        let allocation =
            reason.contains("can't allocate buffer") || reason.contains("out of device memory");
        if allocation && !e.is_device_poisoned() {
            Error::OutOfMemory(reason.to_string())
        } else {
            Error::Device(e.to_string())
        }
    }
}

impl From<ExecutionError> for Error {
    fn from(e: ExecutionError) -> Self {
        Error::from_execution(e)
    }
}

/// Lets [`crate::batch::fitting_batch`] read the runtime's own errors as it reads
/// `anyhow::Error`: as the head of a chain of sources.
impl AsRef<dyn std::error::Error + Send + Sync + 'static> for Error {
    fn as_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
}

/// Whether `e`, or any error in its chain of sources, is a device out of memory.
pub fn is_out_of_memory(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| {
        e.downcast_ref::<Error>()
            .is_some_and(Error::is_out_of_memory)
    })
}
