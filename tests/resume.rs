//! A run killed with SIGKILL at a random step and resumed ends with exactly the weights of an
//! uninterrupted run: optimizer state, RNG and loader position all come back.

mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::*;

#[test]
fn killed_and_resumed_run_matches_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = checkpointed_tiny_config(dir.path(), 12, 7);
    // Dropout on, so the resumed run must also reproduce the random draws.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("residual = true", "residual = true\ndropout = 0.2");
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();

    let reference = dir.path().join("reference");
    let o = xtask(
        &[
            "run",
            "--config",
            config,
            "--artifacts",
            reference.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let killed = dir.path().join("killed");
    let k = killed.to_str().unwrap();
    assert!(
        xtask(
            &["prepare", "--config", config, "--artifacts", k],
            dir.path()
        )
        .status
        .success()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--config", config, "--artifacts", k])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = killed.join("train/state.json");
    let t = Instant::now();
    while !state.exists() && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let delay = Duration::from_millis(u64::from(nanos % 1500));
    eprintln!("killing {delay:?} after the first checkpoint");
    std::thread::sleep(delay);
    let finished = child.try_wait().unwrap().is_some();
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(
        !finished,
        "the run finished before it could be killed: make it longer"
    );

    let o = xtask(
        &["train", "--config", config, "--artifacts", k, "--resume"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // It must continue where the kill left it, not start over (which would also end equal).
    let err = stderr(&o);
    let resumed_step: u64 = err
        .split("resuming at epoch ")
        .nth(1)
        .and_then(|r| r.split("step ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume line in: {err}"));
    assert!(resumed_step > 0, "{err}");
    let (a, b) = (
        last_weights(&reference.join("train")),
        last_weights(&killed.join("train")),
    );
    assert_eq!(a.len(), b.len());
    assert!(a == b, "resumed weights differ from the uninterrupted run");
    let ckpts = std::fs::read_dir(killed.join("train"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".optim.bpk")
        })
        .count();
    assert_eq!(ckpts, 2, "keep_last = 2");
}
