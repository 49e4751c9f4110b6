//! Streaming mean and standard deviation (Welford), fitted on the train split only.

#[derive(Debug, Clone, Copy, Default)]
pub struct RunningStats {
    count: u64,
    mean: f64,
    m2: f64,
}

impl RunningStats {
    /// Adds a value; NaN (missing) is ignored.
    pub fn push(&mut self, value: f32) {
        if value.is_nan() {
            return;
        }
        let x = f64::from(value);
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Population standard deviation; 1 for constant or empty columns so that scaling is safe.
    pub fn std(&self) -> f64 {
        let std = if self.count > 0 {
            (self.m2 / self.count as f64).sqrt()
        } else {
            0.0
        };
        if std > 1e-12 { std } else { 1.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_two_pass_and_ignores_nan() {
        let mut s = RunningStats::default();
        for v in [1.0, 2.0, f32::NAN, 4.0, 7.0] {
            s.push(v);
        }
        assert!((s.mean() - 3.5).abs() < 1e-12);
        let var = [1.0f64, 2.0, 4.0, 7.0]
            .iter()
            .map(|x| (x - 3.5).powi(2))
            .sum::<f64>()
            / 4.0;
        assert!((s.std() - var.sqrt()).abs() < 1e-12);
        assert_eq!(RunningStats::default().std(), 1.0);
    }
}
