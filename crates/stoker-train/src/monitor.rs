//! Utilisation monitor: samples the process's CPU use and resident memory on a background
//! thread. On CPU devices the process *is* the device, so this is the device utilisation; GPU
//! counters (NVML) belong behind the `cuda` feature.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Utilisation {
    /// Mean and standard deviation of CPU use over the samples, in % of all cores.
    pub mean_percent: f64,
    pub std_percent: f64,
    pub samples: usize,
    /// Peak resident set size of the process, bytes (0 where the OS does not say).
    pub peak_rss_bytes: u64,
}

pub struct Monitor {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<f64>>,
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

impl Monitor {
    pub fn start(period: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let cores = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let handle = thread::spawn(move || {
            let mut samples = Vec::new();
            let (mut last_t, mut last_cpu) = (Instant::now(), cpu_seconds());
            while !flag.load(Ordering::Relaxed) {
                thread::sleep(period);
                let (now, cpu) = (Instant::now(), cpu_seconds());
                if let (Some(a), Some(b)) = (last_cpu, cpu) {
                    let wall = now.duration_since(last_t).as_secs_f64();
                    samples.push(100.0 * (b - a) / (wall * cores));
                }
                (last_t, last_cpu) = (now, cpu);
            }
            samples
        });
        Self { stop, handle }
    }

    pub fn finish(self) -> Utilisation {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.handle.join().unwrap_or_default();
        let n = samples.len().max(1) as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
        Utilisation {
            mean_percent: mean,
            std_percent: var.sqrt(),
            samples: samples.len(),
            peak_rss_bytes: peak_rss_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilisation_agrees_with_the_process_cpu_time() {
        let (cpu0, t0) = (cpu_seconds().unwrap(), Instant::now());
        let monitor = Monitor::start(Duration::from_millis(20));
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
        assert!(u.peak_rss_bytes > 0);
    }
}
