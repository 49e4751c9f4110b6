//! Whole-signal ANC prediction, batched against one forward pass per sample.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::prelude::*;
use serde_json::{Value, json};
use stoker_infer::{AncMode, AncOptions, control_signal};
use stoker_zoo::Model;

use crate::reference::anc_reference;

/// Batched and per-sample samples/s on the reference model (random weights: speed does not
/// depend on them).
pub(crate) fn bench_anc_predict(device: &Device, quick: bool) -> Result<Value> {
    let r = anc_reference();
    let model = Model::new(&r.spec, &r.shape, device)?;
    let stoker_zoo::Network::MultibandAnc(net) = &model.net else {
        anyhow::bail!("the ANC reference did not build a multiband-anc model");
    };
    let samples = if quick { 20_000 } else { 180_000 };
    let per_sample_samples = if quick { 500 } else { samples };
    let signal: Vec<f32> = (0..samples)
        .map(|n| ((n * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let opts = |per_sample| AncOptions {
        batch_size: 8192,
        mode: if per_sample {
            AncMode::PerSample
        } else {
            AncMode::Batched
        },
        baseline_taps: 512,
        fxnlms_step: 0.1,
    };
    let rate = |signal: &[f32], per_sample| -> Result<f64> {
        control_signal(net, &signal[..signal.len().min(2_000)], opts(per_sample))
            .context("warm-up pass")?;
        let t = Instant::now();
        let y = control_signal(net, signal, opts(per_sample)).context("ANC predict pass")?;
        ensure!(
            y.len() == signal.len(),
            "one control sample per input sample"
        );
        Ok(signal.len() as f64 / t.elapsed().as_secs_f64())
    };
    let batched = rate(&signal, false)?;
    let per_sample = rate(&signal[..per_sample_samples], true)?;
    Ok(json!({
        "samples": samples,
        "batched_samples_per_s": batched,
        "per_sample_samples": per_sample_samples,
        "per_sample_samples_per_s": per_sample,
        "speedup": batched / per_sample,
    }))
}
