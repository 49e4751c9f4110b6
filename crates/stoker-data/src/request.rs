//! What prepare is asked to do, and the check every input path gets before anything is staged.

use std::path::{Path, PathBuf};

use stoker_artifact::TaskConfig;

use crate::error::{Error, Result};

/// What to prepare and where.
#[derive(Debug, Clone)]
pub struct PrepareRequest {
    pub config: TaskConfig,
    pub input: PathBuf,
    /// The `data/` directory to (re)create.
    pub out_dir: PathBuf,
}

/// Fails with a clear message when `input` does not exist, before anything is staged.
pub(crate) fn check_input(input: &Path) -> Result<()> {
    if !input.is_file() {
        return Err(Error::NoSuchFile { path: input.into() });
    }
    Ok(())
}
