//! `cargo xtask train --ranks N`: the train stage, data-parallel on N processes of this machine
//! under Open MPI's `mpirun` (a build with the `mpi` feature). Each rank runs this same binary's
//! `train` with the other flags unchanged; see `docs/DISTRIBUTED.md` for several machines.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use clap::Args;
use stoker_train::cli::{TrainArgs, run_train};
use stoker_train::mpirun;

#[derive(Args)]
pub struct XTrainArgs {
    #[command(flatten)]
    pub train: TrainArgs,
    /// Train data-parallel on N processes of this machine under `mpirun` (a build with
    /// `--features mpi`); `batch_size` is each process's batch.
    #[arg(long, value_name = "N")]
    pub ranks: Option<usize>,
}

pub fn train(args: &XTrainArgs) -> Result<()> {
    match args.ranks {
        None => run_train(&args.train).map(drop),
        Some(0) => bail!("--ranks 0: expected at least one process"),
        Some(ranks) if !cfg!(feature = "mpi") => bail!(
            "--ranks {ranks} needs a build with MPI: install Open MPI (Debian: openmpi-bin \
             libopenmpi-dev libclang-dev), then `cargo run --release -p xtask --features mpi -- \
             train --ranks {ranks} …`"
        ),
        Some(ranks) => launch(ranks, args),
    }
}

/// Runs `mpirun -np ranks` ([`mpirun`]) over this binary's `train` (the command line less
/// `--ranks`); a lost rank's report is echoed and named in the error.
fn launch(ranks: usize, args: &XTrainArgs) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the xtask binary to launch")?;
    let mut child = mpirun(ranks)
        .arg(exe)
        .args(without_ranks(std::env::args().skip(1)))
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start `mpirun` (Debian: apt-get install openmpi-bin)")?;
    let mut lost = None;
    let stderr = child.stderr.take().expect("stderr was piped");
    for line in BufReader::new(stderr).lines() {
        let line = line.context("cannot read mpirun's output")?;
        let _ = writeln!(std::io::stderr(), "{line}");
        lost = lost.or_else(|| lost_rank(&line));
    }
    let status = child.wait().context("mpirun did not finish")?;
    if status.success() {
        return Ok(());
    }
    let train_dir = args.train.task.layout().train_dir();
    bail!(
        "distributed training failed ({}): {}; the last good checkpoint stays in {} — continue \
         with `train --resume --ranks {ranks}`",
        status,
        lost.unwrap_or_else(|| "see the ranks' messages above".into()),
        train_dir.display()
    )
}

/// The command line without `--ranks N` / `--ranks=N`.
fn without_ranks(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in args {
        if skip_value {
            skip_value = false;
        } else if a == "--ranks" {
            skip_value = true;
        } else if !a.starts_with("--ranks=") {
            out.push(a);
        }
    }
    out
}

/// `rank 1 exited on signal 9 (Killed)` from mpirun's report of a lost process, or the rank
/// that called MPI_ABORT.
fn lost_rank(line: &str) -> Option<String> {
    if let Some(at) = line.find("noticed that process rank ") {
        let rest = &line[at + "noticed that process ".len()..];
        let rank: String = rest
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let how = rest
            .find(" exited")
            .map_or("", |i| rest[i..].trim_end_matches('.'));
        return Some(format!("{rank}{how}"));
    }
    let at = line.find("MPI_ABORT was invoked on rank ")?;
    let rank = line[at + "MPI_ABORT was invoked on ".len()..]
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    Some(format!("{rank} failed (its error is above)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_removed_from_the_command_line_and_a_lost_rank_is_named() {
        let args = [
            "train",
            "--ranks",
            "2",
            "--config",
            "c.toml",
            "--ranks=3",
            "--resume",
        ];
        assert_eq!(
            without_ranks(args.iter().map(|s| s.to_string())),
            ["train", "--config", "c.toml", "--resume"]
        );
        let report = "mpirun noticed that process rank 1 with PID 4242 on node box exited on \
                      signal 9 (Killed).";
        assert_eq!(
            lost_rank(report).unwrap(),
            "rank 1 exited on signal 9 (Killed)"
        );
        let abort = "MPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD";
        assert_eq!(
            lost_rank(abort).unwrap(),
            "rank 0 failed (its error is above)"
        );
        assert_eq!(lost_rank("epoch 1/3 step 20"), None);
    }
}
