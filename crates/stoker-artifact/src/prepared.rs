//! Prepared data as train and predict open it: the manifest and its window store, checked
//! against each other.

use std::path::{Path, PathBuf};

use crate::error::{ArtifactError, Result};
use crate::manifest::{DatasetManifest, MANIFEST_FILE, Split, WindowSpec, sha256_file};
use crate::window_store::WindowStore;

pub struct PreparedData {
    pub dir: PathBuf,
    pub manifest: DatasetManifest,
    /// SHA-256 of `manifest.json`: checkpoints record it so weights meet only their own data.
    pub manifest_sha256: String,
    pub store: WindowStore,
}

impl PreparedData {
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest_path = dir.join(MANIFEST_FILE);
        if !manifest_path.exists() {
            return Err(ArtifactError::invalid(
                &manifest_path,
                "not found: run the prepare stage first (cargo xtask prepare --config …)",
            ));
        }
        let manifest = DatasetManifest::load(dir)?;
        check_targets(&manifest_path, &manifest.targets, manifest.features.len())?;
        check_rows(&manifest_path, &manifest)?;
        check_file_name(&manifest_path, "store_file", &manifest.store_file)?;
        let (manifest_sha256, _) = sha256_file(&manifest_path)?;
        let store = open_store(
            &dir.join(&manifest.store_file),
            manifest.rows,
            manifest.features.len(),
            "re-run prepare",
        )?;
        Ok(Self {
            dir: dir.into(),
            manifest,
            manifest_sha256,
            store,
        })
    }

    /// Starts of the usable windows of `split` for `spec`, in time order. Any window spec
    /// works on the same prepared data: validity comes from the store's row flags.
    pub fn windows(&self, split: Split, spec: WindowSpec) -> Vec<usize> {
        self.store
            .window_starts(spec, self.manifest.splits.rows(split))
    }
}

/// Every split's rows must lie within the data, or a window scan would index past it. (The
/// manifest's `window` is prepare's record of the config; train and predict take theirs from
/// the config and the checkpoint.)
fn check_rows(file: &Path, manifest: &DatasetManifest) -> Result<()> {
    for split in [Split::Train, Split::Val, Split::Test] {
        let rows = manifest.splits.rows(split);
        if rows.start > rows.end || rows.end > manifest.rows {
            return Err(ArtifactError::invalid(
                file,
                format!(
                    "`splits.{}` is rows {}..{}, outside the {} rows of the data",
                    split.name(),
                    rows.start,
                    rows.end,
                    manifest.rows
                ),
            ));
        }
    }
    Ok(())
}

/// A file named in metadata (`field`) must be a plain name beside it: no directory part, which
/// could reach outside the artifacts, and no control character, which would break the one-line
/// errors that name it.
pub fn check_file_name(file: &Path, field: &str, name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control);
    if plain {
        Ok(())
    } else {
        Err(ArtifactError::invalid(
            file,
            format!("`{field}` must be a file name beside it, got {name:?}"),
        ))
    }
}

/// Target indices name columns: every one must exist, or the models would index past the
/// store's rows. `file` is the metadata that holds them.
pub fn check_targets(file: &Path, targets: &[usize], columns: usize) -> Result<()> {
    if targets.is_empty() {
        return Err(ArtifactError::invalid(file, "`targets` is empty"));
    }
    match targets.iter().find(|&&t| t >= columns) {
        Some(t) => Err(ArtifactError::invalid(
            file,
            format!(
                "target column {t} does not exist: there are {columns} columns (0…{})",
                columns.saturating_sub(1)
            ),
        )),
        None => Ok(()),
    }
}

/// The window store at `path`, which its manifest says holds `rows` × `cols`; a store of another
/// size is an error telling what to do (`remedy`).
pub(crate) fn open_store(
    path: &Path,
    rows: usize,
    cols: usize,
    remedy: &str,
) -> Result<WindowStore> {
    let store = WindowStore::open(path)?;
    if store.cols() != cols || store.rows() != rows {
        return Err(ArtifactError::invalid(
            store.path(),
            format!(
                "holds {} rows × {} cols but the manifest says {rows} × {cols}: {remedy}",
                store.rows(),
                store.cols(),
            ),
        ));
    }
    Ok(store)
}
