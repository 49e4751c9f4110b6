use clap::Parser;
use stoker_infer::export::cli::{ExportArgs, run_export};

stoker_cli::global_allocator!();

/// stoker's export: a trained checkpoint → export/model.safetensors (PyTorch names and
/// layouts) and export/model.json.
#[derive(Parser)]
#[command(name = "stoker-export", version)]
struct Cli {
    #[command(flatten)]
    args: ExportArgs,
}

fn main() -> std::process::ExitCode {
    stoker_cli::exit(run_export(&Cli::parse().args))
}
