//! ANC prediction over the whole recording: the controller runs on the full signal in batches
//! of contiguous chunks (each chunk a view of the reference with its history), the residual
//! e = d − S * g(y) is what the error microphone hears, and the linear baselines run on the
//! same signals for comparison.

use std::cell::Cell;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use stoker_artifact::atomic::{self, StagingDir};
use stoker_artifact::layout::PREDICT_METRICS_FILE;
use stoker_artifact::{
    AncMetrics, AncSignals, AppliedInput, BandNr, ModelSpec, MultibandAncSpec, PreparedData, Split,
    StreamTiming, WindowStore,
};
use stoker_dsp::wav::{WavFormat, write_mono};
use stoker_dsp::{
    apply_controller, convolve_causal, fxnlms, least_squares_fir, nr_db, saturate, welch_psd,
};
use stoker_runtime::Autocast;
use stoker_runtime::batch::{fitting_batch, inputs_tensor, try_to_host};
use stoker_zoo::{Model, MultibandAnc, Network};

use crate::error::{Error, Result};
use crate::loaded::Loaded;
use crate::plot::{LinePlot, Series};
use crate::predictor::PredictRequest;
use crate::stream::{StreamWeights, StreamingController};

/// Control samples per chunk of a batch: long enough that a chunk's reference history (the
/// receptive field) is a small overhead, short enough to keep the batch's memory flat.
const CHUNK: usize = 512;

const RESIDUAL_WAV: &str = "residual.wav";
const ANTI_NOISE_WAV: &str = "anti_noise.wav";
const SPECTRUM_PNG: &str = "spectrum.png";

#[derive(Debug, Clone, Copy)]
pub struct AncOptions {
    pub batch_size: usize,
    pub mode: AncMode,
    pub baseline_taps: usize,
    pub fxnlms_step: f32,
}

/// How the controller runs over the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AncMode {
    /// Chunks of the recording in batches on the device.
    #[default]
    Batched,
    /// One forward pass per control sample (only for the benchmark's comparison).
    PerSample,
    /// The streaming controller on one thread, fed `block` samples at a time as an audio
    /// callback would, each block timed against its duration.
    Stream {
        block: usize,
        weights: StreamWeights,
    },
}

impl std::fmt::Display for AncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Batched => f.write_str("batched"),
            Self::PerSample => f.write_str("per-sample"),
            Self::Stream { block, weights } => write!(f, "stream ({weights}, blocks of {block})"),
        }
    }
}

/// The controller's output y(n) for every sample of `reference` (normalised), from x(≤ n)
/// only; the recording is preceded by silence.
pub fn control_signal(
    model: &MultibandAnc,
    reference: &[f32],
    opts: AncOptions,
) -> Result<Vec<f32>> {
    if let AncMode::Stream { block, weights } = opts.mode {
        return Ok(stream_control(model, reference, block, weights, 0)?.0);
    }
    let device = model.devices().into_iter().next().ok_or(Error::NoDevice)?;
    let history = model.receptive_field() - 1;
    let mut padded = vec![0.0; history];
    padded.extend_from_slice(reference);
    let (chunk, chunks_per_batch) = if opts.mode == AncMode::PerSample {
        (1, 1)
    } else {
        (
            CHUNK.min(opts.batch_size),
            opts.batch_size.div_ceil(CHUNK).max(1),
        )
    };
    let starts: Vec<usize> = (0..reference.len()).step_by(chunk).collect();
    let mut y = Vec::with_capacity(reference.len());
    let ac = Autocast::F32;
    for batch in starts.chunks(chunks_per_batch) {
        // The last chunk may be short: pad its reference so every chunk has one shape.
        let mut inputs = Vec::with_capacity(batch.len() * (chunk + history));
        for &s in batch {
            let end = (s + chunk + history).min(padded.len());
            inputs.extend_from_slice(&padded[s..end]);
            inputs.resize(inputs.len() + (s + chunk + history - end), 0.0);
        }
        let x = inputs_tensor(inputs, [batch.len(), chunk + history, 1], &device);
        y.extend(try_to_host(model.forward(x, &ac))?);
    }
    y.truncate(reference.len());
    Ok(y)
}

