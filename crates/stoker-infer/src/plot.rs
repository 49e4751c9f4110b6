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
        let mut mesh = chart.configure_mesh();
        if labels {
            mesh.x_desc(self.x_label).y_desc(self.y_label);
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

/// The mean attention profile: weight against lag (steps before the last input).
pub fn profile_png(path: &Path, profile: &[f64]) -> Result<()> {
    let n = profile.len();
    LinePlot {
        title: "Mean attention weight per input step",
        x_label: "steps before the last input (lag)",
        y_label: "mean weight",
        series: vec![Series {
            name: "attention",
            points: profile
                .iter()
                .enumerate()
                .map(|(k, &w)| (-((n - 1 - k) as f64), w))
                .collect(),
        }],
    }
    .write_png(path)
}
