//! The loader: batches gathered from the memory-mapped window store by worker threads into
//! bounded queues, so the training step rarely waits for data.
//!
//! Workers live as long as the [`Loader`] (across epochs and evaluations). Worker `w` gathers
//! batches `w, w+N, w+2N, …` of a pass into its own queue of depth `prefetch`; the consumer takes
//! batch `i` from queue `i mod N`, so batches arrive in order — the order of a pass is fixed by
//! (seed, epoch) alone, whatever the thread timing. A pass is an iterator ([`Pass`]):
//!
//! ```text
//! for batch in loader.pass(order, batch_size, window) { … }
//! ```

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::{self, JoinHandle};
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

pub(crate) fn gather(data: &PreparedData, starts: &[usize], spec: WindowSpec) -> HostBatch {
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

/// One pass over `order` in batches (`batches`: ranges of `order`), as a worker sees it.
struct Job {
    order: Arc<Vec<usize>>,
    batches: Arc<Vec<Range<usize>>>,
    spec: WindowSpec,
    out: SyncSender<HostBatch>,
}

/// Worker threads over one prepared data set, serving passes of batches.
pub struct Loader {
    jobs: Vec<Sender<Job>>,
    handles: Vec<JoinHandle<()>>,
    prefetch: usize,
}

impl Loader {
    /// `workers` threads (at least one), each `prefetch` batches ahead of the consumer.
    pub fn new(data: Arc<PreparedData>, workers: usize, prefetch: usize) -> Self {
        let workers = workers.max(1);
        let (mut jobs, mut handles) = (Vec::new(), Vec::new());
        for w in 0..workers {
            let (tx, rx) = channel::<Job>();
            let data = data.clone();
            handles.push(thread::spawn(move || {
                for job in rx {
                    for range in job.batches.iter().skip(w).step_by(workers) {
                        let starts = &job.order[range.clone()];
                        if job.out.send(gather(&data, starts, job.spec)).is_err() {
                            break; // the consumer ended the pass early
                        }
                    }
                }
            }));
            jobs.push(tx);
        }
        Self {
            jobs,
            handles,
            prefetch: prefetch.max(1),
        }
    }

    /// One pass over `order` in batches of `batch_size`, in order; dropping the pass early
    /// (an early stop) releases the workers for the next. `&mut self`: a loader serves one pass
    /// at a time (workers take passes in turn, so a second concurrent pass would wait forever).
    pub fn pass(&mut self, order: Vec<usize>, batch_size: usize, spec: WindowSpec) -> Pass<'_> {
        let batches = (0..order.len())
            .step_by(batch_size.max(1))
            .map(|start| start..(start + batch_size).min(order.len()))
            .collect();
        self.pass_ranges(order, batches, spec)
    }

    /// One pass over the given `batches` of `order` (ranges into it, possibly empty), in order:
    /// a rank's shares of a distributed run's global batches.
    pub fn pass_ranges(
        &mut self,
        order: Vec<usize>,
        batches: Vec<Range<usize>>,
        spec: WindowSpec,
    ) -> Pass<'_> {
        let (order, batches) = (Arc::new(order), Arc::new(batches));
        let count = batches.len();
        let queues = self
            .jobs
            .iter()
            .map(|jobs| {
                let (out, rx) = sync_channel(self.prefetch);
                let job = Job {
                    order: order.clone(),
                    batches: batches.clone(),
                    spec,
                    out,
                };
                jobs.send(job)
                    .expect("loader workers live as long as the loader");
                rx
            })
            .collect();
        Pass {
            queues,
            next: 0,
            batches: count,
            waited: Duration::ZERO,
            _loader: PhantomData,
        }
    }
}

/// The batches of one pass, in order, as an iterator; it counts the time spent waiting for
/// them (the data stall).
pub struct Pass<'a> {
    queues: Vec<Receiver<HostBatch>>,
    next: usize,
    batches: usize,
    waited: Duration,
    _loader: PhantomData<&'a mut Loader>,
}

impl Pass<'_> {
    /// Time spent so far waiting for a batch that was not ready.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Iterator for Pass<'_> {
    type Item = HostBatch;

    fn next(&mut self) -> Option<HostBatch> {
        if self.next == self.batches {
            return None;
        }
        let t = Instant::now();
        let batch = self.queues[self.next % self.queues.len()]
            .recv()
            .expect("a worker delivers every batch of its share");
        self.waited += t.elapsed();
        self.next += 1;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batches - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Pass<'_> {}

impl Drop for Loader {
    fn drop(&mut self) {
        self.jobs.clear(); // closes the job channels: workers finish
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
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

    fn store(dir: &std::path::Path) -> Arc<PreparedData> {
        use stoker_artifact::manifest::*;
        use stoker_artifact::{Feature, FeatureKind};
        let path = dir.join("windows.bin");
        let mut w = stoker_artifact::WindowStoreWriter::create(&path, 1).unwrap();
        for t in 0..200 {
            w.push_row(
                &[t as f32],
                t,
                stoker_artifact::INPUT_OK | stoker_artifact::TARGET_OK,
            )
            .unwrap();
        }
        w.finish().unwrap();
        let window = WindowSpec {
            input_len: 3,
            horizon: 1,
            output_len: 1,
            stride: 1,
        };
        let manifest = DatasetManifest {
            format_version: MANIFEST_VERSION,
            source_kind: "test".into(),
            sources: vec![],
            features: vec![Feature {
                name: "t".into(),
                kind: FeatureKind::Numeric,
                mean: 0.0,
                std: 1.0,
            }],
            targets: vec![0],
            target_unit: "x".into(),
            metric_scale: MetricScale::Raw,
            window,
            splits: Splits {
                train: 0..200,
                val: 0..0,
                test: 0..0,
            },
            rows: 200,
            time_step_seconds: 1,
            store_file: "windows.bin".into(),
            shards: vec![],
            quality: QualityReport::default(),
            max_gap: None,
            anc: None,
        };
        manifest.save(dir).unwrap();
        Arc::new(PreparedData::open(dir).unwrap())
    }

    #[test]
    fn batches_arrive_in_order_whatever_the_worker_count_and_workers_persist() {
        let dir = tempfile::tempdir().unwrap();
        let data = store(dir.path());
        let spec = data.manifest.window;
        let order = epoch_order(&data.windows(stoker_artifact::Split::Train, spec), 1, 1);
        let first_inputs = |loader: &mut Loader| -> Vec<usize> {
            loader
                .pass(order.clone(), 7, spec)
                .flat_map(|b| {
                    b.inputs
                        .chunks(3)
                        .map(|w| w[0] as usize)
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for workers in [1, 3, 4] {
            let mut loader = Loader::new(data.clone(), workers, 2);
            // Two passes on the same workers, both complete and in order.
            assert_eq!(first_inputs(&mut loader), order);
            assert_eq!(first_inputs(&mut loader), order);
        }
    }

    #[test]
    fn a_pass_ended_early_does_not_block_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let data = store(dir.path());
        let spec = data.manifest.window;
        let order: Vec<usize> = (0..150).collect();
        let mut loader = Loader::new(data, 2, 1);
        let mut pass = loader.pass(order.clone(), 10, spec);
        assert_eq!(pass.len(), 15);
        assert_eq!(pass.by_ref().take(3).count(), 3);
        drop(pass);
        let count: usize = loader.pass(order, 10, spec).map(|b| b.len).sum();
        assert_eq!(count, 150);
    }
}
