//! The processes training one model together, data-parallel: one process alone ([`Team::solo`])
//! or the ranks of an MPI job (`mpirun -np N`, Slurm's `srun`, a Kubeflow MPIJob), with the
//! `mpi` feature. Rank 0 leads: it alone writes artifacts.
//!
//! The collective operations are the few the trainer needs — sums, gathers, a barrier — on host
//! buffers; a solo team's are the identity. burn 0.22 has no collective across processes, so
//! MPI carries them (see `docs/DISTRIBUTED.md`).

use std::ops::Range;
use std::process::Command;

use burn::optim::GradientsParams;
use stoker_zoo::Model;

use crate::error::{Error, Result};

pub struct Team {
    place: Place,
    #[cfg(feature = "mpi")]
    mpi: Option<mpi_world::MpiWorld>,
}

/// Where a process stands in its team: its rank among all and among those on its machine.
#[derive(Debug, Clone, Copy)]
struct Place {
    rank: usize,
    size: usize,
    local_rank: usize,
    local_size: usize,
}

/// This build can train across processes (the `mpi` feature).
pub const MPI: bool = cfg!(feature = "mpi");

/// Environment variables a launcher sets for every rank it starts: Open MPI's `mpirun`, PMI
/// (Slurm's `srun --mpi=pmi2`, MPICH) and PMIx (`srun --mpi=pmix`, Open MPI), which may not
/// say the size.
const LAUNCHER_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"];
#[cfg(not(feature = "mpi"))]
const LAUNCHER_SIZE_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"];

/// Whether an MPI launcher started this process.
fn launched() -> bool {
    LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some())
}

/// The number of ranks the launcher says this process is one of, where it says.
#[cfg(not(feature = "mpi"))]
fn launched_size() -> Option<usize> {
    LAUNCHER_SIZE_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

impl Team {
    /// One process, training alone.
    pub fn solo() -> Self {
        Self {
            place: Place {
                rank: 0,
                size: 1,
                local_rank: 0,
                local_size: 1,
            },
            #[cfg(feature = "mpi")]
            mpi: None,
        }
    }

    /// The team the launcher started this process in: its MPI world under `mpirun` / `srun`
    /// (with the `mpi` feature), else solo. A build without MPI started as one of several ranks
    /// is refused: the ranks would each train alone into the same directory.
    pub fn from_launcher() -> Result<Self> {
        if !launched() {
            return Ok(Self::solo());
        }
        #[cfg(feature = "mpi")]
        {
            mpi_world::MpiWorld::init().map(|w| Self {
                place: w.place,
                mpi: Some(w),
            })
        }
        #[cfg(not(feature = "mpi"))]
        {
            if let Some(size) = launched_size().filter(|&n| n > 1) {
                return Err(Error::Settings(format!(
                    "started as one of {size} MPI ranks, but this build has no MPI: rebuild with \
                     `--features mpi` (cargo run --release -p xtask --features mpi -- train \
                     --ranks {size} …)"
                )));
            }
            Ok(Self::solo())
        }
    }

    /// This process's rank, 0 ≤ rank < size.
    pub fn rank(&self) -> usize {
        self.place.rank
    }

    /// This process's rank among the ranks on its machine (its GPU's index there).
    pub fn local_rank(&self) -> usize {
        self.place.local_rank
    }

    /// The ranks on this machine, this one included.
    pub fn local_size(&self) -> usize {
        self.place.local_size
    }

    pub fn size(&self) -> usize {
        self.place.size
    }

    /// Rank 0: the one rank that writes checkpoints, metrics and the summary.
    pub fn leads(&self) -> bool {
        self.rank() == 0
    }

    pub fn is_solo(&self) -> bool {
        self.size() == 1
    }

    /// This rank's contiguous share of `len` items; the ranks' shares differ by one at most.
    pub fn share(&self, len: usize) -> Range<usize> {
        share(len, self.rank(), self.size())
    }

    /// Every rank's `buf`, summed element-wise, into every rank's `buf`.
    pub(crate) fn sum_f32(&self, buf: &mut [f32]) {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.mpi {
            w.sum(buf);
        }
        let _ = buf;
    }

    pub(crate) fn sum_f64(&self, buf: &mut [f64]) {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.mpi {
            w.sum(buf);
        }
        let _ = buf;
    }

    /// Every rank's `value`, in rank order.
    pub(crate) fn gather_u64(&self, value: u64) -> Vec<u64> {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.mpi {
            return w.gather(value);
        }
        vec![value]
    }

    pub(crate) fn gather_f64(&self, value: f64) -> Vec<f64> {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.mpi {
            return w.gather(value);
        }
        vec![value]
    }

    /// Replaces `grads` (this rank's, for its `weight` = its windows / the global batch's) by
    /// the global batch's gradients; returns the global mean loss from this rank's `loss`.
    /// Every rank calls it at the same step (the trainer does; public for benchmarks).
    pub fn average_gradients(
        &self,
        model: &Model,
        grads: &mut GradientsParams,
        weight: f32,
        loss: f32,
    ) -> f32 {
        crate::allreduce::average_gradients(self, model, grads, weight, loss)
    }

    /// Waits until every rank reaches this point.
    pub fn barrier(&self) {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.mpi {
            w.barrier();
        }
    }

    /// Ends the whole job after this rank failed, so the others do not wait for it forever.
    /// A solo team returns (the caller exits as usual).
    pub fn abort(&self, code: i32) {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.mpi
            && self.place.size > 1
        {
            w.abort(code);
        }
        let _ = code;
    }

    /// Checks that every rank holds the same `checksum` of its weights (at `step`).
    pub(crate) fn check_same_weights(&self, checksum: u64, step: u64) -> Result<()> {
        let all = self.gather_u64(checksum);
        match all.iter().position(|&c| c != all[0]) {
            None => Ok(()),
            Some(rank) => Err(Error::Settings(format!(
                "step {step}: the weights of rank {rank} differ from rank 0's (checksums \
                 {:016x} and {:016x}): the ranks no longer train one model",
                all[rank], all[0]
            ))),
        }
    }
}

/// Rank `rank` of `ranks`' contiguous share of `len` items.
pub(crate) fn share(len: usize, rank: usize, ranks: usize) -> Range<usize> {
    len * rank / ranks..len * (rank + 1) / ranks
}

/// `mpirun -np ranks` on this machine, ready for the program and its arguments: ranks may
/// outnumber cores (`--oversubscribe`), are not pinned (each runs loader threads beside its
/// compute threads), and may run as root (containers and CI do).
pub fn mpirun(ranks: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "-np",
        &ranks.to_string(),
        "--oversubscribe",
        "--bind-to",
        "none",
    ])
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}

