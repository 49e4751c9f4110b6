//! The step-time split on devices that queue work. A GPU backend returns as soon as kernels are
//! queued, so host clocks alone would charge the whole step to whichever phase happens to wait.
//! Synchronising every step would idle the device between steps (the stall stoker exists to
//! remove), so one step in `SYNC_EVERY` is timed with the device synchronised around each phase
//! and the run's host-measured time is split in those steps' proportions.

use stoker_artifact::run::StepTime;

const SYNC_EVERY: u64 = 16;

#[derive(Debug, Default)]
pub struct PhaseClock {
    queued: bool,
    compute_s: f64,
    optimizer_s: f64,
}

impl PhaseClock {
    /// `queued`: the device runs asynchronously to the host (a GPU).
    pub fn new(queued: bool) -> Self {
        Self {
            queued,
            ..Self::default()
        }
    }

    /// Whether this step is one of the synchronised samples.
    pub fn synced(&self, step: u64) -> bool {
        self.queued && step.is_multiple_of(SYNC_EVERY)
    }

    pub fn record(&mut self, compute_s: f64, optimizer_s: f64) {
        self.compute_s += compute_s;
        self.optimizer_s += optimizer_s;
    }

    /// `t` with its compute + optimizer time split as the synchronised steps measured it
    /// (unchanged on the CPU, where the host clock already is the device's).
    pub fn split(&self, t: StepTime) -> StepTime {
        let sampled = self.compute_s + self.optimizer_s;
        if !self.queued || sampled <= 0.0 {
            return t;
        }
        let busy = t.compute_s + t.optimizer_s;
        StepTime {
            compute_s: busy * self.compute_s / sampled,
            optimizer_s: busy * self.optimizer_s / sampled,
            ..t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(compute: f64, optimizer: f64) -> StepTime {
        StepTime {
            data_wait_s: 1.0,
            compute_s: compute,
            optimizer_s: optimizer,
        }
    }

    #[test]
    fn queued_devices_take_the_split_of_the_synced_steps() {
        let mut clock = PhaseClock::new(true);
        assert!(clock.synced(0) && !clock.synced(1) && clock.synced(SYNC_EVERY));
        clock.record(0.3, 0.1);
        // The host saw 1 s of compute and 9 s of "optimizer" (it blocked there on the queue).
        let t = clock.split(time(1.0, 9.0));
        assert!((t.compute_s - 7.5).abs() < 1e-12 && (t.optimizer_s - 2.5).abs() < 1e-12);
        assert_eq!(t.data_wait_s, 1.0);
    }

    #[test]
    fn host_devices_keep_their_clock() {
        let mut clock = PhaseClock::new(false);
        assert!(!clock.synced(0));
        clock.record(0.3, 0.1);
        assert_eq!(clock.split(time(1.0, 9.0)), time(1.0, 9.0));
    }
}
