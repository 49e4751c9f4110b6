use clap::{Parser, Subcommand};
use stoker_data::cli::{ApplyArgs, PrepareArgs, SynthArgs, run_apply, run_prepare, run_synth};

stoker_cli::global_allocator!();

/// stoker's prepare stage: raw data → Parquet shards + window store + manifest.
#[derive(Parser)]
#[command(name = "stoker-data", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prepare a task's data.
    Prepare(PrepareArgs),
    /// Apply mode: a new file, read with the training data's reader, checked against its
    /// columns, gap-filled and normalised with its train statistics, for predict --input-data.
    Apply(ApplyArgs),
    /// Write the synthetic PM2.5-format series used by the default job (--out FILE), or a
    /// synthetic ANC setup (--anc DIR).
    Synth(SynthArgs),
}

fn main() -> std::process::ExitCode {
    stoker_cli::exit(match Cli::parse().command {
        Command::Prepare(args) => run_prepare(&args).map(drop),
        Command::Apply(args) => run_apply(&args).map(drop),
        Command::Synth(args) => run_synth(&args).map(drop),
    })
}
