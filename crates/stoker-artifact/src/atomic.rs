//! Artifacts appear whole or not at all: bytes go to a temporary sibling, are synced, then renamed.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ArtifactError, Result};

/// A temporary path next to `path` (same filesystem, so the final rename is atomic).
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes a file through `write`, then renames it into place; on error nothing is left behind.
pub fn write_with<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| ArtifactError::io(dir, e))?;
    }
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut out = BufWriter::new(File::create(&tmp)?);
        write(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    match result.and_then(|()| fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(ArtifactError::io(path, e))
        }
    }
}

pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |out| out.write_all(bytes))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| ArtifactError::Parse {
        path: path.into(),
        message: e.to_string(),
    })?;
    text.push('\n');
    write_bytes(path, text.as_bytes())
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| ArtifactError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ArtifactError::Parse {
        path: path.into(),
        message: e.to_string(),
    })
}

/// Reads JSON whose `format_version` must be `expected`, checked before the shape so an
/// artifact of another version gets the error that says so rather than a parse error.
pub fn read_versioned_json<T: DeserializeOwned>(path: &Path, expected: u32) -> Result<T> {
    let value: serde_json::Value = read_json(path)?;
    match value.get("format_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(expected) => {}
        Some(v) => {
            return Err(ArtifactError::Version {
                path: path.into(),
                field: "format_version",
                found: u32::try_from(v).unwrap_or(u32::MAX),
                expected,
            });
        }
        None => {
            return Err(ArtifactError::invalid(
                path,
                "field `format_version` is missing or not a number",
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| ArtifactError::Parse {
        path: path.into(),
        message: e.to_string(),
    })
}

/// Replaces directory `dest` by the fully written directory `staged` in one step, so a failed
/// stage never leaves a half-written directory where a good one was.
pub fn replace_dir(staged: &Path, dest: &Path) -> Result<()> {
    let old = dest.with_file_name(format!(
        ".{}.old-{}",
        dest.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    if dest.exists() {
        fs::rename(dest, &old).map_err(|e| ArtifactError::io(dest, e))?;
    }
    if let Err(e) = fs::rename(staged, dest) {
        let _ = fs::rename(&old, dest);
        return Err(ArtifactError::io(dest, e));
    }
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| ArtifactError::io(&old, e))?;
    }
    Ok(())
}

/// A fresh staging directory beside `dest`, removed on drop unless committed.
pub struct StagingDir {
    path: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl StagingDir {
    pub fn new(dest: &Path) -> Result<Self> {
        let path = temp_sibling(dest);
        if path.exists() {
            fs::remove_dir_all(&path).map_err(|e| ArtifactError::io(&path, e))?;
        }
        fs::create_dir_all(&path).map_err(|e| ArtifactError::io(&path, e))?;
        Ok(Self {
            path,
            dest: dest.to_path_buf(),
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Swaps the staged directory into place.
    pub fn commit(mut self) -> Result<()> {
        replace_dir(&self.path, &self.dest)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_previous_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_bytes(&path, b"old").unwrap();
        let err = write_with(&path, |out| {
            out.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn uncommitted_staging_dir_is_removed_and_dest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("data");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("keep"), b"x").unwrap();
        {
            let staged = StagingDir::new(&dest).unwrap();
            fs::write(staged.path().join("new"), b"y").unwrap();
        }
        assert!(dest.join("keep").exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let staged = StagingDir::new(&dest).unwrap();
        fs::write(staged.path().join("new"), b"y").unwrap();
        staged.commit().unwrap();
        assert!(dest.join("new").exists() && !dest.join("keep").exists());
    }
}
