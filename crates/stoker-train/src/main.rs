use clap::Parser;
use stoker_train::cli::{TrainArgs, run_train};

stoker_cli::global_allocator!();

/// stoker's train stage: prepared data → checkpoints, metrics log, run summary.
#[derive(Parser)]
#[command(name = "stoker-train", version)]
struct Cli {
    #[command(flatten)]
    args: TrainArgs,
}

fn main() -> std::process::ExitCode {
    stoker_cli::exit(run_train(&Cli::parse().args))
}
