//! PNG line plots (plotters). Labels use the system's DejaVu Sans when present (Debian's
//! `fonts-dejavu-core`); without it the plot is drawn without text rather than not at all.

use std::path::Path;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use plotters::prelude::*;

const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers the label font once; false when no font file is found.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let Some(bytes) = FONT_PATHS.iter().find_map(|p| std::fs::read(p).ok()) else {
            eprintln!("note: no DejaVu Sans font found; plots are drawn without labels");
            return false;
        };
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    })
}

/// One labelled series of (x, y) points.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

pub struct LinePlot<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series<'a>>,
    /// How an x value reads on its axis (default: as many decimals as the tick step needs).
    pub x_format: Option<fn(f64) -> String>,
}

/// `v` with the decimals that tell ticks `step` apart (none for integer steps).
fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    format!("{v:.decimals$}")
}

impl LinePlot<'_> {
    pub fn write_png(&self, path: &Path) -> Result<()> {
        self.draw(path).map_err(|e| Error::Output {
            path: path.into(),
            message: format!("cannot draw plot: {e}"),
        })
    }

    fn draw(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let labels = font_ready();
        let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if x0 >= x1 {
            (x0, x1) = (x0 - 1.0, x0 + 1.0);
        }
        let pad = ((y1 - y0) * 0.05).max(1e-9);
        let mut builder = ChartBuilder::on(&root);
        builder
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70);
        if labels {
            builder.caption(self.title, ("sans-serif", 22));
        }
        let mut chart = builder.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))?;
        // About ten ticks an axis: label each with the decimals its step needs, so a narrow
        // range (an almost flat attention profile) does not repeat one rounded value.
        let (x_step, y_step) = ((x1 - x0) / 10.0, (y1 - y0 + 2.0 * pad) / 10.0);
        let x_format = |v: &f64| match self.x_format {
            Some(f) => f(*v),
            None => tick_label(*v, x_step),
        };
        let y_format = |v: &f64| tick_label(*v, y_step);
        let mut mesh = chart.configure_mesh();
        if labels {
            mesh.x_desc(self.x_label)
                .y_desc(self.y_label)
                .x_label_formatter(&x_format)
                .y_label_formatter(&y_format);
        } else {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw()?;
        for (i, s) in self.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let drawn = chart.draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))?;
            if labels {
                drawn
                    .label(s.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
        }
        if labels && self.series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    }
}

/// The mean attention profile: weight against lag (steps before the last input, most recent
/// on the right), beside the uniform weight 1/steps that a profile saying nothing would have.
pub fn profile_png(path: &Path, profile: &[f64]) -> Result<()> {
    let n = profile.len();
    let lag = |k: usize| -((n - 1 - k) as f64);
    LinePlot {
        title: "Mean attention weight per input step",
        x_label: "steps before the last input (lag)",
        y_label: "mean weight",
        series: vec![
            Series {
                name: "attention",
                points: profile
                    .iter()
                    .enumerate()
                    .map(|(k, &w)| (lag(k), w))
                    .collect(),
            },
            Series {
                name: "uniform (1 / steps)",
                points: vec![(lag(0), 1.0 / n as f64), (lag(n - 1), 1.0 / n as f64)],
            },
        ],
        // Lags read as positive step counts.
        x_format: Some(|x| format!("{:.0}", x.abs())),
    }
    .write_png(path)
}

#[cfg(test)]
mod tests {
    use super::tick_label;

    #[test]
    fn tick_labels_carry_the_decimals_their_step_needs() {
        assert_eq!(tick_label(90.0, 10.0), "90");
        assert_eq!(tick_label(0.010_42, 0.000_01), "0.01042");
        assert_eq!(tick_label(0.25, 0.05), "0.25");
        assert_ne!(
            tick_label(0.010_41, 0.000_004),
            tick_label(0.010_42, 0.000_004)
        );
    }
}
