//! Batches for one epoch, gathered from the memory-mapped store on a background thread into a
//! bounded queue, so the training step rarely waits for data.

use std::sync::mpsc::sync_channel;
use std::thread;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use stoker_artifact::{PreparedData, WindowSpec};

/// Host-side batch: inputs [B, L, F] and targets [B, output_len × targets], row-major.
pub struct HostBatch {
    pub inputs: Vec<f32>,
    pub targets: Vec<f32>,
    pub len: usize,
}

/// The order of windows in an epoch: a permutation fixed by (seed, epoch).
pub fn epoch_order(windows: &[usize], seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = windows.to_vec();
    let mut rng = StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

pub fn gather(data: &PreparedData, starts: &[usize], spec: WindowSpec) -> HostBatch {
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    data.store.gather_inputs(starts, spec, &mut inputs);
    data.store
        .gather_targets(starts, spec, &data.manifest.targets, &mut targets);
    HostBatch {
        inputs,
        targets,
        len: starts.len(),
    }
}

/// Runs `consume` over the batches of `order`, with up to `prefetch` batches gathered ahead.
/// Returns the time spent waiting for batches (the data stall).
pub fn for_each_batch<E>(
    data: &PreparedData,
    spec: WindowSpec,
    order: &[usize],
    batch_size: usize,
    prefetch: usize,
    mut consume: impl FnMut(HostBatch) -> Result<(), E>,
) -> Result<Duration, E> {
    thread::scope(|scope| {
        let (tx, rx) = sync_channel(prefetch.max(1));
        scope.spawn(move || {
            for chunk in order.chunks(batch_size) {
                if tx.send(gather(data, chunk, spec)).is_err() {
                    break; // the consumer stopped early
                }
            }
        });
        let mut waited = Duration::ZERO;
        loop {
            let t = Instant::now();
            let Ok(batch) = rx.recv() else { break };
            waited += t.elapsed();
            consume(batch)?;
        }
        Ok(waited)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_permutation_fixed_by_seed_and_epoch() {
        let windows: Vec<usize> = (10..110).collect();
        let a = epoch_order(&windows, 7, 1);
        assert_eq!(a, epoch_order(&windows, 7, 1));
        assert_ne!(a, epoch_order(&windows, 7, 2));
        assert_ne!(a, epoch_order(&windows, 8, 1));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, windows);
    }
}
