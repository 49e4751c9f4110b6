//! The task family: whether a task forecasts or controls. Decided here once, from the model
//! spec or the prepared data, so the stages ask instead of re-deriving it.

use crate::manifest::WindowSpec;

/// What a task's network does with a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskFamily {
    /// Predict future values of the target columns (PM2.5, ETT).
    Forecast,
    /// Produce a control signal whose effect the loss measures (active noise control: the
    /// targets are the disturbance d, the loss is what the error microphone hears).
    Control,
}

impl TaskFamily {
    /// Samples the loss sees per window, the unit of throughput: one forecast window, or the
    /// `output_len` error-microphone samples of a control chunk.
    pub fn samples_per_window(self, window: WindowSpec) -> usize {
        match self {
            TaskFamily::Forecast => 1,
            TaskFamily::Control => window.output_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelSpec, MultibandAncSpec};

    #[test]
    fn the_anc_model_controls_and_the_others_forecast() {
        assert_eq!(
            ModelSpec::MultibandAnc(MultibandAncSpec::default()).family(),
            TaskFamily::Control
        );
        assert_eq!(
            ModelSpec::Cnn2d(Default::default()).family(),
            TaskFamily::Forecast
        );
        assert_eq!(
            ModelSpec::LstmAttention(Default::default()).family(),
            TaskFamily::Forecast
        );
    }

    #[test]
    fn a_control_chunk_counts_its_error_samples() {
        let window = WindowSpec {
            input_len: 600,
            horizon: -511,
            output_len: 512,
            stride: 512,
        };
        assert_eq!(TaskFamily::Control.samples_per_window(window), 512);
        assert_eq!(TaskFamily::Forecast.samples_per_window(window), 1);
    }
}
