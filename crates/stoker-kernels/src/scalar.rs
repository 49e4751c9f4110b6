//! The element types the kernels take: f32, and bf16 with f32 accumulation.

use half::bf16;

use crate::activation::multiversion;
use crate::gemm::{
    Mat, MatMut, PackedBf16, matmul_bf16, matmul_bf16_packed_serial, matmul_bf16_serial,
    matmul_f32, matmul_f32_serial,
};
use crate::recycled::Poolable;

/// `Default` is zero; comparisons order values as numbers.
pub trait Scalar: Poolable + Copy + Default + PartialOrd + Send + Sync + 'static {
    /// c = a·b (+ c when `accumulate`), accumulated in f32.
    fn matmul(c: MatMut<f32>, a: Mat<Self>, b: Mat<Self>, accumulate: bool);
    /// `matmul` on the calling thread only, for callers that parallelise over their own axis.
    fn matmul_serial(c: MatMut<f32>, a: Mat<Self>, b: Mat<Self>, accumulate: bool);
    /// A right operand prepared once for many `matmul_packed_serial` calls: packed for the
    /// native bf16 kernel ([`PackedBf16`]), the view itself for f32 (whose products pack
    /// internally).
    type Packed<'a>: Send + Sync
    where
        Self: 'a;
    fn pack(b: Mat<'_, Self>) -> Self::Packed<'_>;
    /// `matmul_serial` with b prepared by `pack`.
    fn matmul_packed_serial(c: MatMut<f32>, a: Mat<Self>, b: &Self::Packed<'_>, accumulate: bool);
    /// To f32 for elementwise work.
    fn widen(values: &[Self]) -> Vec<f32>;
    /// `widen` into a buffer of the same length.
    fn widen_into(src: &[Self], dst: &mut [f32]);
    /// From f32 results (moves when the type is f32).
    fn narrow(values: Vec<f32>) -> Vec<Self>;
    /// `narrow` into a buffer of the same length.
    fn narrow_into(src: &[f32], dst: &mut [Self]);
    /// The values themselves when the type is f32, so f32 results skip a staging copy.
    fn as_f32(values: &[Self]) -> Option<&[f32]>;
    fn as_f32_mut(values: &mut [Self]) -> Option<&mut [f32]>;
    /// The values themselves when the type is bf16, for loops compiled per type.
    fn as_bf16(values: &[Self]) -> Option<&[bf16]>;
    fn as_bf16_mut(values: &mut [Self]) -> Option<&mut [bf16]>;
    /// `len` zeros from the allocator's zeroed memory (`calloc`: fresh pages come zero from
    /// the OS), not a fill pass over a buffer about to be overwritten anyway.
    fn zeros(len: usize) -> Vec<Self>;
}

impl Scalar for f32 {
    fn matmul(c: MatMut<f32>, a: Mat<f32>, b: Mat<f32>, accumulate: bool) {
        matmul_f32(c, a, b, accumulate)
    }
    fn matmul_serial(c: MatMut<f32>, a: Mat<f32>, b: Mat<f32>, accumulate: bool) {
        matmul_f32_serial(c, a, b, accumulate)
    }
    type Packed<'a> = Mat<'a, f32>;
    fn pack(b: Mat<'_, f32>) -> Mat<'_, f32> {
        b
    }
    fn matmul_packed_serial(c: MatMut<f32>, a: Mat<f32>, b: &Mat<f32>, accumulate: bool) {
        matmul_f32_serial(c, a, *b, accumulate)
    }
    fn widen(values: &[f32]) -> Vec<f32> {
        values.to_vec()
    }
    fn widen_into(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn narrow(values: Vec<f32>) -> Vec<f32> {
        values
    }
    fn narrow_into(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn as_f32(values: &[f32]) -> Option<&[f32]> {
        Some(values)
    }
    fn as_f32_mut(values: &mut [f32]) -> Option<&mut [f32]> {
        Some(values)
    }
    fn as_bf16(_: &[f32]) -> Option<&[bf16]> {
        None
    }
    fn as_bf16_mut(_: &mut [f32]) -> Option<&mut [bf16]> {
        None
    }
    fn zeros(len: usize) -> Vec<f32> {
        vec![0.0; len]
    }
}

impl Scalar for bf16 {
    fn matmul(c: MatMut<f32>, a: Mat<bf16>, b: Mat<bf16>, accumulate: bool) {
        matmul_bf16(c, a, b, accumulate)
    }
    fn matmul_serial(c: MatMut<f32>, a: Mat<bf16>, b: Mat<bf16>, accumulate: bool) {
        matmul_bf16_serial(c, a, b, accumulate)
    }
    type Packed<'a> = PackedBf16<'a>;
    fn pack(b: Mat<'_, bf16>) -> PackedBf16<'_> {
        PackedBf16::new(b)
    }
    fn matmul_packed_serial(c: MatMut<f32>, a: Mat<bf16>, b: &PackedBf16, accumulate: bool) {
        matmul_bf16_packed_serial(c, a, b, accumulate)
    }
    fn widen(values: &[bf16]) -> Vec<f32> {
        let mut out = vec![0f32; values.len()];
        bf16_to_f32(values, &mut out);
        out
    }
    fn widen_into(src: &[bf16], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len(), "widen_into: lengths differ");
        bf16_to_f32(src, dst);
    }
    fn narrow(values: Vec<f32>) -> Vec<bf16> {
        let mut out = bf16::zeros(values.len());
        f32_to_bf16(&values, &mut out);
        out
    }
    fn narrow_into(src: &[f32], dst: &mut [bf16]) {
        assert_eq!(src.len(), dst.len(), "narrow_into: lengths differ");
        f32_to_bf16(src, dst);
    }
    fn as_f32(_: &[bf16]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [bf16]) -> Option<&mut [f32]> {
        None
    }
    fn as_bf16(values: &[bf16]) -> Option<&[bf16]> {
        Some(values)
    }
    fn as_bf16_mut(values: &mut [bf16]) -> Option<&mut [bf16]> {
        Some(values)
    }
    fn zeros(len: usize) -> Vec<bf16> {
        // bf16 is a `repr(transparent)` u16 whose zero bits are 0.0: zeroed u16 memory, moved
        // over whole.
        let mut bits = std::mem::ManuallyDrop::new(vec![0u16; len]);
        let (ptr, len, cap) = (bits.as_mut_ptr(), bits.len(), bits.capacity());
        // SAFETY: same size and alignment; the allocation changes owner, never frees twice.
        unsafe { Vec::from_raw_parts(ptr.cast::<bf16>(), len, cap) }
    }
}

/// f32 → bf16 as `half::bf16::from_f32` rounds (to nearest, ties to even; NaN stays NaN), but
/// branch-free, so conversion loops vectorise.
#[inline(always)]
pub fn round_bf16(v: f32) -> bf16 {
    let bits = v.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    // A NaN stays a (quiet) NaN rather than rounding up into infinity.
    let nan = (bits >> 16) | 0x40;
    bf16::from_bits(if v.is_nan() { nan } else { rounded } as u16)
}

multiversion! {
    fn f32_to_bf16(src: &[f32], dst: &mut [bf16]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = round_bf16(v);
        }
    }
}

multiversion! {
    fn bf16_to_f32(src: &[bf16], dst: &mut [f32]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = f32::from_bits((v.to_bits() as u32) << 16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_conversions_match_half() {
        let mut s = 0x2545_f491u32;
        let values: Vec<f32> = (0..10_000)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                f32::from_bits(s)
            })
            .filter(|v| !v.is_nan())
            .chain([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, 1e-40])
            .collect();
        let low = bf16::narrow(values.clone());
        for (v, l) in values.iter().zip(&low) {
            assert_eq!(l.to_bits(), bf16::from_f32(*v).to_bits(), "{v}");
        }
        let back = bf16::widen(&low);
        for (l, b) in low.iter().zip(&back) {
            assert_eq!(l.to_f32().to_bits(), b.to_bits());
        }
        assert!(round_bf16(f32::NAN).is_nan());
        assert!(round_bf16(f32::from_bits(0x7f80_0001)).is_nan());
    }
}
