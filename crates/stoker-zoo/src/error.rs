//! The zoo's errors: a model that cannot be built from its spec, a checkpoint that cannot be
//! written or read.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A control model (multiband ANC) needs the acoustic plant of its data.
    #[error("a {kind} model needs ANC data (its secondary path and rate): the data has none")]
    MissingPlant { kind: &'static str },
    /// The ANC model's band split cannot be designed from its spec.
    #[error("the multiband-anc model's filter bank: {0}")]
    FilterBank(#[from] stoker_dsp::DesignError),
    #[error("checkpoint weights must be named {expected}, not {found}")]
    WeightsName { expected: String, found: String },
    #[error("{}: not found: run the train stage first (cargo xtask train --config …)", .0.display())]
    NotFound(PathBuf),
    #[error("{}: cannot write weights: {message}", path.display())]
    SaveWeights { path: PathBuf, message: String },
    #[error("{}: cannot load weights: {message}", path.display())]
    LoadWeights { path: PathBuf, message: String },
    /// A checkpoint's metadata describes a model that cannot be built (`message`: why).
    #[error("{}: {message}", path.display())]
    Metadata { path: PathBuf, message: String },
    #[error(transparent)]
    Artifact(#[from] stoker_artifact::ArtifactError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
