//! Size arithmetic for the kernels' shape checks: a shape whose sizes overflow `usize` is a
//! caller's error, reported as one (release builds would otherwise wrap to a small size that a
//! short slice might match).

/// The product of `dims`; panics naming `what` when it overflows.
pub(crate) fn product(what: &str, dims: &[usize]) -> usize {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or_else(|| panic!("{what}: size {dims:?} overflows usize"))
}

/// Panics naming `what` unless `len` is the product of `dims`.
pub(crate) fn expect_len(what: &str, len: usize, dims: &[usize]) {
    let want = product(what, dims);
    assert!(
        len == want,
        "{what}: length {len}, expected {want} ({dims:?})"
    );
}
