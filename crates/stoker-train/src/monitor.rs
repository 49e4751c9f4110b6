//! Utilisation monitor: samples device utilisation and memory on a background thread. On the
//! CPU device the process *is* the device, so that is the process's CPU use and resident set;
//! on GPU devices it is NVML's counters where the build has the `nvml` feature and the NVIDIA
//! driver answers, otherwise the process's CPU use, labelled as such.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Utilisation {
    /// Mean and standard deviation over the samples, in % of capacity (all cores on the CPU).
    pub mean_percent: f64,
    pub std_percent: f64,
    pub samples: usize,
    /// What was sampled: `process-cpu` or `nvml`.
    pub source: &'static str,
    /// Peak memory in use, bytes: the device's (NVML) or the process's resident set (0 where
    /// the OS does not say); and the capacity it is bounded by (device or machine memory).
    pub peak_memory_bytes: u64,
    pub memory_total_bytes: Option<u64>,
    /// Mean busy share of the whole machine's CPUs (this process and any other), % — tells
    /// a run that idles from one that shares the machine.
    pub machine_percent: Option<f64>,
}

/// One reading of a counter source.
struct Reading {
    pub percent: Option<f64>,
    pub device_memory_bytes: Option<u64>,
}

/// Utilisation as the process's share of all cores between two calls.
struct ProcessCpu {
    cores: f64,
    last: (Instant, Option<f64>),
}

impl ProcessCpu {
    fn new() -> Self {
        Self {
            cores: thread::available_parallelism().map_or(1, |n| n.get()) as f64,
            last: (Instant::now(), cpu_seconds()),
        }
    }

    fn read(&mut self) -> Reading {
        let (now, cpu) = (Instant::now(), cpu_seconds());
        let percent = match (self.last.1, cpu) {
            (Some(a), Some(b)) => {
                let wall = now.duration_since(self.last.0).as_secs_f64();
                Some(100.0 * (b - a) / (wall * self.cores))
            }
            _ => None,
        };
        self.last = (now, cpu);
        Reading {
            percent,
            device_memory_bytes: None,
        }
    }
}

enum Counters {
    Process(ProcessCpu),
    #[cfg(feature = "nvml")]
    // NVML's function table is large; the sampler owns one for the whole run.
    Nvml(Box<crate::nvml::NvmlCounters>),
}

impl Counters {
    /// NVML for GPU devices when it answers; the process's CPU use otherwise.
    fn open(gpu: bool) -> Self {
        #[cfg(feature = "nvml")]
        if gpu {
            match crate::nvml::NvmlCounters::open() {
                Ok(nvml) => return Self::Nvml(Box::new(nvml)),
                Err(e) => eprintln!(
                    "utilisation: NVML unavailable ({e}); reporting the process's CPU use"
                ),
            }
        }
        let _ = gpu;
        Self::Process(ProcessCpu::new())
    }

    fn source(&self) -> &'static str {
        match self {
            Self::Process(_) => "process-cpu",
            #[cfg(feature = "nvml")]
            Self::Nvml(_) => "nvml",
        }
    }

    fn total_memory(&self) -> Option<u64> {
        match self {
            Self::Process(_) => host_memory_total_bytes(),
            #[cfg(feature = "nvml")]
            Self::Nvml(n) => n.total_memory(),
        }
    }

    fn read(&mut self) -> Reading {
        match self {
            Self::Process(p) => p.read(),
            #[cfg(feature = "nvml")]
            Self::Nvml(n) => {
                let (percent, device_memory_bytes) = n.read();
                Reading {
                    percent,
                    device_memory_bytes,
                }
            }
        }
    }
}

/// CPU seconds (user + system) this process has used, from /proc (Linux); None elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Busy and total time of all CPUs (jiffies), from /proc/stat (None elsewhere).
fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    // cpu user nice system idle iowait irq softirq steal …
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some((total - idle, total))
}

/// The machine's memory, bytes, from /proc/meminfo (None elsewhere).
pub fn host_memory_total_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

pub struct Monitor {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Trace>,
}

impl Monitor {
    /// `gpu`: the run's device is a GPU, so its own counters are wanted where available.
    pub fn start(period: Duration, gpu: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut counters = Counters::open(gpu);
            let mut trace = Trace {
                source: counters.source(),
                total_memory: counters.total_memory(),
                ..Trace::default()
            };
            let mut machine = machine_jiffies();
            while !flag.load(Ordering::Relaxed) {
                thread::sleep(period);
                let now = machine_jiffies();
                if let (Some((busy0, total0)), Some((busy1, total1))) = (machine, now)
                    && total1 > total0
                {
                    let share = (busy1 - busy0) as f64 / (total1 - total0) as f64;
                    trace.machine.push(100.0 * share);
                }
                machine = now;
                let r = counters.read();
                trace.percent.extend(r.percent);
                if let Some(m) = r.device_memory_bytes {
                    trace.peak_memory = Some(trace.peak_memory.unwrap_or(0).max(m));
                }
            }
            trace
        });
        Self { stop, handle }
    }

    pub fn finish(self) -> Utilisation {
        self.stop.store(true, Ordering::Relaxed);
        let trace = self.handle.join().unwrap_or_default();
        let samples = &trace.percent;
        let n = samples.len().max(1) as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
        Utilisation {
            mean_percent: mean,
            std_percent: var.sqrt(),
            samples: samples.len(),
            source: trace.source,
            peak_memory_bytes: trace.peak_memory.unwrap_or_else(peak_rss_bytes),
            memory_total_bytes: trace.total_memory,
            machine_percent: (!trace.machine.is_empty())
                .then(|| trace.machine.iter().sum::<f64>() / trace.machine.len() as f64),
        }
    }
}

/// What the sampling thread collected.
#[derive(Default)]
struct Trace {
    source: &'static str,
    percent: Vec<f64>,
    machine: Vec<f64>,
    peak_memory: Option<u64>,
    total_memory: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilisation_agrees_with_the_process_cpu_time() {
        let (cpu0, t0) = (cpu_seconds().unwrap(), Instant::now());
        let monitor = Monitor::start(Duration::from_millis(20), false);
        let mut x = 0u64;
        while t0.elapsed() < Duration::from_millis(400) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let u = monitor.finish();
        // The same quantity measured once over the whole interval; other load on the machine
        // changes both alike, so they must agree whatever the machine is doing.
        let cores = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let whole = 100.0 * (cpu_seconds().unwrap() - cpu0) / (t0.elapsed().as_secs_f64() * cores);
        assert!(u.samples >= 5, "{u:?}");
        assert!(whole > 0.0, "a spinning thread used no CPU?");
        assert!(
            (u.mean_percent - whole).abs() <= 0.5 * whole + 5.0,
            "{u:?} vs {whole:.1} %"
        );
        assert!(u.peak_memory_bytes > 0);
        assert!(
            u.memory_total_bytes
                .is_some_and(|t| t > u.peak_memory_bytes)
        );
        assert_eq!(u.source, "process-cpu");
        // The machine is at least as busy as this process on it.
        let machine = u.machine_percent.expect("/proc/stat on Linux");
        // Both are quantised to 10 ms ticks per 20 ms sample, hence the slack.
        assert!(
            (0.0..=100.0).contains(&machine) && machine + 15.0 >= u.mean_percent,
            "{u:?}"
        );
    }
}
