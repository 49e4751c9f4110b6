//! The streaming controller allocates nothing once built: an audio callback must not wait on
//! the allocator. Counted by a global allocator that tallies this thread's allocations.

use burn::prelude::Device;
use stoker_artifact::{AncSignals, MultibandAncSpec};
use stoker_infer::{StreamWeights, StreamingController};
use stoker_kernels::testing::{CountingAllocator, allocations_on_this_thread};
use stoker_zoo::MultibandAnc;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn processing_blocks_allocates_nothing() {
    let plant = AncSignals {
        sample_rate: 16_000,
        source_rate: 16_000,
        secondary_path: vec![0.0, 0.6, 0.2],
        primary_taps: 8,
        saturation: 0.0,
        reference_rms: 1.0,
        disturbance_rms: 1.0,
    };
    let spec = MultibandAncSpec {
        filter_taps: 33,
        taps: 64,
        hidden: 96,
        linear_taps: 128,
        ..Default::default()
    };
    let model = MultibandAnc::new(&spec, &plant, &Device::flex()).unwrap();
    let weights = model.weights().unwrap();
    let x: Vec<f32> = (0..20_000).map(|n| (n as f32 * 0.013).sin()).collect();
    for precision in [StreamWeights::F32, StreamWeights::Bf16] {
        for block in [1, 16, 64] {
            let mut controller = StreamingController::new(&weights, precision).unwrap();
            let mut y = vec![0.0; block];
            // The first blocks may warm lazily built state (a kernel's scratch, CPU detection).
            for x in x.chunks_exact(block).take(4) {
                controller.process(x, &mut y);
            }
            let before = allocations_on_this_thread();
            for x in x.chunks_exact(block).skip(4) {
                controller.process(x, &mut y);
            }
            let allocated = allocations_on_this_thread() - before;
            assert_eq!(
                allocated, 0,
                "{precision} blocks of {block}: {allocated} allocations"
            );
        }
    }
}
