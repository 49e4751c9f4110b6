//! The export command line, shared by the `stoker-export` binary and `cargo xtask export`.

use anyhow::Result;
use clap::{Args, ValueEnum};
use stoker_artifact::CheckpointChoice;
use stoker_cli::TaskArgs;

use super::{ExportRequest, Exported, export};

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// The weights file's format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Safetensors)]
    pub format: ExportFormat,
    /// Export the `last` checkpoint instead of the configured one (`best` by default).
    #[arg(long)]
    pub last: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// PyTorch's parameter names and layouts, loadable by `bench/peers/models.py`.
    Safetensors,
}

/// Runs export; prints a summary and, as the last line, the path of `model.json`.
pub fn run_export(args: &ExportArgs) -> Result<Exported> {
    let config = args.task.load_config()?;
    let layout = args.task.layout();
    let exported = export(&ExportRequest {
        data_dir: layout.data_dir(),
        train_dir: layout.train_dir(),
        out_dir: layout.export_dir(),
        checkpoint: if args.last {
            CheckpointChoice::Last
        } else {
            config.predict.checkpoint
        },
    })?;
    let source = &exported.meta.checkpoint;
    println!(
        "exported {} tensors of the {} checkpoint (epoch {}) to {}",
        exported.meta.tensors.len(),
        source.name,
        source.epoch,
        exported.weights.display()
    );
    println!("{}", exported.meta_path.display());
    Ok(exported)
}
