//! Deterministic inputs and timing for the kernels' tests and speed examples.

use std::time::Instant;

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

/// CPU time of all this process's threads so far, in ns (Linux; 0 elsewhere). Unlike wall time
/// it does not count the time other processes take the cores, so it stays meaningful on a busy
/// machine (rayon's idle spinning does count).
pub fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Timings of `reps` runs after one warm-up, in ms.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub median: f64,
    pub best: f64,
    /// Mean CPU time of all threads per run.
    pub cpu: f64,
}

pub fn time(reps: usize, mut f: impl FnMut()) -> Timing {
    f();
    let cpu = cpu_ns();
    let mut ms: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cpu = (cpu_ns() - cpu) as f64 * 1e-6 / reps as f64;
    ms.sort_by(f64::total_cmp);
    Timing {
        median: ms[reps / 2],
        best: ms[0],
        cpu,
    }
}

/// A global allocator that counts this thread's allocations, for tests that a hot path
/// allocates nothing: `#[global_allocator] static A: CountingAllocator = CountingAllocator;`
/// then compare [`allocations_on_this_thread`] before and after.
pub struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Allocations (and reallocations) this thread made through [`CountingAllocator`].
pub fn allocations_on_this_thread() -> usize {
    ALLOCATIONS.with(std::cell::Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator; the tally is a
// const-initialised thread-local counter, which allocates nothing itself.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}
