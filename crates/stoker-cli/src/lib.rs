//! # stoker-cli
//!
//! The flags every stage takes ([`TaskArgs`]: `--config`, `--artifacts`; [`DeviceArgs`] where it
//! computes: `--device`, `--no-fusion`), the one way a stage binary ends ([`exit`]: a one-line
//! `error: …` on stderr and a non-zero status), and the allocator every binary installs
//! ([`global_allocator!`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use stoker_artifact::{ArtifactLayout, TaskConfig};

#[doc(hidden)]
pub use mimalloc;

#[derive(Debug, Clone, Args)]
pub struct TaskArgs {
    /// Task config (TOML), e.g. configs/pm25-cnn2d.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Artifacts directory [default: artifacts/<config name>].
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
}

impl TaskArgs {
    pub fn new(config: impl Into<PathBuf>, artifacts: Option<PathBuf>) -> Self {
        Self {
            config: config.into(),
            artifacts,
        }
    }

    pub fn load_config(&self) -> stoker_artifact::Result<TaskConfig> {
        TaskConfig::load(&self.config)
    }

    /// The task name: the config file's stem.
    pub fn task(&self) -> String {
        TaskConfig::name_of(&self.config)
    }

    /// Where the task's artifacts go: `--artifacts`, else `artifacts/<config name>/`.
    pub fn layout(&self) -> ArtifactLayout {
        ArtifactLayout::for_config(&self.config, self.artifacts.as_deref())
    }
}

/// Where a stage computes.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Compute device: cpu (default), wgpu or cuda when built with that feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// GPU devices: run every op as its own kernel (burn's kernel fusion off), to compare
    /// numerics or isolate a fusion problem.
    #[arg(long)]
    pub no_fusion: bool,
}

impl Default for DeviceArgs {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            no_fusion: false,
        }
    }
}

impl DeviceArgs {
    pub fn on(device: &str) -> Self {
        Self {
            device: device.into(),
            ..Self::default()
        }
    }
}

/// Ends a stage binary: success, or the error chain on one line and exit status 1.
pub fn exit<T>(result: anyhow::Result<T>) -> ExitCode {
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Installs mimalloc as the binary's global allocator. A training step frees and reallocates
/// buffers of megabytes; glibc's malloc hands those back to the OS and faults fresh pages in
/// again on every step, while mimalloc keeps them for reuse. Libraries leave the choice to
/// their binary.
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static GLOBAL_ALLOCATOR: $crate::mimalloc::MiMalloc = $crate::mimalloc::MiMalloc;
    };
}
