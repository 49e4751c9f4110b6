//! One figure of a model row over the `--rounds`, beside its PyTorch peer: the medians and
//! the per-round ratios the table prints.

use crate::measure::median;

/// One figure of a row (train or infer samples/s) over the rounds.
#[derive(Debug, PartialEq)]
pub(crate) struct Figure {
    /// Median of stoker's figures.
    pub ours: f64,
    /// Median of PyTorch's, over the rounds its peer ran.
    pub theirs: Option<f64>,
    /// stoker / PyTorch of each round both ran. Each pair ran minutes apart at most, so its
    /// ratio holds while the host's speed drifts between rounds; the median ratio is the figure
    /// to quote, not median(ours) / median(theirs).
    pub ratios: Vec<f64>,
}

impl Figure {
    /// From each round's stoker figure and PyTorch's (None: the peer did not run).
    pub fn over(rounds: &[(f64, Option<f64>)]) -> Figure {
        let theirs: Vec<f64> = rounds.iter().filter_map(|r| r.1).collect();
        Figure {
            ours: median(rounds.iter().map(|r| r.0).collect()),
            theirs: (!theirs.is_empty()).then(|| median(theirs)),
            ratios: rounds.iter().filter_map(|&(o, t)| Some(o / t?)).collect(),
        }
    }

    /// Median, min and max of the per-round ratios.
    pub fn ratio(&self) -> Option<(f64, f64, f64)> {
        let min = self.ratios.iter().copied().reduce(f64::min)?;
        let max = self.ratios.iter().copied().reduce(f64::max)?;
        Some((median(self.ratios.clone()), min, max))
    }

    /// The table's cells: stoker, PyTorch, ratio, [min–max].
    pub fn cells(&self) -> String {
        let theirs = self.theirs.map_or("-".into(), |t| format!("{t:.0}"));
        let (ratio, range) = self
            .ratio()
            .map_or(("-".into(), String::new()), |(m, lo, hi)| {
                (format!("{m:.2}"), format!("[{lo:.2}–{hi:.2}]"))
            });
        format!("{:>12.0} {theirs:>12} {ratio:>6} {range:<11}", self.ours)
    }
}

/// Prints the medians table: one line per (model, precision) with its train and infer figures.
pub(crate) fn print_table(rounds: usize, table: &[(&str, &str, Figure, Figure)]) {
    println!(
        "\nmedians over {rounds} round(s); ratio = stoker / PyTorch, the median of the per-round ratios [min–max]",
    );
    println!(
        "{:<16} {:<11} {:>12} {:>12} {:>6} {:<11} {:>12} {:>12} {:>6} [min–max]",
        "model", "precision", "train", "torch", "ratio", "[min–max]", "infer", "torch", "ratio"
    );
    for (model, precision, train, infer) in table {
        let line = format!(
            "{model:<16} {precision:<11} {} {}",
            train.cells(),
            infer.cells()
        );
        println!("{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_per_round_then_median_and_range() {
        // The host slowed down in round 2; the peer did not run in round 4.
        let f = Figure::over(&[
            (100.0, Some(100.0)),
            (60.0, Some(40.0)),
            (90.0, Some(100.0)),
            (50.0, None),
        ]);
        assert_eq!(f.ratios, vec![1.0, 1.5, 0.9]);
        assert_eq!(f.ours, 75.0); // the mean of the middle two of four
        assert_eq!(f.theirs, Some(100.0));
        // The median of the per-round ratios, not median(ours) / median(theirs) = 0.75.
        assert_eq!(f.ratio(), Some((1.0, 0.9, 1.5)));
        let even = Figure::over(&[(3.0, Some(1.0)), (1.0, Some(1.0))]);
        assert_eq!(even.ratio(), Some((2.0, 1.0, 3.0)));
        let alone = Figure::over(&[(5.0, None)]);
        assert_eq!((alone.ours, alone.theirs, alone.ratio()), (5.0, None, None));
    }
}
