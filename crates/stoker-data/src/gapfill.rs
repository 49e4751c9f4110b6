//! Linear interpolation of short gaps in a stream of rows, with memory bounded by the gap.
//!
//! A missing cell is filled only when the gap holding it is at most `max_gap` rows long and has
//! an observed value on both sides. Such a gap closes at most `max_gap` rows after any of its
//! cells, so holding each row back by `max_gap` rows is enough to fill it before it leaves.

use std::collections::VecDeque;

/// A row of numeric cells (`NaN` = missing) with whatever the caller carries along.
pub trait GapRow {
    fn cells(&mut self) -> &mut [f32];
}

pub struct GapFiller<R> {
    max_gap: usize,
    buffer: VecDeque<R>,
    /// Per column: length of the current run of missing cells, and the last observed value.
    runs: Vec<usize>,
    last: Vec<Option<f32>>,
    pub filled: usize,
}

impl<R: GapRow> GapFiller<R> {
    pub fn new(columns: usize, max_gap: usize) -> Self {
        Self {
            max_gap,
            buffer: VecDeque::with_capacity(max_gap + 1),
            runs: vec![0; columns],
            last: vec![None; columns],
            filled: 0,
        }
    }

    /// Takes a row; returns the row that leaves the buffer, if any.
    pub fn push(&mut self, mut row: R) -> Option<R> {
        let cells: Vec<f32> = row.cells().to_vec();
        for (c, &value) in cells.iter().enumerate() {
            if value.is_nan() {
                self.runs[c] += 1;
                continue;
            }
            let run = std::mem::take(&mut self.runs[c]);
            if let (1.., Some(left)) = (run, self.last[c])
                && run <= self.max_gap
            {
                let n = self.buffer.len();
                for k in 0..run {
                    let frac = (k + 1) as f32 / (run + 1) as f32;
                    let prev = &mut self.buffer[n - run + k];
                    prev.cells()[c] = left + (value - left) * frac;
                }
                self.filled += run;
            }
            self.last[c] = Some(value);
        }
        self.buffer.push_back(row);
        if self.buffer.len() > self.max_gap {
            self.buffer.pop_front()
        } else {
            None
        }
    }

    /// The rows still held back, in order.
    pub fn finish(self) -> impl Iterator<Item = R> {
        self.buffer.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone)]
    struct Row(Vec<f32>);
    impl GapRow for Row {
        fn cells(&mut self) -> &mut [f32] {
            &mut self.0
        }
    }

    fn run(values: &[f32], max_gap: usize) -> Vec<f32> {
        let mut f = GapFiller::new(1, max_gap);
        let mut out = Vec::new();
        for &v in values {
            out.extend(f.push(Row(vec![v])).map(|r| r.0[0]));
        }
        out.extend(f.finish().map(|r| r.0[0]));
        out
    }

    #[test]
    fn short_gaps_filled_long_and_open_gaps_kept() {
        let nan = f32::NAN;
        let out = run(&[nan, 1.0, nan, nan, 4.0, nan, nan, nan, nan, 9.0, nan], 3);
        let expected = [nan, 1.0, 2.0, 3.0, 4.0, nan, nan, nan, nan, 9.0, nan];
        assert_eq!(out.len(), expected.len());
        for (a, b) in out.iter().zip(expected) {
            assert!(a == &b || (a.is_nan() && b.is_nan()), "{out:?}");
        }
    }

    #[test]
    fn gap_of_exactly_max_is_filled_with_zero_max_nothing_is() {
        let nan = f32::NAN;
        assert_eq!(run(&[0.0, nan, nan, 3.0], 2), vec![0.0, 1.0, 2.0, 3.0]);
        assert!(run(&[0.0, nan, 2.0], 0)[1].is_nan());
    }
}
