//! Data-parallel training under MPI (`--features mpi`; `mpirun` must be installed):
//! 2 ranks with batch B train exactly as 1 process with batch 2B; a rank killed mid-run ends the
//! job naming it, and `--resume` on 2 ranks reaches the uninterrupted run's best validation loss.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use stoker_artifact::{RunSummary, StepRecord};

fn step_losses(artifacts: &Path) -> Vec<f64> {
    std::fs::read_to_string(artifacts.join("train/steps.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<StepRecord>(l).unwrap().loss)
        .collect()
}

fn summary(artifacts: &Path) -> RunSummary {
    let text = std::fs::read_to_string(artifacts.join("train/summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Trains `config` into `artifacts` (prepared first) with `extra` flags; must succeed.
fn train(dir: &Path, config: &Path, artifacts: &Path, extra: &[&str]) {
    let (c, a) = (config.to_str().unwrap(), artifacts.to_str().unwrap());
    if !artifacts.join("data").exists() {
        run_stages(dir, c, a, &["prepare"], &[]);
    }
    let mut args = vec!["train", "--config", c, "--artifacts", a];
    args.extend(extra);
    let o = xtask(&args, dir);
    assert!(o.status.success(), "train {extra:?}: {}", stderr(&o));
}

/// 2 ranks × batch `b` against 1 process × batch 2`b`: every step's loss and the final weights
/// within 1e-5 relative, at least 20 steps.
fn two_ranks_match_one_process(dir: &Path, config: &Path, b: usize) {
    let (one, two) = (dir.join("one"), dir.join("two"));
    train(dir, config, &one, &["--batch-size", &(2 * b).to_string()]);
    train(
        dir,
        config,
        &two,
        &["--batch-size", &b.to_string(), "--ranks", "2"],
    );
    let (l1, l2) = (step_losses(&one), step_losses(&two));
    assert!(l1.len() >= 20, "only {} steps", l1.len());
    assert_eq!(l1.len(), l2.len());
    for (step, (a, b)) in l1.iter().zip(&l2).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs(),
            "step {}: loss {a} (1 process) vs {b} (2 ranks)",
            step + 1
        );
    }
    let (w1, w2) = (
        last_weights(&one.join("train")),
        last_weights(&two.join("train")),
    );
    assert_eq!(w1.len(), w2.len());
    for (p1, p2) in w1.iter().zip(&w2) {
        let scale = p1.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let worst = p1
            .iter()
            .zip(p2)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "weights differ by {worst} (scale {scale})"
        );
    }
    let s = summary(&two);
    assert_eq!(s.ranks, 2);
    let d = s
        .distributed
        .expect("a 2-rank summary has its distributed part");
    assert_eq!(
        (d.global_batch, d.rank_data_stall_fraction.len()),
        (2 * b, 2)
    );
    assert!(d.allreduce_fraction > 0.0 && d.allreduce_fraction < 1.0);
    assert!(summary(&one).distributed.is_none());
}

#[test]
fn two_ranks_train_cnn2d_as_one_process_with_the_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synthetic_csv(dir.path(), 3);
    let config = tiny_config(dir.path(), &csv, 2011, 2012);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("epochs = 1", "epochs = 1\nlog_steps = true"),
    )
    .unwrap();
    two_ranks_match_one_process(dir.path(), &config, 128);
}

#[test]
fn two_ranks_train_lstm_attention_as_one_process_with_the_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let csv = ett_csv(dir.path(), 700);
    let config = small_ett_config(dir.path(), 2);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[data]", &format!("[data]\ninput = \"{}\"", csv.display()))
        .replace("linear_skip = true", "linear_skip = true\ndropout = 0.0");
    std::fs::write(
        &config,
        text.replace("epochs = 2", "epochs = 2\nlog_steps = true"),
    )
    .unwrap();
    two_ranks_match_one_process(dir.path(), &config, 16);
}

/// The PID of rank `rank` of the job training into `artifacts` (Open MPI tells each rank its
/// rank in its environment).
fn rank_pid(artifacts: &Path, rank: usize) -> Option<u32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    let artifacts = artifacts.to_str().unwrap();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let has = |bytes: &[u8], s: &str| bytes.split(|&b| b == 0).any(|v| v == s.as_bytes());
        (has(&env, &wanted) && has(&cmdline, artifacts)).then_some(pid)
    })
}

#[test]
fn a_lost_rank_ends_the_job_naming_it_and_two_ranks_resume_to_the_same_best() {
    let dir = tempfile::tempdir().unwrap();
    let config = checkpointed_tiny_config(dir.path(), 6, 20);

    let reference = dir.path().join("reference");
    train(dir.path(), &config, &reference, &["--ranks", "2"]);

    let killed = dir.path().join("killed");
    let (c, k) = (config.to_str().unwrap(), killed.to_str().unwrap());
    run_stages(dir.path(), c, k, &["prepare"], &[]);
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--ranks", "2", "--config", c, "--artifacts", k])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state = killed.join("train/state.json");
    let t = Instant::now();
    while !state.exists() && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = rank_pid(&killed, 1).expect("rank 1 is running");
    let kill = Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(kill.unwrap().success());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "the job survived a lost rank: {err}");
    assert!(
        err.contains("distributed training failed") && err.contains("rank 1"),
        "the error does not name the lost rank: {err}"
    );

    // The last good checkpoint is intact: its state names weights and optimizer files present.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    for key in ["weights", "optimizer"] {
        let file = killed.join("train").join(saved[key].as_str().unwrap());
        assert!(file.exists(), "{} is missing", file.display());
    }
    let resumed_from = saved["step"].as_u64().unwrap();
    assert!(resumed_from > 0);

    // The number of ranks makes the global batch: resuming on one process is refused.
    let o = xtask(
        &["train", "--config", c, "--artifacts", k, "--resume"],
        dir.path(),
    );
    assert!(!o.status.success(), "a 2-rank run resumed on 1 process");
    assert!(stderr(&o).contains("ranks"), "{}", stderr(&o));

    train(dir.path(), &config, &killed, &["--ranks", "2", "--resume"]);
    let (a, b) = (summary(&reference), summary(&killed));
    assert_eq!(a.steps, b.steps);
    assert!(
        (a.best_val_loss - b.best_val_loss).abs() <= 1e-7 * a.best_val_loss.abs(),
        "best validation loss {} uninterrupted vs {} resumed (from step {resumed_from})",
        a.best_val_loss,
        b.best_val_loss
    );
    assert_eq!(a.best_epoch, b.best_epoch);
}
