//! Batch-1 products y = b + Wᵀx for a controller that runs one sample at a time: nothing to
//! reuse a weight across, so each product streams its whole matrix once and its speed is the
//! rate the weights arrive at. The weights are packed once into panels of `PANEL` outputs,
//! input-major inside a panel, so a product reads memory front to back; the AVX2 kernel keeps
//! one panel's outputs in 12 registers, enough independent sums for two FMA pipes of 5 cycles'
//! latency. bf16 weights halve the bytes read and are widened in registers.

use half::bf16;

use crate::activation::multiversion;
use crate::size::expect_len;

/// Outputs per panel: 12 vectors of 8 f32.
pub const PANEL: usize = 96;

/// Input rows `matvec_rows` takes per pass over a panel: 2 rows × 48 outputs are 12 sums,
/// with a weight vector and two broadcasts beside them in AVX2's 16 registers (4 rows × 24
/// outputs need one register more, and the compiler's spill made that kernel latency-bound at
/// 45 GFLOP/s in `cargo xtask bench --only anc-stream` on a Zen 2 core).
pub const ROWS: usize = 2;

/// The weight types a packed matrix holds, each with its AVX2 panel kernels.
pub trait Weight: Copy + Default + Send + Sync + 'static {
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
    /// Where output j of a panel row is stored in the row (the kernel's load order).
    fn slot(j: usize) -> usize {
        j
    }
    /// The type's panel kernels, compiled for AVX2 + FMA (none off x86-64).
    const AVX2: Option<Avx2Kernels<Self>>;
}

/// One weight type's kernels: `sums` over one input row, `rows` over `ROWS` rows at a stride.
/// Both may run only where `cpu::avx2_fma()` holds, on slices `panel_sums` / `panel_rows`
/// checked.
#[derive(Clone, Copy)]
pub struct Avx2Kernels<T: 'static> {
    sums: SumsKernel<T>,
    rows: RowsKernel<T>,
}

/// (panel, x, sums): one input row.
type SumsKernel<T> = unsafe fn(&[T], &[f32], &mut [f32; PANEL]);
/// (panel, x, stride, inputs, sums): `ROWS` input rows.
type RowsKernel<T> = unsafe fn(&[T], &[f32], usize, usize, &mut [[f32; PANEL]; ROWS]);

impl Weight for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    const AVX2: Option<Avx2Kernels<Self>> = Some(Avx2Kernels {
        sums: avx2::panel_sums_f32,
        rows: avx2::panel_rows_f32,
    });
    #[cfg(not(target_arch = "x86_64"))]
    const AVX2: Option<Avx2Kernels<Self>> = None;
}

impl Weight for bf16 {
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    /// Each 16 outputs are stored interleaved, outputs 0–7 in the even slots and 8–15 in the
    /// odd ones: a 32-byte load then widens to two f32 vectors with one shift (the even slots)
    /// and one mask (the odd ones), instead of two zero-extensions and two shifts.
    fn slot(j: usize) -> usize {
        let (group, o) = (j / 16 * 16, j % 16);
        group + if o < 8 { 2 * o } else { 2 * (o - 8) + 1 }
    }
    #[cfg(target_arch = "x86_64")]
    const AVX2: Option<Avx2Kernels<Self>> = Some(Avx2Kernels {
        sums: avx2::panel_sums_bf16,
        rows: avx2::panel_rows_bf16,
    });
    #[cfg(not(target_arch = "x86_64"))]
    const AVX2: Option<Avx2Kernels<Self>> = None;
}

/// One panel's sums Σₖ x[k]·panel[k][j]; `panel` holds `x.len()` rows of `PANEL` weights.
fn panel_sums<T: Weight>(panel: &[T], x: &[f32], sums: &mut [f32; PANEL]) {
    assert_eq!(
        panel.len(),
        x.len() * PANEL,
        "panel_sums: panel of x.len() rows"
    );
    if let Some(k) = T::AVX2.filter(|_| crate::cpu::avx2_fma()) {
        // SAFETY: `avx2_fma` detected the features the kernel is compiled for, and `panel`
        // holds the x.len() rows it reads (checked above).
        return unsafe { (k.sums)(panel, x, sums) };
    }
    portable_panel_sums(panel, x, sums);
}

