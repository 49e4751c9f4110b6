//! Progress: a live bar on a terminal, one plain line per epoch otherwise (logs, CI); silent on
//! the ranks of a distributed run other than the leader, which speaks for all.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    shown: bool,
}

impl Progress {
    /// `shown`: this process reports progress (false on a distributed run's other ranks).
    pub fn new(shown: bool) -> Self {
        Self { bar: None, shown }
    }

    pub fn start_epoch(&mut self, epoch: usize, epochs: usize, steps: u64) {
        if !self.shown || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = ProgressBar::new(steps);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        self.bar = Some(bar);
    }

    pub fn step(&self, loss: Option<f64>) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if let Some(loss) = loss {
                bar.set_message(format!("loss {loss:.4}"));
            }
        }
    }

    /// A line printed above the bar (or plainly), mid-epoch.
    pub fn message(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if self.shown => eprintln!("{line}"),
            None => {}
        }
    }

    /// Ends the epoch with its summary line, on the terminal or as a plain line.
    pub fn finish_epoch(&mut self, line: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.shown {
            eprintln!("{line}");
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new(true)
    }
}
