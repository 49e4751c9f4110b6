//! What bounds a run and which knob to turn — the usual "why is my GPU idle" table, applied to
//! the run's own measurements.

use stoker_artifact::run::{Diagnosis, StepTime};

use crate::monitor::Utilisation;

/// Data stall above this share of step time means the loader bounds the run.
const STALL_LIMIT: f64 = 0.05;
/// The gradients' all-reduce above this share of step time means the ranks wait on each other.
const COMMUNICATION_LIMIT: f64 = 0.2;
/// The optimizer step above this share of step time means steps are too small.
const OPTIMIZER_LIMIT: f64 = 0.3;
/// Device utilisation below this (% of capacity) with no stall means the host is the limit.
const IDLE_LIMIT: f64 = 50.0;
/// Peak memory above this share of capacity: the next larger batch or model will not fit.
const MEMORY_LIMIT: f64 = 0.9;
/// The machine this much busier than the run (% points): other processes took the CPU.
const OTHER_LOAD_LIMIT: f64 = 25.0;

pub fn diagnose(time: &StepTime, util: &Utilisation, batch_size: usize, mixed: bool) -> Diagnosis {
    let total = time.total_s().max(1e-12);
    let stall = time.data_wait_s / total;
    let communication = time.allreduce_s / total;
    let optimizer = time.optimizer_s / total;
    let memory = util.memory_total_bytes.map_or(0.0, |total| {
        util.peak_memory_bytes as f64 / total.max(1) as f64
    });
    let (bound, advice) = if memory > MEMORY_LIMIT {
        (
            "memory",
            format!(
                "peak memory reached {:.0} % of capacity: lower batch_size (now {batch_size}){}",
                memory * 100.0,
                if mixed {
                    " or raise accumulate to keep the effective batch"
                } else {
                    ", or use bf16-mixed to halve activation memory"
                }
            ),
        )
    } else if stall > STALL_LIMIT {
        (
            "data loading",
            format!(
                "the step waited for data {:.0} % of the time: raise train.workers and train.prefetch",
                stall * 100.0
            ),
        )
    } else if communication > COMMUNICATION_LIMIT {
        (
            "communication",
            format!(
                "averaging gradients over the ranks takes {:.0} % of step time: raise batch_size (now {batch_size} a rank) so each exchange carries more samples, or use fewer ranks or a faster interconnect",
                communication * 100.0
            ),
        )
    } else if optimizer > OPTIMIZER_LIMIT {
        (
            "optimizer / host synchronisation",
            format!(
                "the optimizer step takes {:.0} % of step time: raise batch_size (now {batch_size}) so each update carries more samples",
                optimizer * 100.0
            ),
        )
    } else if util.samples > 0
        && util.mean_percent < IDLE_LIMIT
        && util.source == "process-cpu"
        && util
            .machine_percent
            .is_some_and(|m| m - util.mean_percent > OTHER_LOAD_LIMIT)
    {
        (
            "a shared machine",
            format!(
                "other processes kept the CPUs {:.0} % busy beside this run's {:.0} %: its throughput understates the hardware; measure on an idle machine",
                util.machine_percent.unwrap_or(0.0) - util.mean_percent,
                util.mean_percent
            ),
        )
    } else if util.samples > 0 && util.mean_percent < IDLE_LIMIT {
        (
            "host synchronisation",
            format!(
                "the device is busy only {:.0} % of the time with no data stall: raise batch_size (now {batch_size}) to give each kernel more work",
                util.mean_percent
            ),
        )
    } else {
        (
            "compute",
            if mixed {
                "the data pipeline keeps up and the device is busy: a larger batch or a faster device is what is left".into()
            } else {
                "the data pipeline keeps up and the device is busy: go faster with a lower precision (bf16-mixed) or a larger batch".into()
            },
        )
    };
    Diagnosis {
        bound: bound.into(),
        advice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(data: f64, compute: f64, optimizer: f64) -> StepTime {
        StepTime {
            data_wait_s: data,
            compute_s: compute,
            optimizer_s: optimizer,
            ..Default::default()
        }
    }

    fn busy(p: f64) -> Utilisation {
        Utilisation {
            mean_percent: p,
            std_percent: 1.0,
            samples: 10,
            source: "process-cpu",
            peak_memory_bytes: 1,
            memory_total_bytes: Some(100),
            machine_percent: Some(p),
        }
    }

    #[test]
    fn each_bound_is_named_with_its_knob() {
        let d = diagnose(&time(3.0, 6.0, 1.0), &busy(90.0), 64, false);
        assert_eq!(d.bound, "data loading");
        assert!(d.advice.contains("workers"));
        let d = diagnose(&time(0.0, 5.0, 5.0), &busy(90.0), 64, false);
        assert!(d.bound.starts_with("optimizer") && d.advice.contains("batch_size"));
        let exchanging = StepTime {
            allreduce_s: 4.0,
            ..time(0.0, 5.0, 1.0)
        };
        let d = diagnose(&exchanging, &busy(90.0), 64, false);
        assert_eq!(d.bound, "communication");
        assert!(d.advice.contains("40 %") && d.advice.contains("batch_size"));
        let d = diagnose(&time(0.0, 9.0, 1.0), &busy(20.0), 64, false);
        assert_eq!(d.bound, "host synchronisation");
        let shared = Utilisation {
            machine_percent: Some(90.0),
            ..busy(20.0)
        };
        let d = diagnose(&time(0.0, 9.0, 1.0), &shared, 64, false);
        assert_eq!(d.bound, "a shared machine");
        assert!(d.advice.contains("70 %"), "{}", d.advice);
        let d = diagnose(&time(0.0, 9.0, 1.0), &busy(95.0), 64, false);
        assert_eq!(d.bound, "compute");
        assert!(d.advice.contains("bf16"));
        let d = diagnose(&time(0.0, 9.0, 1.0), &busy(95.0), 64, true);
        assert!(!d.advice.contains("bf16"), "already mixed: {}", d.advice);
        let full = Utilisation {
            peak_memory_bytes: 95,
            ..busy(95.0)
        };
        let d = diagnose(&time(3.0, 6.0, 1.0), &full, 64, false);
        assert_eq!(d.bound, "memory");
        assert!(d.advice.contains("batch_size") && d.advice.contains("bf16"));
    }
}