/// The signals a controller is scored on: the reference x and disturbance d (normalised), the
/// plant between them, the samples scored and those the least-squares FIR is fitted on.
pub(crate) struct Recording<'a> {
    pub x: Vec<f32>,
    pub d: Vec<f32>,
    pub plant: &'a AncSignals,
    pub scored: Range<usize>,
    pub fit: Range<usize>,
    /// `test` for the prepared recording's test split, `input` for a new recording.
    pub split: &'static str,
}

impl<'a> Recording<'a> {
    /// The prepared recording: scored on its test split, the FIR fitted on the samples before.
    pub fn test_split(data: &'a PreparedData) -> Result<Self> {
        let plant = data.manifest.anc.as_ref().ok_or(Error::NoAncSetup)?;
        let test = data.manifest.splits.rows(Split::Test);
        let (x, d) = columns(&data.store);
        Ok(Self {
            x,
            d,
            plant,
            fit: 0..test.start,
            scored: test,
            split: Split::Test.name(),
        })
    }

    /// A new recording (prepare's apply mode): scored whole, the FIR fitted on it too (so its
    /// figure is the best any linear FIR of that length does on this recording).
    pub fn applied(input: &'a AppliedInput) -> Result<Self> {
        let plant = input.manifest.anc.as_ref().ok_or(Error::NoAncSetup)?;
        let (x, d) = columns(&input.store);
        let all = 0..x.len();
        Ok(Self {
            x,
            d,
            plant,
            scored: all.clone(),
            fit: all,
            split: "input",
        })
    }
}

/// [`predict`] with the request's checkpoint and options, into a staging directory that
/// replaces `req.out_dir` (with `metrics.json`) only when everything is written.
pub(crate) fn predict_into(
    req: &PredictRequest,
    loaded: &Loaded,
    rec: &Recording,
) -> Result<AncMetrics> {
    let staging = StagingDir::new(&req.out_dir)?;
    let metrics = predict(
        &loaded.model,
        &loaded.meta.model,
        rec,
        loaded.label(),
        staging.path(),
        req.anc_options(),
    )?;
    atomic::write_json(&staging.path().join(PREDICT_METRICS_FILE), &metrics)?;
    staging.commit()?;
    Ok(metrics)
}

