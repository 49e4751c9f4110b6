//! One cleaned row in raw units → one row of the window store: numeric columns normalised with
//! the train statistics, the categorical column one-hot, the calendar phases. Prepare, its apply
//! mode and the predict stage's library API all go through here, so a model sees new data
//! exactly as it saw its training data.

use std::path::Path;

use chrono::{Datelike, Timelike};

use crate::error::{ArtifactError, Result};
use crate::manifest::{DatasetManifest, Feature, FeatureKind};
use crate::window_store::{INPUT_OK, TARGET_OK};

/// A prepared data set's store columns by kind, in store order.
pub struct StoreColumns {
    pub numeric: Vec<String>,
    /// The categorical column and its categories, one one-hot column each.
    pub categorical: Option<(String, Vec<String>)>,
    pub calendar: bool,
}

impl StoreColumns {
    /// The columns of `manifest` (at `path`, which errors name).
    pub fn of(manifest: &DatasetManifest, path: &Path) -> Result<Self> {
        let mut columns = StoreColumns {
            numeric: Vec::new(),
            categorical: None,
            calendar: false,
        };
        // The encoder writes numeric, one-hot, calendar columns in that order: so must the store.
        let mut stage = 0;
        for feature in &manifest.features {
            let (kind_stage, name) = match &feature.kind {
                FeatureKind::Numeric => (0, &feature.name),
                FeatureKind::OneHot { column, category } => {
                    let (_, categories) = columns
                        .categorical
                        .get_or_insert_with(|| (column.clone(), Vec::new()));
                    categories.push(category.clone());
                    (1, column)
                }
                FeatureKind::Calendar => (2, &feature.name),
            };
            if kind_stage < stage
                || columns
                    .categorical
                    .as_ref()
                    .is_some_and(|(c, _)| kind_stage == 1 && c != name)
            {
                return Err(ArtifactError::invalid(
                    path,
                    format!(
                        "feature `{}` is out of the order prepare writes (numeric, one-hot, calendar)",
                        feature.name
                    ),
                ));
            }
            stage = kind_stage;
            match kind_stage {
                0 => columns.numeric.push(feature.name.clone()),
                2 => columns.calendar = true,
                _ => {}
            }
        }
        if manifest.targets.iter().any(|&t| t >= columns.numeric.len()) {
            return Err(ArtifactError::invalid(
                path,
                "a target is not a numeric column",
            ));
        }
        Ok(columns)
    }
}

/// The store's columns for a source: `numeric` normalised columns, then the categories of at
/// most one categorical column, then the calendar phases if any.
pub struct RowEncoder<'a> {
    pub features: &'a [Feature],
    pub numeric: usize,
    pub categories: Option<&'a [String]>,
    pub calendar: bool,
}

impl<'a> RowEncoder<'a> {
    /// The encoder of the data set whose features and columns these are.
    pub fn new(features: &'a [Feature], columns: &'a StoreColumns) -> Self {
        Self {
            features,
            numeric: columns.numeric.len(),
            categories: columns.categorical.as_ref().map(|(_, c)| c.as_slice()),
            calendar: columns.calendar,
        }
    }
}

impl RowEncoder<'_> {
    /// Writes the row into `out` (one value per feature) and returns its store flags; `None`
    /// for a timestamp outside the calendar (only with calendar features).
    pub fn encode(
        &self,
        timestamp: i64,
        numeric: &[f32],
        category: Option<&str>,
        target_observed: bool,
        out: &mut [f32],
    ) -> Option<u8> {
        let mut input_ok = true;
        for ((value, &raw), feature) in out.iter_mut().zip(numeric).zip(self.features) {
            input_ok &= !raw.is_nan();
            *value = feature.normalize(f64::from(raw)) as f32;
        }
        let categories = self.categories.map_or(0, <[String]>::len);
        if let Some(names) = self.categories {
            input_ok &= category.is_some();
            for (k, name) in names.iter().enumerate() {
                out[self.numeric + k] = f32::from(category == Some(name.as_str()));
            }
        }
        if self.calendar {
            let phases = calendar_features(timestamp)?;
            out[self.numeric + categories..].copy_from_slice(&phases);
        }
        Some(if input_ok { INPUT_OK } else { 0 } | if target_observed { TARGET_OK } else { 0 })
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
