//! The streaming ANC controller on one thread, as an audio callback runs it: sustained
//! samples/s, the real-time factor at the model's rate, each block's latency against its
//! deadline, and where a sample's time goes (the first layer's products against the rest).

use std::time::Instant;

use anyhow::{Context, Result};
use burn::prelude::*;
use serde_json::{Value, json};
use stoker_infer::{AncMode, AncOptions, StreamWeights, StreamingController, control_signal};
use stoker_kernels::bf16;
use stoker_kernels::matvec::{PackedMatrix, Weight, matvec_rows};
use stoker_zoo::{AncWeights, Model, Network};

use crate::reference::anc_reference;

/// Block sizes a device callback commonly asks for, down to one sample.
const BLOCKS: [usize; 3] = [1, 16, 64];

pub(crate) fn bench_anc_stream(device: &Device, quick: bool) -> Result<Value> {
    let r = anc_reference();
    let model = Model::new(&r.spec, &r.shape, device)?;
    let Network::MultibandAnc(net) = &model.net else {
        anyhow::bail!("the ANC reference did not build a multiband-anc model");
    };
    let rate = r.shape.anc.as_ref().map_or(16_000, |a| a.sample_rate);
    let weights = net
        .weights()
        .context("reading the reference model's weights")?;
    let samples = if quick { 4_096 } else { 3 * rate as usize };
    let signal = signal_of(samples);

    let mut rows = Vec::new();
    for precision in [StreamWeights::F32, StreamWeights::Bf16] {
        for block in BLOCKS {
            rows.push(stream_row(&weights, precision, block, &signal, rate)?);
        }
    }
    let batched_samples = if quick { 8_192 } else { 5 * rate as usize };
    let batched = batched_rate(net, &signal_of(batched_samples))?;
    let first_layer = first_layer_split(&weights, if quick { 200 } else { 4_000 });
    Ok(json!({
        "rate_hz": rate,
        "samples": samples,
        "rows": rows,
        "batched_samples_per_s": batched,
        "per_sample": first_layer,
    }))
}

