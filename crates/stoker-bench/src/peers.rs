//! PyTorch peers (`bench/peers/run.py`): the same architectures, shapes, thread count and
//! optimizer in PyTorch, run beside stoker's model rows when PyTorch is importable, so the
//! stoker / PyTorch ratios come from one run on one machine.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

const SCRIPT: &str = "bench/peers/run.py";
/// run.py's exit status when `import torch` fails.
const NO_TORCH: i32 = 3;

/// Runs the peer of one model at a time (the bench alternates it with stoker's rows).
pub struct Peers {
    python: String,
    quick: bool,
    /// Why the peers do not run (any more). Set by the first call that fails, so that a missing
    /// PyTorch is reported once rather than retried every round.
    pub off: Option<String>,
    pub torch_version: Option<Value>,
}

impl Peers {
    pub fn new(quick: bool, gpu: bool) -> Peers {
        let python = std::env::var("STOKER_PEER_PYTHON").unwrap_or_else(|_| "python3".into());
        let off = if gpu {
            Some("skipped (they run on the CPU; this run is on a GPU device)".into())
        } else if !Path::new(SCRIPT).exists() {
            Some(format!(
                "skipped ({SCRIPT} not found; run from the workspace root)"
            ))
        } else {
            None
        };
        Peers {
            python,
            quick,
            off,
            torch_version: None,
        }
    }

    /// PyTorch's figures of one model (`{"f32": {"train_samples_per_s": …, …}, …}`), or None
    /// once the peers are off.
    pub fn run(&mut self, model: &str) -> Option<Value> {
        if self.off.is_some() {
            return None;
        }
        // `--json -`: the JSON on stdout, run.py's own table on stderr (shown as it runs).
        let mut cmd = Command::new(&self.python);
        cmd.args([SCRIPT, "--json", "-", "--model", model])
            .stderr(Stdio::inherit());
        if self.quick {
            cmd.arg("--quick");
        }
        let python = &self.python;
        let figures = match cmd.output() {
            Ok(o) if o.status.success() => serde_json::from_slice::<Value>(&o.stdout)
                .map_err(|e| format!("failed (unreadable JSON from {SCRIPT}: {e})")),
            Ok(o) if o.status.code() == Some(NO_TORCH) => Err(format!(
                "skipped (PyTorch not importable by {python}; see bench/peers/README.md)"
            )),
            Ok(o) => Err(format!("failed ({})", o.status)),
            Err(e) => Err(format!("skipped ({python}: {e})")),
        };
        match figures {
            Ok(mut v) => {
                self.torch_version = Some(v["torch_version"].take());
                Some(v[model].take())
            }
            Err(reason) => {
                self.off = Some(reason);
                None
            }
        }
    }
}
