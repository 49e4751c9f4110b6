//! 2×2 max pooling with stride 2 (NCHW, floor: a trailing odd row or column is dropped), with
//! the argmax kept as one byte per output so the backward is a scatter, not a search.

use rayon::prelude::*;

use crate::scalar::Scalar;

/// Output [planes, H/2, W/2] and the argmax of each output within its window (0..4, row-major).
pub fn max_pool2x2_forward<T: Scalar>(
    x: &[T],
    planes: usize,
    height: usize,
    width: usize,
) -> (Vec<T>, Vec<u8>) {
    let (oh, ow) = (height / 2, width / 2);
    let mut y = vec![T::default(); planes * oh * ow];
    let mut arg = vec![0u8; planes * oh * ow];
    if oh * ow == 0 {
        return (y, arg);
    }
    y.par_chunks_mut(oh * ow)
        .zip(arg.par_chunks_mut(oh * ow))
        .zip(x.par_chunks(height * width))
        .for_each(|((y, arg), x)| {
            for i in 0..oh {
                let (top, bottom) = (&x[2 * i * width..], &x[(2 * i + 1) * width..]);
                for j in 0..ow {
                    let window = [top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]];
                    let mut best = 0;
                    for (k, &v) in window.iter().enumerate().skip(1) {
                        if beats(v, window[best]) {
                            best = k;
                        }
                    }
                    y[i * ow + j] = window[best];
                    arg[i * ow + j] = best as u8;
                }
            }
        });
    (y, arg)
}

/// Whether `v` takes over as a window's maximum: larger, or NaN (NaN wins, as in PyTorch, and
/// then stays).
#[allow(clippy::eq_op)] // `x != x` is the NaN test of a generic float
fn beats<T: PartialOrd>(v: T, max: T) -> bool {
    max == max && (v > max || v != v)
}

/// The input gradient [planes, H, W]: each output's gradient goes to its argmax, zeros elsewhere.
pub fn max_pool2x2_backward<T: Scalar>(
    dy: &[T],
    arg: &[u8],
    planes: usize,
    height: usize,
    width: usize,
) -> Vec<T> {
    let (oh, ow) = (height / 2, width / 2);
    let mut dx = vec![T::default(); planes * height * width];
    if oh * ow == 0 {
        return dx;
    }
    dx.par_chunks_mut(height * width)
        .zip(dy.par_chunks(oh * ow))
        .zip(arg.par_chunks(oh * ow))
        .for_each(|((dx, dy), arg)| {
            for i in 0..oh {
                for j in 0..ow {
                    let k = arg[i * ow + j] as usize;
                    dx[(2 * i + k / 2) * width + 2 * j + k % 2] = dy[i * ow + j];
                }
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_the_max_of_each_window_and_routes_gradients_to_it() {
        // Two planes of 3×5: the last row and column fall outside every window.
        let x: Vec<f32> = (0..30).map(|k| ((k * 7 % 11) as f32) - 5.0).collect();
        let (y, arg) = max_pool2x2_forward(&x, 2, 3, 5);
        assert_eq!(y.len(), 2 * 2);
        for p in 0..2 {
            for j in 0..2 {
                let at = |r: usize, c: usize| x[p * 15 + r * 5 + c];
                let want = [
                    at(0, 2 * j),
                    at(0, 2 * j + 1),
                    at(1, 2 * j),
                    at(1, 2 * j + 1),
                ]
                .into_iter()
                .fold(f32::MIN, f32::max);
                assert_eq!(y[p * 2 + j], want);
            }
        }
        let dy = [1.0, 2.0, 3.0, 4.0];
        let dx = max_pool2x2_backward(&dy, &arg, 2, 3, 5);
        assert_eq!(dx.iter().sum::<f32>(), 10.0);
        for (k, &g) in dx.iter().enumerate() {
            if g != 0.0 {
                let (p, r, c) = (k / 15, k % 15 / 5, k % 5);
                assert_eq!(x[k], y[p * 2 + c / 2], "gradient at a non-max ({r}, {c})");
                assert_eq!(g, dy[p * 2 + c / 2]);
            }
        }
    }

    #[test]
    fn nan_propagates() {
        let x = [1.0, f32::NAN, 0.0, 2.0];
        assert!(max_pool2x2_forward(&x, 1, 2, 2).0[0].is_nan());
    }
}
