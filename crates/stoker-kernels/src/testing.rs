//! Deterministic inputs for the kernels' tests and speed examples.

/// `n` values spread over [−half_range, half_range) by an xorshift sequence from `seed`.
pub fn pseudo_random(n: usize, seed: u32, half_range: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            ((s % 2000) as f32 / 1000.0 - 1.0) * half_range
        })
        .collect()
}
