//! The process-wide pools that recycle the kernels' large scratch buffers between calls (the
//! LSTM's tape and gate gradients, the dense layers' dz and weight-gradient partials): a fresh
//! buffer of megabytes per call costs its zeroing, or its page faults, every training step.

use std::sync::Mutex;

use half::bf16;

/// An element type of pooled buffers (f32 and bf16; a supertrait of [`crate::scalar::Scalar`],
/// public only so that it can be one).
pub trait Poolable: Copy + Default + Send + 'static {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>>;
}

static POOL_F32: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
static POOL_BF16: Mutex<Vec<Vec<bf16>>> = Mutex::new(Vec::new());

impl Poolable for f32 {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>> {
        &POOL_F32
    }
}

impl Poolable for bf16 {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>> {
        &POOL_BF16
    }
}

/// Buffers shorter than this are plain allocations.
const POOL_MIN_LEN: usize = if cfg!(test) { 1 << 10 } else { 1 << 16 };
/// Buffers the pool holds per element type at most.
const POOL_MAX_BUFFERS: usize = 16;

/// A large buffer from the pool, returned to it on drop. Its contents on `take` are
/// unspecified (stale values of an earlier use): every user overwrites all of it.
pub(crate) struct Buf<T: Poolable>(Vec<T>);

impl<T: Poolable> Buf<T> {
    pub(crate) fn take(len: usize) -> Self {
        if len >= POOL_MIN_LEN {
            let mut pool = T::pool().lock().unwrap_or_else(|e| e.into_inner());
            // The same length (the usual case: the same layer again), else the tightest
            // capacity that wastes at most half of it.
            let exact = pool.iter().rposition(|v| v.len() == len);
            let fit = exact.or_else(|| {
                (0..pool.len())
                    .filter(|&k| (len..=2 * len).contains(&pool[k].capacity()))
                    .min_by_key(|&k| pool[k].capacity())
            });
            if let Some(k) = fit {
                let mut v = pool.swap_remove(k);
                v.resize(len, T::default());
                return Self(v);
            }
        }
        Self(vec![T::default(); len])
    }

    /// The buffer, leaving the pool for good.
    pub(crate) fn into_vec(mut self) -> Vec<T> {
        std::mem::take(&mut self.0)
    }
}

impl<T: Poolable> Drop for Buf<T> {
    fn drop(&mut self) {
        if self.0.len() >= POOL_MIN_LEN {
            let mut pool = T::pool().lock().unwrap_or_else(|e| e.into_inner());
            // The oldest buffer makes room (and is freed once the lock is released).
            let _evicted = (pool.len() >= POOL_MAX_BUFFERS).then(|| pool.remove(0));
            pool.push(std::mem::take(&mut self.0));
        }
    }
}

impl<T: Poolable> Clone for Buf<T> {
    fn clone(&self) -> Self {
        let mut copy = Self::take(self.0.len());
        copy.0.copy_from_slice(&self.0);
        copy
    }
}

impl<T: Poolable> std::ops::Deref for Buf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Poolable> std::ops::DerefMut for Buf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}
