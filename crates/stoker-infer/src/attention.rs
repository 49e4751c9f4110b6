//! Attention importance: the weight of every input step for every window
//! (`attention.parquet`), their mean profile (`attention_profile.json`) and its plot
//! (`attention_profile.png`).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, TimestampSecondArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde::Serialize;
use stoker_artifact::{PreparedData, WindowSpec, atomic};

use crate::error::Result;

pub const ATTENTION_FILE: &str = "attention.parquet";
pub const PROFILE_FILE: &str = "attention_profile.json";
pub const PLOT_FILE: &str = "attention_profile.png";

#[derive(Debug, Serialize)]
pub struct AttentionProfile {
    /// Mean weight per attended step; the last entry is the most recent input step.
    pub mean_weight: Vec<f64>,
    /// `lag[k]`: how many steps before the last input step entry k lies.
    pub lag: Vec<usize>,
    pub windows: usize,
}

/// Mean weight per step over windows (`weights` is [windows × steps], row-major).
pub fn mean_profile(weights: &[f32], steps: usize) -> Vec<f64> {
    let windows = weights.len() / steps;
    let mut mean = vec![0.0; steps];
    for row in weights.chunks(steps) {
        for (m, &w) in mean.iter_mut().zip(row) {
            *m += f64::from(w);
        }
    }
    mean.iter_mut().for_each(|m| *m /= windows.max(1) as f64);
    mean
}

pub fn write(
    dir: &Path,
    data: &PreparedData,
    spec: WindowSpec,
    windows: &[usize],
    steps: usize,
    weights: &[f32],
) -> Result<()> {
    let (mut time, mut lag) = (
        Vec::with_capacity(weights.len()),
        Vec::with_capacity(weights.len()),
    );
    for &s in windows {
        let last_input = data.store.timestamps()[s + spec.input_len - 1];
        for k in 0..steps {
            time.push(last_input);
            lag.push((steps - 1 - k) as u32);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "window_end",
            DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
            false,
        ),
        Field::new("lag", DataType::UInt32, false),
        Field::new("weight", DataType::Float32, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampSecondArray::from(time).with_timezone("UTC")),
        Arc::new(UInt32Array::from(lag)),
        Arc::new(Float32Array::from(weights.to_vec())),
    ];
    stoker_artifact::table::write_batch(&dir.join(ATTENTION_FILE), schema, columns, Vec::new())?;
    let profile = AttentionProfile {
        mean_weight: mean_profile(weights, steps),
        lag: (0..steps).rev().collect(),
        windows: windows.len(),
    };
    atomic::write_json(&dir.join(PROFILE_FILE), &profile)?;
    crate::plot::profile_png(&dir.join(PLOT_FILE), &profile.mean_weight)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mean_profile;

    #[test]
    fn profile_is_the_mean_per_step() {
        let p = mean_profile(&[0.2, 0.8, 0.6, 0.4], 2);
        assert!((p[0] - 0.4).abs() < 1e-6 && (p[1] - 0.6).abs() < 1e-6);
    }
}
