use clap::Parser;
use stoker_infer::cli::{PredictArgs, run_predict};

stoker_cli::global_allocator!();

/// stoker's predict stage: checkpoint + prepared data → predictions and metrics.
#[derive(Parser)]
#[command(name = "stoker-infer", version)]
struct Cli {
    #[command(flatten)]
    args: PredictArgs,
}

fn main() -> std::process::ExitCode {
    stoker_cli::exit(run_predict(&Cli::parse().args))
}
