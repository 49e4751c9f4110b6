//! `train/steps.jsonl`: every step's training loss, one JSON line a step, when
//! `train.log_steps` is on. A resumed run keeps the lines up to the step it resumes from (those
//! after it are being trained again) and appends after them.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use stoker_artifact::StepRecord;
use stoker_artifact::atomic;
use stoker_artifact::layout::STEP_LOG_FILE;

use crate::error::{Error, Result};

pub(crate) struct StepLog {
    path: PathBuf,
    file: Option<BufWriter<File>>,
}

impl StepLog {
    /// No log: `train.log_steps` is off, or this rank does not write.
    pub fn off() -> Self {
        Self {
            path: PathBuf::new(),
            file: None,
        }
    }

    /// The log in `dir`: started afresh, or (`resumed_at`: a resumed run's step) kept up to
    /// that step.
    pub fn open(dir: &Path, resumed_at: Option<u64>) -> Result<Self> {
        let path = dir.join(STEP_LOG_FILE);
        let kept = match resumed_at {
            Some(step) => records_until(&path, step)?,
            None => String::new(),
        };
        atomic::write_bytes(&path, kept.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, "cannot open", e))?;
        Ok(Self {
            path,
            file: Some(BufWriter::new(file)),
        })
    }

    pub fn is_on(&self) -> bool {
        self.file.is_some()
    }

    pub fn record(&mut self, r: &StepRecord) -> Result<()> {
        if let Some(f) = &mut self.file {
            let line = serde_json::to_string(r).expect("a StepRecord serialises");
            writeln!(f, "{line}").map_err(|e| Error::io(&self.path, "cannot write", e))?;
        }
        Ok(())
    }

    /// Writes what is buffered (at checkpoints and at the end).
    pub fn flush(&mut self) -> Result<()> {
        if let Some(f) = &mut self.file {
            f.flush()
                .map_err(|e| Error::io(&self.path, "cannot write", e))?;
        }
        Ok(())
    }
}

/// The lines of the log at `path` up to step `last` (none if it is missing); a line cut short
/// by a killed run, and everything after it, is dropped.
fn records_until(path: &Path, last: u64) -> Result<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(Error::io(path, "cannot read", e)),
    };
    let mut kept = String::new();
    for line in text.lines() {
        match serde_json::from_str::<StepRecord>(line) {
            Ok(r) if r.step <= last => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => break,
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64) -> StepRecord {
        StepRecord {
            epoch: 1,
            step,
            loss: 1.0 / step as f64,
            lr: 1e-3,
        }
    }

    fn steps(dir: &Path) -> Vec<u64> {
        std::fs::read_to_string(dir.join(STEP_LOG_FILE))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<StepRecord>(l).unwrap().step)
            .collect()
    }

    #[test]
    fn a_resumed_log_keeps_its_steps_until_the_resume_point_and_drops_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = StepLog::open(dir.path(), None).unwrap();
        for step in 1..=5 {
            log.record(&record(step)).unwrap();
        }
        log.flush().unwrap();
        drop(log);
        assert_eq!(steps(dir.path()), [1, 2, 3, 4, 5]);
        let mut log = StepLog::open(dir.path(), Some(3)).unwrap();
        log.record(&record(4)).unwrap();
        log.flush().unwrap();
        assert_eq!(steps(dir.path()), [1, 2, 3, 4]);
        // A killed run's half-written last line.
        let path = dir.path().join(STEP_LOG_FILE);
        let text = std::fs::read_to_string(&path).unwrap() + "{\"epoch\":1,\"st";
        std::fs::write(&path, text).unwrap();
        drop(StepLog::open(dir.path(), Some(9)).unwrap());
        assert_eq!(steps(dir.path()), [1, 2, 3, 4]);
        drop(StepLog::open(dir.path(), None).unwrap());
        assert!(steps(dir.path()).is_empty());
    }
}
