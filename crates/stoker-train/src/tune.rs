//! Automatic batch size: probe candidate batch sizes with real training steps on real batches,
//! measure throughput and peak memory, and choose the smallest batch within 5 % of the best
//! throughput that stays under the memory headroom.

use std::sync::Arc;
use std::time::Instant;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use stoker_artifact::{PreparedData, Split, TaskConfig};
use stoker_runtime::Autocast;
use stoker_runtime::device::sync;
use stoker_zoo::{InputShape, Model};

use crate::adam::optimizer;
use crate::error::{Error, Result};
use crate::loader::{Loader, epoch_order};
use crate::step::batch_gradients;

/// Throughput within this fraction of the best counts as "as fast".
const WITHIN: f64 = 0.05;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub batch_size: usize,
    pub samples_per_s: f64,
    /// Peak resident memory during the probe, bytes (device memory where the backend reports it).
    pub peak_memory_bytes: u64,
    /// Why the candidate was not usable, if it was not.
    pub failed: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TuneReport {
    pub probes: Vec<Probe>,
    pub chosen: usize,
    pub memory_limit_bytes: u64,
    pub rule: String,
}

pub struct TuneRequest<'a> {
    pub config: &'a TaskConfig,
    pub data: Arc<PreparedData>,
    pub device: Device,
    pub candidates: Vec<usize>,
    /// Timed steps per candidate (after two warm-up steps).
    pub steps: usize,
    /// Fraction of the machine's available memory a candidate may use.
    pub headroom: f64,
}

/// Bytes of memory available to the process (Linux MemAvailable), if known.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Resets the kernel's peak-RSS counter so each probe measures its own peak (Linux).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss() -> u64 {
    crate::monitor::peak_rss_bytes()
}

fn probe(
    req: &TuneRequest,
    loader: &mut Loader,
    windows: &[usize],
    batch_size: usize,
) -> Result<(f64, u64)> {
    let cfg = req.config;
    let window = cfg.window_for(&req.data.manifest);
    let device = req.device.clone().autodiff();
    let shape = InputShape::of(&req.data.manifest, window);
    let mut model = Model::new(&cfg.model, &shape, &device)?;
    let mut optim = optimizer(&cfg.train);
    let order: Vec<usize> = epoch_order(windows, cfg.seed, 1)
        .into_iter()
        .cycle()
        .take(batch_size * (req.steps + 2))
        .collect();
    reset_peak_rss();
    let mut timed_from = None;
    for (done, batch) in loader.pass(order, batch_size, window).enumerate() {
        if done == 2 {
            sync(&device).map_err(Error::Runtime)?;
            timed_from = Some(Instant::now());
        }
        let (grads, _) = batch_gradients(
            &model,
            &batch,
            window,
            shape.features,
            1,
            cfg.train.loss,
            &Autocast::new(cfg.train.precision),
            1.0,
            &device,
        );
        model = optim.step(cfg.train.lr, model.clone(), grads);
    }
    // A step the device could not run (memory) fails here, not as a panic.
    sync(&device).map_err(Error::Runtime)?;
    let seconds = timed_from.map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
    Ok(((req.steps * batch_size) as f64 / seconds, peak_rss()))
}

/// Probes `req.candidates` in order, stopping at the first that fails or exceeds the memory
/// headroom, and chooses among the rest.
pub fn tune(req: &TuneRequest) -> Result<TuneReport> {
    if req.candidates.is_empty() {
        return Err(Error::Settings("no candidate batch sizes".into()));
    }
    let windows = req
        .data
        .windows(Split::Train, req.config.window_for(&req.data.manifest));
    if windows.is_empty() {
        return Err(Error::Settings(format!(
            "{}: no train windows",
            req.data.dir.display()
        )));
    }
    let mut loader = Loader::new(
        req.data.clone(),
        req.config.train.workers,
        req.config.train.prefetch,
    );
    let limit = available_memory().map_or(u64::MAX, |m| (m as f64 * req.headroom) as u64);
    let mut probes: Vec<Probe> = Vec::new();
    for &batch_size in &req.candidates {
        // A backend out-of-memory surfaces as a panic: the probe records it and stops growing.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            probe(req, &mut loader, &windows, batch_size)
        }));
        let (samples_per_s, peak_memory_bytes, failed) = match outcome {
            Ok(Ok((s, m))) if m <= limit => (s, m, None),
            Ok(Ok((s, m))) => (
                s,
                m,
                Some(format!(
                    "peak memory over the {:.0} MiB limit",
                    limit as f64 / 1048576.0
                )),
            ),
            Ok(Err(e)) => (0.0, 0, Some(format!("{e:#}"))),
            Err(_) => (0.0, 0, Some("failed (out of memory?)".into())),
        };
        eprintln!(
            "batch {batch_size:>6}: {samples_per_s:>10.0} samples/s, peak {:>7.0} MiB{}",
            peak_memory_bytes as f64 / 1048576.0,
            failed
                .as_deref()
                .map(|f| format!(" — {f}"))
                .unwrap_or_default()
        );
        let stop = failed.is_some();
        probes.push(Probe {
            batch_size,
            samples_per_s,
            peak_memory_bytes,
            failed,
        });
        if stop {
            break; // larger batches only need more memory
        }
    }
    let chosen = choose(&probes)
        .ok_or_else(|| Error::Settings("no candidate batch size could train".into()))?;
    Ok(TuneReport {
        probes,
        chosen,
        memory_limit_bytes: limit,
        rule: format!(
            "smallest batch within {:.0} % of the best throughput, under the memory limit",
            WITHIN * 100.0
        ),
    })
}

/// The smallest usable batch whose throughput is within `WITHIN` of the best.
fn choose(probes: &[Probe]) -> Option<usize> {
    let usable = probes
        .iter()
        .filter(|p| p.failed.is_none() && p.samples_per_s.is_finite());
    let best = usable
        .clone()
        .map(|p| p.samples_per_s)
        .fold(f64::NAN, f64::max);
    usable
        .filter(|p| p.samples_per_s >= (1.0 - WITHIN) * best)
        .map(|p| p.batch_size)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(batch_size: usize, samples_per_s: f64, failed: bool) -> Probe {
        Probe {
            batch_size,
            samples_per_s,
            peak_memory_bytes: 1,
            failed: failed.then(|| "oom".into()),
        }
    }

    #[test]
    fn smallest_batch_within_five_percent_of_the_best_usable() {
        let probes = [
            p(32, 800.0, false),
            p(64, 960.0, false),
            p(128, 1000.0, false),
            p(256, 2000.0, true),
        ];
        assert_eq!(choose(&probes), Some(64));
        assert_eq!(choose(&[p(32, 100.0, true)]), None);
    }
}