/// Runs the controller over the whole recording; writes `residual.wav`, `anti_noise.wav` and
/// `spectrum.png` into `out_dir` and returns the metrics (the caller writes them).
pub(crate) fn predict(
    model: &Model,
    spec: &ModelSpec,
    rec: &Recording,
    checkpoint: String,
    out_dir: &Path,
    opts: AncOptions,
) -> Result<AncMetrics> {
    let (Network::MultibandAnc(net), ModelSpec::MultibandAnc(spec)) = (&model.net, spec) else {
        return Err(Error::NotAnc);
    };
    let Recording {
        x,
        d,
        plant,
        scored: test,
        fit,
        ..
    } = rec;
    let (x, d, test) = (x.as_slice(), d.as_slice(), test.clone());
    let started = Instant::now();
    let (y, stream) = match opts.mode {
        AncMode::Stream { block, weights } => {
            stream_control(net, x, block, weights, plant.sample_rate)?
        }
        _ => {
            let y = fitting_batch(&Cell::new(opts.batch_size), "prediction", |batch_size| {
                control_signal(net, x, AncOptions { batch_size, ..opts })
            })?;
            (y, None)
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let e = residual(plant, d, &y);

    let taps = opts.baseline_taps;
    let eta = plant.saturation as f32;
    let secondary = &plant.secondary_path;
    let e_fxnlms = fxnlms(x, d, secondary, taps, opts.fxnlms_step, eta).residual;
    let wiener = least_squares_fir(x, d, secondary, taps, fit.clone());
    let e_wiener = apply_controller(&wiener, x, secondary, d, eta);
    let linear_fir = net.weights()?.linear_fir;
    let linear_only_nr_db = (!linear_fir.is_empty()).then(|| {
        let e = apply_controller(&linear_fir, x, secondary, d, eta);
        nr_db(&d[test.clone()], &e[test.clone()])
    });

    let filters = net.band_filters();
    let edges = band_edges(spec, plant.sample_rate);
    let band_nr_db = filters
        .iter()
        .zip(edges)
        .map(|(h, (low_hz, high_hz))| {
            let (db, eb) = (convolve_causal(h, d), convolve_causal(h, &e));
            BandNr {
                low_hz,
                high_hz,
                nr_db: nr_db(&db[test.clone()], &eb[test.clone()]),
            }
        })
        .collect();
    let metrics = AncMetrics {
        split: rec.split.into(),
        samples: test.len(),
        sample_rate: plant.sample_rate,
        nr_db: nr_db(&d[test.clone()], &e[test.clone()]),
        fxnlms_nr_db: nr_db(&d[test.clone()], &e_fxnlms[test.clone()]),
        wiener_nr_db: nr_db(&d[test.clone()], &e_wiener[test.clone()]),
        fxnlms_taps: taps,
        fxnlms_step: f64::from(opts.fxnlms_step),
        linear_only_nr_db,
        band_nr_db,
        saturation: plant.saturation,
        checkpoint,
        predicted_samples: y.len(),
        infer_samples_per_s: y.len() as f64 / seconds.max(1e-9),
        mode: match opts.mode {
            AncMode::Stream { .. } => "stream".into(),
            mode => mode.to_string(),
        },
        stream,
    };
    let scale = plant.disturbance_rms as f32;
    write_wav(&out_dir.join(RESIDUAL_WAV), &e, scale, plant.sample_rate)?;
    write_wav(&out_dir.join(ANTI_NOISE_WAV), &y, scale, plant.sample_rate)?;
    spectrum_png(
        &out_dir.join(SPECTRUM_PNG),
        &d[test.clone()],
        &e[test],
        plant.sample_rate,
        rec.split,
    )?;
    Ok(metrics)
}

/// The controller's output through the streaming controller, `block` samples at a time; with
/// a sample `rate`, each block is timed against its duration (the deadline a device callback
/// sets), else untimed.
fn stream_control(
    net: &MultibandAnc,
    reference: &[f32],
    block: usize,
    weights: StreamWeights,
    rate: u32,
) -> Result<(Vec<f32>, Option<StreamTiming>)> {
    if block == 0 {
        return Err(Error::StreamBlock);
    }
    let mut controller = StreamingController::new(&net.weights()?, weights)?;
    let mut y = vec![0.0; reference.len()];
    let mut latencies_us = Vec::with_capacity(reference.len().div_ceil(block));
    for (x, y) in reference.chunks(block).zip(y.chunks_mut(block)) {
        let started = Instant::now();
        controller.process(x, y);
        latencies_us.push(started.elapsed().as_secs_f64() * 1e6);
    }
    if rate == 0 || latencies_us.is_empty() {
        return Ok((y, None));
    }
    let deadline_us = block as f64 / f64::from(rate) * 1e6;
    let missed_deadlines = latencies_us.iter().filter(|&&t| t > deadline_us).count();
    latencies_us.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies_us[((latencies_us.len() - 1) as f64 * q).round() as usize];
    let timing = StreamTiming {
        block,
        weights: weights.to_string(),
        blocks: latencies_us.len(),
        deadline_us,
        missed_deadlines,
        latency_p50_us: quantile(0.5),
        latency_p99_us: quantile(0.99),
        latency_max_us: quantile(1.0),
    };
    Ok((y, Some(timing)))
}

/// The reference x and disturbance d (normalised), copied out of the row-major store.
fn columns(store: &WindowStore) -> (Vec<f32>, Vec<f32>) {
    let rows = 0..store.rows();
    (store.column(0, rows.clone()), store.column(1, rows))
}

/// e = d − S * g(y), the error microphone's signal.
fn residual(plant: &AncSignals, d: &[f32], y: &[f32]) -> Vec<f32> {
    let eta = plant.saturation as f32;
    let heard: Vec<f32> = y.iter().map(|&v| saturate(v, eta)).collect();
    let anti = convolve_causal(&plant.secondary_path, &heard);
    d.iter().zip(anti).map(|(d, a)| d - a).collect()
}

/// (low, high) Hz of each band.
fn band_edges(spec: &MultibandAncSpec, rate: u32) -> Vec<(f64, f64)> {
    let mut bounds = vec![0.0];
    bounds.extend(&spec.band_edges);
    bounds.push(f64::from(rate) / 2.0);
    bounds.windows(2).map(|w| (w[0], w[1])).collect()
}

/// A 32-bit float mono WAV in the recording's units.
fn write_wav(path: &Path, signal: &[f32], scale: f32, rate: u32) -> Result<()> {
    let failed = |e: std::io::Error| Error::Output {
        path: path.into(),
        message: format!("cannot write the WAV: {e}"),
    };
    let file = std::fs::File::create(path).map_err(failed)?;
    // Scaled in f32 before widening: the samples are the f32 products, as always written.
    let samples = signal.iter().map(|&v| f64::from(v * scale));
    write_mono(
        std::io::BufWriter::new(file),
        WavFormat::Float32,
        rate,
        samples,
    )
    .map_err(failed)
}

/// Power spectral density (dB) of the disturbance and of the residual over the scored samples.
fn spectrum_png(path: &Path, d: &[f32], e: &[f32], rate: u32, split: &str) -> Result<()> {
    let db = |x: &[f32]| -> Vec<(f64, f64)> {
        let (freqs, power) = welch_psd(x, f64::from(rate), 1024);
        freqs
            .into_iter()
            .zip(power)
            .skip(1)
            .map(|(f, p)| (f, 10.0 * p.max(1e-30).log10()))
            .collect()
    };
    LinePlot {
        title: &format!("Power spectrum at the error microphone ({split})"),
        x_label: "frequency (Hz)",
        y_label: "power (dB)",
        series: vec![
            Series {
                name: "without control (d)",
                points: db(d),
            },
            Series {
                name: "with control (e)",
                points: db(e),
            },
        ],
        x_format: None,
    }
    .write_png(path)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A linear plant at 16 kHz with a three-tap secondary path, for controller tests.
    pub(crate) fn test_plant() -> AncSignals {
        AncSignals {
            sample_rate: 16_000,
            source_rate: 16_000,
            secondary_path: vec![0.0, 0.6, 0.2],
            primary_taps: 8,
            saturation: 0.0,
            reference_rms: 1.0,
            disturbance_rms: 1.0,
        }
    }

    #[test]
    fn batched_control_equals_one_sample_at_a_time() {
        let device = Device::flex();
        let plant = test_plant();
        let spec = MultibandAncSpec {
            filter_taps: 9,
            taps: 12,
            hidden: 6,
            ..Default::default()
        };
        let model = MultibandAnc::new(&spec, &plant, &device).unwrap();
        let x: Vec<f32> = (0..1_300)
            .map(|n| ((n * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let opts = |batch_size, per_sample| AncOptions {
            batch_size,
            mode: if per_sample {
                AncMode::PerSample
            } else {
                AncMode::Batched
            },
            baseline_taps: 16,
            fxnlms_step: 0.1,
        };
        let one_by_one = control_signal(&model, &x, opts(1, true)).unwrap();
        assert_eq!(one_by_one.len(), x.len());
        // Batches that end mid-chunk and mid-signal must not shift or drop samples.
        for batch_size in [100, 700, 4096] {
            let batched = control_signal(&model, &x, opts(batch_size, false)).unwrap();
            assert_eq!(batched.len(), x.len());
            for (n, (a, b)) in batched.iter().zip(&one_by_one).enumerate() {
                assert!(
                    (a - b).abs() < 1e-5,
                    "batch {batch_size}, y({n}): {a} vs {b}"
                );
            }
        }
    }
}