#[cfg(feature = "mpi")]
mod mpi_world {
    use mpi::collective::{CommunicatorCollectives, SystemOperation};
    use mpi::datatype::Equivalence;
    use mpi::environment::Universe;
    use mpi::topology::{Communicator, SimpleCommunicator};

    use super::Place;
    use crate::error::{Error, Result};

    pub(super) struct MpiWorld {
        pub place: Place,
        world: SimpleCommunicator,
        /// Finalises MPI when dropped: after the world's last use.
        _universe: Universe,
    }

    impl MpiWorld {
        pub fn init() -> Result<Self> {
            // Funneled: loader and monitor threads never call MPI; only the training thread.
            let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)
                .ok_or_else(|| Error::Settings("MPI was already initialised".into()))?;
            let world = universe.world();
            let (rank, size) = (world.rank() as usize, world.size() as usize);
            // The ranks on this machine share its cores (unless RAYON_NUM_THREADS says).
            let machine = world.split_shared(world.rank());
            let (local_rank, local) = (machine.rank() as usize, machine.size().max(1) as usize);
            if std::env::var_os("RAYON_NUM_THREADS").is_none() {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                let _ = rayon::ThreadPoolBuilder::new()
                    .num_threads((cores / local).max(1))
                    .build_global();
            }
            Ok(Self {
                place: Place {
                    rank,
                    size,
                    local_rank,
                    local_size: local,
                },
                world,
                _universe: universe,
            })
        }

        pub fn sum<T: Equivalence + Copy>(&self, buf: &mut [T]) {
            let send = buf.to_vec();
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
        }

        pub fn gather<T: Equivalence + Copy + Default>(&self, value: T) -> Vec<T> {
            let mut all = vec![T::default(); self.place.size];
            self.world.all_gather_into(&value, &mut all[..]);
            all
        }

        pub fn barrier(&self) {
            self.world.barrier();
        }

        pub fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
    }
}
