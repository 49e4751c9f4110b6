//! One cleaned row in raw units → one row of the window store: numeric columns normalised with
//! the train statistics, the categorical column one-hot, the calendar phases. Prepare and its
//! apply mode both go through here, so a model sees new data exactly as it saw its training data.

use std::path::Path;

use chrono::{Datelike, Timelike};
use stoker_artifact::{Feature, INPUT_OK, TARGET_OK};

use crate::error::{Error, Result};

/// The store's columns for a source: `numeric` normalised columns, then the categories of at
/// most one categorical column, then the calendar phases if any.
pub(crate) struct RowEncoder<'a> {
    pub features: &'a [Feature],
    pub numeric: usize,
    pub categories: Option<&'a [String]>,
    pub calendar: bool,
}

impl RowEncoder<'_> {
    /// Writes the row into `out` (one value per feature) and returns its store flags; a
    /// timestamp outside the calendar (only with calendar features) is an error naming `input`.
    pub fn encode(
        &self,
        input: &Path,
        timestamp: i64,
        numeric: &[f32],
        category: Option<&str>,
        target_observed: bool,
        out: &mut [f32],
    ) -> Result<u8> {
        let mut input_ok = true;
        for ((value, &raw), feature) in out.iter_mut().zip(numeric).zip(self.features) {
            input_ok &= !raw.is_nan();
            *value = ((f64::from(raw) - feature.mean) / feature.std) as f32;
        }
        let categories = self.categories.map_or(0, <[String]>::len);
        if let Some(names) = self.categories {
            input_ok &= category.is_some();
            for (k, name) in names.iter().enumerate() {
                out[self.numeric + k] = f32::from(category == Some(name.as_str()));
            }
        }
        if self.calendar {
            let phases = calendar_features(timestamp).ok_or_else(|| {
                Error::input(
                    input,
                    format!("timestamp {timestamp} is outside the calendar"),
                )
            })?;
            out[self.numeric + categories..].copy_from_slice(&phases);
        }
        Ok(if input_ok { INPUT_OK } else { 0 } | if target_observed { TARGET_OK } else { 0 })
    }
}

/// Hour of day, day of week and day of year as (sin, cos) pairs; `None` outside chrono's range.
fn calendar_features(timestamp: i64) -> Option<[f32; 6]> {
    let t = chrono::DateTime::from_timestamp(timestamp, 0)?;
    let tau = std::f64::consts::TAU;
    let phases = [
        f64::from(t.hour()) / 24.0,
        f64::from(t.weekday().num_days_from_monday()) / 7.0,
        f64::from(t.ordinal0()) / 365.25,
    ];
    let mut out = [0f32; 6];
    for (i, p) in phases.iter().enumerate() {
        out[2 * i] = (tau * p).sin() as f32;
        out[2 * i + 1] = (tau * p).cos() as f32;
    }
    Some(out)
}
