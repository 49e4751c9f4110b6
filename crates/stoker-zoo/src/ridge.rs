//! Closed-form warm start for a channel-independent linear map from an input window to the
//! output steps: ridge regression over every (window, target) series of the train split, on
//! per-series standardised values (the same instance normalisation the model applies).

use stoker_artifact::{WindowSpec, WindowStore};

/// Weights [output_len × input_len] and bias [output_len] minimising
/// Σ ‖y − (W·x + b)‖² + λ‖W‖² over the standardised series.
pub struct LinearFit {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

pub fn fit(
    store: &WindowStore,
    starts: &[usize],
    spec: WindowSpec,
    targets: &[usize],
    lambda: f64,
) -> LinearFit {
    let (l, s) = (spec.input_len, spec.output_len);
    let n = l + 1; // inputs plus a constant for the bias
    let mut xtx = vec![0f64; n * n];
    let mut xty = vec![0f64; n * s];
    let mut x = vec![0f64; n];
    let cols = store.cols();
    for &start in starts {
        let window = store.window(start, spec);
        let target_rows = store.rows_slice(spec.target_rows(start));
        for &c in targets {
            let series = window.iter().skip(c).step_by(cols).map(|&v| f64::from(v));
            let mean = series.clone().sum::<f64>() / l as f64;
            let std =
                (series.clone().map(|v| (v - mean).powi(2)).sum::<f64>() / l as f64 + 1e-5).sqrt();
            for (xi, v) in x.iter_mut().zip(series) {
                *xi = (v - mean) / std;
            }
            x[l] = 1.0;
            for i in 0..n {
                let xi = x[i];
                let row = &mut xtx[i * n..i * n + i + 1];
                for (a, &xj) in row.iter_mut().zip(&x[..=i]) {
                    *a += xi * xj;
                }
            }
            for k in 0..s {
                let y = (f64::from(target_rows[k * cols + c]) - mean) / std;
                for i in 0..n {
                    xty[i * s + k] += x[i] * y;
                }
            }
        }
    }
    for i in 0..n {
        for j in 0..i {
            xtx[j * n + i] = xtx[i * n + j];
        }
        if i < l {
            xtx[i * n + i] += lambda;
        }
    }
    let solution = cholesky_solve(&mut xtx, n, &xty, s);
    let mut weight = vec![0f32; s * l];
    for k in 0..s {
        for i in 0..l {
            weight[k * l + i] = solution[i * s + k] as f32;
        }
    }
    let bias = (0..s).map(|k| solution[l * s + k] as f32).collect();
    LinearFit { weight, bias }
}

/// Solves A·X = B for symmetric positive-definite A [n × n] (overwritten by its factor) and
/// B [n × m], both row-major.
fn cholesky_solve(a: &mut [f64], n: usize, b: &[f64], m: usize) -> Vec<f64> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        let d = d.max(1e-12).sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut v = a[i * n + j];
            for k in 0..j {
                v -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = v / d;
        }
    }
    let mut x = b.to_vec();
    for c in 0..m {
        for i in 0..n {
            let mut v = x[i * m + c];
            for k in 0..i {
                v -= a[i * n + k] * x[k * m + c];
            }
            x[i * m + c] = v / a[i * n + i];
        }
        for i in (0..n).rev() {
            let mut v = x[i * m + c];
            for k in i + 1..n {
                v -= a[k * n + i] * x[k * m + c];
            }
            x[i * m + c] = v / a[i * n + i];
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let x = cholesky_solve(&mut a, 2, &[2.0, 1.0, 5.0, 4.0], 2);
        // [[4,2],[2,3]]·X = [[2,1],[5,4]] → X = [[-0.5,-0.625],[2,1.75]]
        let expected = [-0.5, -0.625, 2.0, 1.75];
        assert!(
            x.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12),
            "{x:?}"
        );
    }

    /// Mean squared error of `weight`/`bias` over the standardised series, as `fit` sees them.
    fn loss(
        store: &WindowStore,
        starts: &[usize],
        spec: WindowSpec,
        weight: &[f32],
        bias: f32,
    ) -> f64 {
        let mut total = 0.0;
        for &s in starts {
            let x: Vec<f64> = store
                .window(s, spec)
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let mean = x.iter().sum::<f64>() / x.len() as f64;
            let std =
                (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64 + 1e-5).sqrt();
            let y = (f64::from(store.value(spec.first_target_row(s), 0)) - mean) / std;
            let p: f64 = x
                .iter()
                .zip(weight)
                .map(|(v, &w)| (v - mean) / std * f64::from(w))
                .sum::<f64>()
                + f64::from(bias);
            total += (y - p).powi(2);
        }
        total / starts.len() as f64
    }

    #[test]
    fn least_squares_beats_persistence_on_its_own_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        let mut w = stoker_artifact::WindowStoreWriter::create(&path, 1).unwrap();
        for t in 0..400 {
            let v = (t as f32 * 0.3).sin() + 0.3 * (t as f32 * 1.7).cos() + 0.01 * t as f32;
            w.push_row(
                &[v],
                t,
                stoker_artifact::INPUT_OK | stoker_artifact::TARGET_OK,
            )
            .unwrap();
        }
        w.finish().unwrap();
        let store = WindowStore::open(&path).unwrap();
        let spec = WindowSpec {
            input_len: 8,
            horizon: 1,
            output_len: 1,
            stride: 1,
        };
        let starts = store.window_starts(spec, 0..400);
        let fit = fit(&store, &starts, spec, &[0], 1e-6);
        let mut persistence = vec![0.0; 8];
        persistence[7] = 1.0;
        let fitted = loss(&store, &starts, spec, &fit.weight, fit.bias[0]);
        let naive = loss(&store, &starts, spec, &persistence, 0.0);
        assert!(
            fitted < 0.5 * naive,
            "fitted {fitted} vs persistence {naive}"
        );
    }
}
