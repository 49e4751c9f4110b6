//! Timing: medians of repeated runs after warm-up.

use std::time::Instant;

/// The median of a non-empty list (the mean of the middle two of an even count).
pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    (xs[(n - 1) / 2] + xs[n / 2]) / 2.0
}

/// Calls `throughput` makes: its warm-up, then `repeats` runs of `steps`.
pub(crate) fn calls(steps: usize, repeats: usize) -> usize {
    steps.min(3) + repeats * steps
}

/// Median samples/s of `repeats` timed runs of `steps` calls each, after one warm-up run.
pub(crate) fn throughput(
    samples_per_call: usize,
    steps: usize,
    repeats: usize,
    mut call: impl FnMut(),
) -> f64 {
    for _ in 0..steps.min(3) {
        call();
    }
    median(
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..steps {
                    call();
                }
                (steps * samples_per_call) as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}