fn signal_of(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

/// One precision and block size: every block timed on its own, after a warm-up pass.
fn stream_row(
    weights: &AncWeights,
    precision: StreamWeights,
    block: usize,
    signal: &[f32],
    rate: u32,
) -> Result<Value> {
    let mut controller = StreamingController::new(weights, precision)?;
    let mut y = vec![0.0f32; block];
    for x in signal.chunks_exact(block).take(2_000 / block + 1) {
        controller.process(x, &mut y);
    }
    let blocks = signal.len() / block;
    let mut latencies = Vec::with_capacity(blocks);
    let started = Instant::now();
    for x in signal.chunks_exact(block) {
        let t = Instant::now();
        controller.process(x, &mut y);
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let seconds = started.elapsed().as_secs_f64();
    let samples_per_s = (blocks * block) as f64 / seconds;
    let deadline_us = block as f64 / f64::from(rate) * 1e6;
    let missed = latencies.iter().filter(|&&l| l > deadline_us).count();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let row = json!({
        "weights": precision.to_string(),
        "block": block,
        "samples_per_s": samples_per_s,
        "real_time_factor": samples_per_s / f64::from(rate),
        "latency_us": {"p50": quantile(0.5), "p99": quantile(0.99), "max": quantile(1.0)},
        "deadline_us": deadline_us,
        "blocks": blocks,
        "missed_deadlines": missed,
    });
    println!(
        "ANC stream, {precision} weights, blocks of {block:>2}: {samples_per_s:>7.0} samples/s (real-time factor {:.2} at {rate} Hz), latency p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs (deadline {deadline_us:.1} µs, {missed} of {blocks} missed)",
        samples_per_s / f64::from(rate),
        quantile(0.5),
        quantile(0.99),
        quantile(1.0)
    );
    Ok(row)
}

/// The offline batched prediction (burn, every thread) on the same model.
fn batched_rate(net: &stoker_zoo::MultibandAnc, signal: &[f32]) -> Result<f64> {
    let opts = AncOptions {
        batch_size: 8192,
        mode: AncMode::Batched,
        baseline_taps: 512,
        fxnlms_step: 0.1,
    };
    control_signal(net, &signal[..signal.len().min(2_000)], opts).context("warm-up pass")?;
    let t = Instant::now();
    control_signal(net, signal, opts).context("batched ANC pass")?;
    let rate = signal.len() as f64 / t.elapsed().as_secs_f64();
    println!("ANC batched (offline, all threads): {rate:.0} samples/s");
    Ok(rate)
}

/// Per sample, the first layers' products alone (every band, f32 and bf16, one window at a
/// time and 16 at once): their time, GFLOP/s and the GB/s their weights stream at, to set
/// beside the whole step's time.
fn first_layer_split(weights: &AncWeights, samples: usize) -> Value {
    let peak = stoker_kernels::roof::fma_peak_gflops(20_000_000);
    println!("  single-core f32 FMA peak, measured now: {peak:.1} GFLOP/s");
    let mut out = serde_json::Map::new();
    if peak > 0.0 {
        out.insert("fma_peak_gflop_per_s".into(), json!(peak));
    }
    for precision in [StreamWeights::F32, StreamWeights::Bf16] {
        let mut rows_out = serde_json::Map::new();
        for rows in [1, 16] {
            let (us, bytes, macs) = match precision {
                StreamWeights::F32 => time_products::<f32>(weights, rows, samples),
                StreamWeights::Bf16 => time_products::<bf16>(weights, rows, samples),
            };
            let gflops = 2.0 * macs as f64 / us / 1e3;
            let gbs = bytes as f64 / rows as f64 / us / 1e3;
            let share = if peak > 0.0 {
                format!(", {:.0} % of peak", 100.0 * gflops / peak)
            } else {
                String::new()
            };
            println!(
                "  {precision} first-layer products, {rows:>2} window(s) at once: {us:.2} µs a sample ({gflops:.1} GFLOP/s{share}; weights, {:.0} KB a pass, at {gbs:.1} GB/s)",
                bytes as f64 / 1e3
            );
            let mut row = json!({
                "us_per_sample": us,
                "gflop_per_s": gflops,
                "weight_gb_per_s": gbs,
                "weight_bytes": bytes,
                "multiply_adds_per_sample": macs,
            });
            if peak > 0.0 {
                row["share_of_peak"] = json!(gflops / peak);
            }
            rows_out.insert(rows.to_string(), row);
        }
        out.insert(precision.to_string(), Value::Object(rows_out));
    }
    Value::Object(out)
}

/// µs per sample of every band's first-layer product over `rows` windows at once, the bytes
/// one pass reads and the multiply-adds of a sample.
fn time_products<T: Weight>(
    weights: &AncWeights,
    rows: usize,
    samples: usize,
) -> (f64, usize, usize) {
    let layers: Vec<_> = weights
        .band_layers
        .iter()
        .filter_map(|l| l.first())
        .map(|l| {
            (
                PackedMatrix::<T>::pack(&l.weight, l.inputs, l.outputs),
                &l.bias,
            )
        })
        .collect();
    let x = signal_of(weights.taps + rows - 1);
    let widest = layers.iter().map(|(w, _)| w.outputs()).max().unwrap_or(0);
    let mut h = vec![0.0; widest * rows];
    let mut run = || {
        for (w, bias) in &layers {
            matvec_rows(w, &x, 1, rows, bias, &mut h[..w.outputs() * rows]);
        }
        std::hint::black_box(&mut h);
    };
    for _ in 0..100 {
        run();
    }
    let t = Instant::now();
    let passes = samples.div_ceil(rows);
    for _ in 0..passes {
        run();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / (passes * rows) as f64;
    let bytes = layers.iter().map(|(w, _)| w.bytes()).sum();
    let macs = layers.iter().map(|(w, _)| w.inputs() * w.outputs()).sum();
    (us, bytes, macs)
}
