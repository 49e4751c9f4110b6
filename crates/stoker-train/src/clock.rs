//! The step clock: where a step's time goes (data wait, forward+backward, the gradients'
//! all-reduce in a distributed run, optimizer).
//!
//! A GPU backend returns as soon as kernels are queued, so host clocks alone would charge the
//! whole step to whichever phase happens to wait. Synchronising every step would idle the device
//! between steps (the stall stoker exists to remove), so one step in `SYNC_EVERY` is timed with
//! the device synchronised around each phase and the run's host-measured time is split in those
//! steps' proportions.

use std::time::Instant;

use burn::prelude::Device;
use stoker_artifact::run::StepTime;

use stoker_runtime::device::{is_gpu, sync};

use crate::error::{Error, Result};

const SYNC_EVERY: u64 = 16;

pub(crate) struct StepClock {
    device: Device,
    device_name: String,
    /// The device runs asynchronously to the host (a GPU).
    queued: bool,
    /// Synchronise every step: a distributed run reads its gradients to the host every step
    /// anyway, so the wait is charged to compute, not to the all-reduce after it.
    every_step: bool,
    /// Forward+backward and optimizer seconds of the synchronised steps.
    compute_s: f64,
    optimizer_s: f64,
}

impl StepClock {
    /// The clock of `device`, opened as `device_name` (a GPU's work is queued).
    pub fn new(device: &Device, device_name: &str) -> Self {
        Self {
            device: device.clone(),
            device_name: device_name.into(),
            queued: is_gpu(device_name),
            every_step: false,
            compute_s: 0.0,
            optimizer_s: 0.0,
        }
    }

    /// Synchronise every step (`yes`: a distributed run).
    pub fn every_step(self, yes: bool) -> Self {
        Self {
            every_step: yes,
            ..self
        }
    }

    /// Starts timing step `step` into `time` (synchronising first if the step is a sample).
    pub fn lap<'a>(&'a mut self, step: u64, time: &'a mut StepTime) -> Result<Lap<'a>> {
        let synced = self.synced(step);
        if synced {
            self.sync()?;
        }
        let now = Instant::now();
        Ok(Lap {
            clock: self,
            time,
            synced,
            compute_start: now,
            optimizer_start: now,
        })
    }

    /// Whether this step is one of the synchronised samples.
    fn synced(&self, step: u64) -> bool {
        self.queued && (self.every_step || step.is_multiple_of(SYNC_EVERY))
    }

    fn sync(&self) -> Result<()> {
        sync(&self.device).map_err(|source| Error::Device {
            device: self.device_name.clone(),
            source,
        })
    }

    fn record(&mut self, compute_s: f64, optimizer_s: f64) {
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

/// One step being timed: forward+backward until [`Lap::computed`], the optimizer until
/// [`Lap::finish`].
pub(crate) struct Lap<'a> {
    clock: &'a mut StepClock,
    time: &'a mut StepTime,
    synced: bool,
    compute_start: Instant,
    optimizer_start: Instant,
}

impl Lap<'_> {
    /// Forward+backward is done; the optimizer phase starts.
    pub fn computed(&mut self) -> Result<()> {
        if self.synced {
            self.clock.sync()?;
        }
        self.optimizer_start = Instant::now();
        self.time.compute_s += (self.optimizer_start - self.compute_start).as_secs_f64();
        Ok(())
    }

    /// The gradients are averaged over the team (after [`Lap::computed`]): the time since is
    /// the all-reduce's, and the optimizer phase starts now.
    pub fn reduced(&mut self) {
        let now = Instant::now();
        self.time.allreduce_s += (now - self.optimizer_start).as_secs_f64();
        self.optimizer_start = now;
    }

    /// The optimizer step is done.
    pub fn finish(self) -> Result<()> {
        if self.synced {
            self.clock.sync()?;
            self.clock.record(
                (self.optimizer_start - self.compute_start).as_secs_f64(),
                self.optimizer_start.elapsed().as_secs_f64(),
            );
        }
        self.time.optimizer_s += self.optimizer_start.elapsed().as_secs_f64();
        Ok(())
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
            ..Default::default()
        }
    }

    #[test]
    fn queued_devices_take_the_split_of_the_synced_steps() {
        let mut clock = StepClock::new(&Device::flex(), "wgpu");
        assert!(clock.synced(0) && !clock.synced(1) && clock.synced(SYNC_EVERY));
        clock.record(0.3, 0.1);
        // The host saw 1 s of compute and 9 s of "optimizer" (it blocked there on the queue).
        let t = clock.split(time(1.0, 9.0));
        assert!((t.compute_s - 7.5).abs() < 1e-12 && (t.optimizer_s - 2.5).abs() < 1e-12);
        assert_eq!(t.data_wait_s, 1.0);
    }

    #[test]
    fn host_devices_keep_their_clock() {
        let mut clock = StepClock::new(&Device::flex(), "cpu");
        assert!(!clock.synced(0));
        clock.record(0.3, 0.1);
        assert_eq!(clock.split(time(1.0, 9.0)), time(1.0, 9.0));
    }
}
