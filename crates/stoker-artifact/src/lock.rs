//! One run per artifacts directory: a stage holds an advisory lock on `<artifacts>/.stoker.lock`
//! for as long as it writes there, so a second run on the same directory is refused instead of
//! silently overwriting the first one's files. Taking the lock also sweeps the temporary files
//! that killed runs left behind.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{ArtifactError, Result};

const LOCK_FILE: &str = ".stoker.lock";

/// Held while a stage writes into an artifacts directory; released on drop (and by the OS when
/// the process dies, so a killed run never leaves the directory locked).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Locks `root` (created if missing) for this process, then removes stale temporaries in it
    /// and in its immediate subdirectories (`data/`, `train/`, `predict/`, …).
    pub fn acquire(root: &Path) -> Result<Self> {
        fs::create_dir_all(root).map_err(|e| ArtifactError::io(root, e))?;
        let path = root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| ArtifactError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("process {holder}")
                };
                return Err(ArtifactError::invalid(
                    root,
                    format!(
                        "{who} is already running a stage on this artifacts directory; wait for it, or use --artifacts DIR"
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(ArtifactError::io(&path, e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .map_err(|e| ArtifactError::io(&path, e))?;
        remove_stale_temps(root)?;
        if let Ok(entries) = fs::read_dir(root) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_stale_temps(&entry.path())?;
                }
            }
        }
        Ok(Self { _file: file, path })
    }

    /// Locks the artifacts directory that holds a stage's output directory (`<root>/train` →
    /// `<root>`), so that prepare, train and predict of one task never overlap.
    pub fn for_stage_dir(stage_dir: &Path) -> Result<Self> {
        match stage_dir.parent() {
            Some(root) if !root.as_os_str().is_empty() => Self::acquire(root),
            _ => Self::acquire(Path::new(".")),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes the temporaries in `dir` whose writer is no longer running: ours are
/// `.<name>.tmp-<pid>` (files, or prepare's whole directory), burn's checkpoint writer's are
/// `<name>.<pid>-<n>.tmp`. A temporary of a live process is left alone.
pub fn remove_stale_temps(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_writer_pid) else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Ok(()) => eprintln!("removed {} (left by a run that was killed)", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArtifactError::io(&path, e)),
        }
    }
    Ok(())
}

/// The PID in a temporary's name, if `name` is one of the two temporary patterns.
fn temp_writer_pid(name: &str) -> Option<u32> {
    if let Some(rest) = name.strip_prefix('.')
        && let Some((_, pid)) = rest.rsplit_once(".tmp-")
    {
        return pid.parse().ok();
    }
    let stem = name.strip_suffix(".tmp")?;
    let (_, suffix) = stem.rsplit_once('.')?;
    let (pid, n) = suffix.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether a process with this PID exists. Where the OS offers no `/proc`, every writer counts as
/// alive, so nothing is removed that might still be written.
fn process_alive(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_give_their_writer() {
        assert_eq!(temp_writer_pid(".summary.json.tmp-1234"), Some(1234));
        assert_eq!(temp_writer_pid(".data.tmp-77"), Some(77));
        assert_eq!(temp_writer_pid("best.bpk.4321-0.tmp"), Some(4321));
        assert_eq!(temp_writer_pid("best.bpk"), None);
        assert_eq!(temp_writer_pid("notes.tmp"), None);
        assert_eq!(temp_writer_pid(".hidden"), None);
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let msg = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains(&std::process::id().to_string()) && msg.contains("already running"),
            "{msg}"
        );
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn taking_the_lock_removes_dead_writers_temporaries_only() {
        let dir = tempfile::tempdir().unwrap();
        let train = dir.path().join("train");
        fs::create_dir_all(dir.path().join(format!(".data.tmp-{}", u32::MAX))).unwrap();
        fs::create_dir_all(&train).unwrap();
        let dead = train.join(format!("best.bpk.{}-0.tmp", u32::MAX - 1));
        let live = train.join(format!(".state.json.tmp-{}", std::process::id()));
        let keep = train.join("best.bpk");
        for f in [&dead, &live, &keep] {
            fs::write(f, b"x").unwrap();
        }
        let _lock = RunLock::acquire(dir.path()).unwrap();
        assert!(!dir.path().join(format!(".data.tmp-{}", u32::MAX)).exists());
        assert!(!dead.exists());
        assert!(live.exists() && keep.exists());
    }
}