/// `panel_sums` for `ROWS` rows, row r at x[r·stride ..][..inputs].
fn panel_rows<T: Weight>(
    panel: &[T],
    x: &[f32],
    stride: usize,
    inputs: usize,
    sums: &mut [[f32; PANEL]; ROWS],
) {
    assert!(
        panel.len() == inputs * PANEL && x.len() >= (ROWS - 1) * stride + inputs,
        "panel_rows: panel of `inputs` rows, x spanning every row"
    );
    if let Some(k) = T::AVX2.filter(|_| crate::cpu::avx2_fma()) {
        // SAFETY: `avx2_fma` detected the kernel's features; the panel holds `inputs` rows and
        // x spans every row it reads (checked above).
        return unsafe { (k.rows)(panel, x, stride, inputs, sums) };
    }
    for (r, sums) in sums.iter_mut().enumerate() {
        portable_panel_sums(panel, &x[r * stride..r * stride + inputs], sums);
    }
}

/// An inputs × outputs matrix packed for `matvec`: panel p holds outputs p·PANEL … as
/// `[inputs][PANEL]`, the last panel zero-padded.
#[derive(Debug, Clone)]
pub struct PackedMatrix<T> {
    inputs: usize,
    outputs: usize,
    panels: Vec<T>,
}

impl<T: Weight> PackedMatrix<T> {
    /// Packs `weight`, `[inputs, outputs]` row-major (the layout of a dense layer's weight
    /// that multiplies a row vector). Panics unless it holds inputs × outputs values.
    pub fn pack(weight: &[f32], inputs: usize, outputs: usize) -> Self {
        expect_len(
            "PackedMatrix::pack: weight must be [inputs, outputs]",
            weight.len(),
            &[inputs, outputs],
        );
        let panels_n = outputs.div_ceil(PANEL);
        let mut panels = vec![T::default(); panels_n * inputs * PANEL];
        for (k, row) in weight.chunks_exact(outputs.max(1)).enumerate() {
            for (j, &w) in row.iter().enumerate() {
                panels[(j / PANEL) * inputs * PANEL + k * PANEL + T::slot(j % PANEL)] =
                    T::from_f32(w);
            }
        }
        Self {
            inputs,
            outputs,
            panels,
        }
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Bytes a product reads from the weights.
    pub fn bytes(&self) -> usize {
        self.panels.len() * std::mem::size_of::<T>()
    }

    fn panel(&self, p: usize) -> &[T] {
        &self.panels[p * self.inputs * PANEL..(p + 1) * self.inputs * PANEL]
    }
}

/// y = bias + Wᵀx. Panics unless x has `inputs` values and bias and y `outputs`.
pub fn matvec<T: Weight>(w: &PackedMatrix<T>, x: &[f32], bias: &[f32], y: &mut [f32]) {
    expect_len("matvec: x must have inputs values", x.len(), &[w.inputs]);
    expect_len(
        "matvec: bias must have outputs values",
        bias.len(),
        &[w.outputs],
    );
    expect_len("matvec: y must have outputs values", y.len(), &[w.outputs]);
    let mut sums = [0.0f32; PANEL];
    for (p, (y, bias)) in y.chunks_mut(PANEL).zip(bias.chunks(PANEL)).enumerate() {
        panel_sums(w.panel(p), x, &mut sums);
        for ((y, b), s) in y.iter_mut().zip(bias).zip(&sums) {
            *y = b + s;
        }
    }
}

/// y[r] = bias + Wᵀx_r for `rows` input rows, x_r = x[r·stride ..][..inputs] (rows may
/// overlap: the sliding windows of a signal have stride 1); y is [rows, outputs] row-major.
/// Each panel is read once per `ROWS` rows, and stays in cache across the rows. Panics unless
/// x spans every row and bias and y have their lengths.
pub fn matvec_rows<T: Weight>(
    w: &PackedMatrix<T>,
    x: &[f32],
    stride: usize,
    rows: usize,
    bias: &[f32],
    y: &mut [f32],
) {
    let (inputs, outputs) = (w.inputs, w.outputs);
    expect_len(
        "matvec_rows: bias must have outputs values",
        bias.len(),
        &[outputs],
    );
    expect_len(
        "matvec_rows: y must be [rows, outputs]",
        y.len(),
        &[rows, outputs],
    );
    if rows == 0 {
        return;
    }
    let span = (rows - 1)
        .checked_mul(stride)
        .and_then(|s| s.checked_add(inputs));
    assert!(
        span.is_some_and(|s| s <= x.len()),
        "matvec_rows: x of {} values does not span {rows} rows of {inputs} at stride {stride}",
        x.len()
    );
    let mut sums = [[0.0f32; PANEL]; ROWS];
    for p in 0..outputs.div_ceil(PANEL) {
        let panel = w.panel(p);
        let cols = p * PANEL..outputs.min((p + 1) * PANEL);
        for r0 in (0..rows).step_by(ROWS) {
            let n = ROWS.min(rows - r0);
            let x = &x[r0 * stride..];
            if n == ROWS {
                panel_rows(panel, x, stride, inputs, &mut sums);
            } else {
                for (r, sums) in sums.iter_mut().enumerate().take(n) {
                    panel_sums(panel, &x[r * stride..r * stride + inputs], sums);
                }
            }
            for (r, sums) in sums.iter().enumerate().take(n) {
                let y = &mut y[(r0 + r) * outputs..][cols.clone()];
                for ((y, b), s) in y.iter_mut().zip(&bias[cols.clone()]).zip(sums) {
                    *y = b + s;
                }
            }
        }
    }
}

/// Lanes of `dot`'s partial sums: independent chains the compiler turns into vectors.
const DOT_LANES: usize = 16;

multiversion! {
    /// Σ a[i]·b[i]. Panics unless a and b have the same length.
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        expect_len("dot: b must be as long as a", b.len(), &[a.len()]);
        let mut lanes = [0.0f32; DOT_LANES];
        let (a_chunks, b_chunks) = (a.chunks_exact(DOT_LANES), b.chunks_exact(DOT_LANES));
        let tail: f32 = a_chunks
            .remainder()
            .iter()
            .zip(b_chunks.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (a, b) in a_chunks.zip(b_chunks) {
            for ((l, x), y) in lanes.iter_mut().zip(a).zip(b) {
                *l += x * y;
            }
        }
        lanes.iter().sum::<f32>() + tail
    }
}

fn portable_panel_sums<T: Weight>(panel: &[T], x: &[f32], sums: &mut [f32; PANEL]) {
    // Summed in storage order, then put in output order.
    let mut by_slot = [0.0f32; PANEL];
    for (row, &xk) in panel.chunks_exact(PANEL).zip(x) {
        for (s, &w) in by_slot.iter_mut().zip(row) {
            *s += xk * w.to_f32();
        }
    }
    for (j, s) in sums.iter_mut().enumerate() {
        *s = by_slot[T::slot(j)];
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use half::bf16;

    use super::{PANEL, ROWS};

    /// 16 f32 weights from `p`: outputs 0–7 and 8–15.
    ///
    /// # Safety
    /// The CPU has AVX2; `p` points at 16 readable f32.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load16_f32(p: *const f32) -> [__m256; 2] {
        // SAFETY: the caller's contract; unaligned loads.
        unsafe { [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))] }
    }

    /// 16 bf16 weights from `p`, stored as `Weight::slot` says (outputs 0–7 in the even
    /// slots, 8–15 in the odd ones), widened to f32: a bf16 is the top half of an f32, so the
    /// even slots shift into place and the odd ones are already there once masked.
    ///
    /// # Safety
    /// The CPU has AVX2; `p` points at 16 readable bf16 (32 bytes).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load16_bf16(p: *const bf16) -> [__m256; 2] {
        // SAFETY: the caller's contract; unaligned load.
        let raw = unsafe { _mm256_loadu_si256(p.cast()) };
        let high = _mm256_set1_epi32(0xFFFF_0000_u32 as i32);
        [
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(raw)),
            _mm256_castsi256_ps(_mm256_and_si256(raw, high)),
        ]
    }

    /// Defines the one-row and `ROWS`-row panel kernels for one weight type.
    macro_rules! panel_kernels {
        ($one:ident, $rows:ident, $t:ty, $load:ident, $cols:expr) => {
            /// Σₖ x[k]·panel[k][j] for the panel's PANEL outputs: 12 independent sums.
            ///
            /// # Safety
            /// The CPU has AVX2 and FMA; `panel` holds at least `x.len()` × PANEL values.
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn $one(panel: &[$t], x: &[f32], sums: &mut [f32; PANEL]) {
                let mut acc = [_mm256_setzero_ps(); PANEL / 8];
                let mut row = panel.as_ptr();
                for &xk in x {
                    let xb = _mm256_set1_ps(xk);
                    for (g, pair) in acc.chunks_exact_mut(2).enumerate() {
                        // SAFETY: row k's PANEL values lie inside `panel` (x.len() rows).
                        let w = unsafe { $load(row.add(16 * g)) };
                        pair[0] = _mm256_fmadd_ps(xb, w[0], pair[0]);
                        pair[1] = _mm256_fmadd_ps(xb, w[1], pair[1]);
                    }
                    // SAFETY: at most one past the panel's last row.
                    row = unsafe { row.add(PANEL) };
                }
                for (v, a) in acc.iter().enumerate() {
                    // SAFETY: `sums` holds PANEL = 8 × acc.len() values.
                    unsafe { _mm256_storeu_ps(sums.as_mut_ptr().add(8 * v), *a) };
                }
            }

            /// The same for ROWS input rows at once, row r at x[r·stride ..][..inputs]: each
            /// weight loaded once feeds ROWS sums, COLS outputs × ROWS rows at a time.
            ///
            /// # Safety
            /// The CPU has AVX2 and FMA; `panel` holds at least `inputs` × PANEL values and
            /// `x` at least (ROWS − 1)·stride + inputs.
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn $rows(
                panel: &[$t],
                x: &[f32],
                stride: usize,
                inputs: usize,
                sums: &mut [[f32; PANEL]; ROWS],
            ) {
                const COLS: usize = $cols;
                for c0 in (0..PANEL).step_by(COLS) {
                    let mut acc = [[_mm256_setzero_ps(); COLS / 8]; ROWS];
                    // SAFETY (both pointers): column c0 of row 0, inside `panel` / `x`.
                    let mut w = unsafe { panel.as_ptr().add(c0) };
                    let mut xk = x.as_ptr();
                    for _ in 0..inputs {
                        // SAFETY: x[r·stride + k] with r < ROWS, k < inputs: inside `x`.
                        let xb: [__m256; ROWS] =
                            std::array::from_fn(|r| _mm256_set1_ps(unsafe { *xk.add(r * stride) }));
                        for g in 0..COLS / 16 {
                            // SAFETY: row k of the panel holds PANEL ≥ c0 + COLS values.
                            let wv = unsafe { $load(w.add(16 * g)) };
                            for (acc, xb) in acc.iter_mut().zip(&xb) {
                                acc[2 * g] = _mm256_fmadd_ps(*xb, wv[0], acc[2 * g]);
                                acc[2 * g + 1] = _mm256_fmadd_ps(*xb, wv[1], acc[2 * g + 1]);
                            }
                        }
                        // SAFETY: at most one past the last row of the panel / of x's rows.
                        unsafe {
                            w = w.add(PANEL);
                            xk = xk.add(1);
                        }
                    }
                    for (sums, acc) in sums.iter_mut().zip(&acc) {
                        for (v, a) in acc.iter().enumerate() {
                            // SAFETY: c0 + 8v + 8 ≤ PANEL.
                            unsafe { _mm256_storeu_ps(sums.as_mut_ptr().add(c0 + 8 * v), *a) };
                        }
                    }
                }
            }
        };
    }

    // ROWS × COLS sums in registers beside ROWS broadcasts and the weights being widened:
    // 2 × 48 for f32; bf16's mask and widening take two more registers, so 2 × 32 (at 2 × 48
    // the compiler spilled sums and the kernel ran at half speed).
    panel_kernels!(panel_sums_f32, panel_rows_f32, f32, load16_f32, 48);
    panel_kernels!(panel_sums_bf16, panel_rows_bf16, bf16, load16_bf16, 32);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(w: &[f32], x: &[f32], bias: &[f32], outputs: usize) -> Vec<f64> {
        (0..outputs)
            .map(|j| {
                f64::from(bias[j])
                    + x.iter()
                        .enumerate()
                        .map(|(k, &xk)| f64::from(xk) * f64::from(w[k * outputs + j]))
                        .sum::<f64>()
            })
            .collect()
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0) - 1.0)
            .collect()
    }

    #[test]
    fn f32_and_bf16_match_the_naive_product_across_panel_edges() {
        for (inputs, outputs) in [(1, 1), (3, 95), (17, 96), (16, 97), (256, 384), (5, 200)] {
            let w = values(inputs * outputs, 1);
            let (x, bias) = (values(inputs, 2), values(outputs, 3));
            let want = naive(&w, &x, &bias, outputs);
            let mut y = vec![f32::NAN; outputs];
            matvec(
                &PackedMatrix::<f32>::pack(&w, inputs, outputs),
                &x,
                &bias,
                &mut y,
            );
            for (j, (&got, &want)) in y.iter().zip(&want).enumerate() {
                let tol = 1e-5 * (1.0 + inputs as f64).sqrt();
                assert!(
                    (f64::from(got) - want).abs() < tol,
                    "f32 {inputs}x{outputs} y[{j}] = {got}, want {want}"
                );
            }
            // bf16 rounds each weight to 8 significant bits: compare with the rounded weights.
            let rounded: Vec<f32> = w.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
            let want = naive(&rounded, &x, &bias, outputs);
            matvec(
                &PackedMatrix::<bf16>::pack(&w, inputs, outputs),
                &x,
                &bias,
                &mut y,
            );
            for (j, (&got, &want)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(got) - want).abs() < 1e-4 * (1.0 + inputs as f64).sqrt(),
                    "bf16 {inputs}x{outputs} y[{j}] = {got}, want {want}"
                );
            }
        }
    }

    #[test]
    fn rows_match_one_product_per_row_on_overlapping_and_separate_rows() {
        for (inputs, outputs, rows) in [(16, 100, 9), (7, 96, 4), (256, 384, 6), (3, 5, 1)] {
            let w = values(inputs * outputs, 6);
            let bias = values(outputs, 7);
            for stride in [1, inputs] {
                let x = values((rows - 1) * stride + inputs, 8);
                let mut want = vec![0.0; outputs];
                let mut y = vec![f32::NAN; rows * outputs];
                let f = PackedMatrix::<f32>::pack(&w, inputs, outputs);
                let b = PackedMatrix::<bf16>::pack(&w, inputs, outputs);
                matvec_rows(&f, &x, stride, rows, &bias, &mut y);
                for r in 0..rows {
                    let x = &x[r * stride..r * stride + inputs];
                    matvec(&f, x, &bias, &mut want);
                    let got = &y[r * outputs..(r + 1) * outputs];
                    for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() < 1e-5,
                            "f32 {inputs}x{outputs} row {r} y[{j}]"
                        );
                    }
                }
                matvec_rows(&b, &x, stride, rows, &bias, &mut y);
                for r in 0..rows {
                    let x = &x[r * stride..r * stride + inputs];
                    matvec(&b, x, &bias, &mut want);
                    let got = &y[r * outputs..(r + 1) * outputs];
                    for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() < 1e-5,
                            "bf16 {inputs}x{outputs} row {r} y[{j}]"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "does not span")]
    fn rows_beyond_x_are_refused() {
        let w = PackedMatrix::<f32>::pack(&[1.0; 6], 2, 3);
        matvec_rows(&w, &[1.0; 4], 1, 4, &[0.0; 3], &mut [0.0; 12]);
    }

    #[test]
    fn dot_sums_every_product_including_the_tail() {
        for n in [0, 1, 15, 16, 17, 129, 512] {
            let (a, b) = (values(n, 4), values(n, 5));
            let want: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!(
                (f64::from(dot(&a, &b)) - want).abs() < 1e-5 * (1.0 + n as f64),
                "n = {n}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "y must have outputs values")]
    fn a_short_output_is_refused() {
        let w = PackedMatrix::<f32>::pack(&[1.0; 6], 2, 3);
        matvec(&w, &[1.0, 2.0], &[0.0; 3], &mut [0.0; 2]);
    }
}
